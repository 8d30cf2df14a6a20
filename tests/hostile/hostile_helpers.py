"""What several hostile test modules share: the ``ncood analyze`` calls they make, the one-line
error check, what a folder holds, and the checks of a results.json and the scores file beside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cli_helpers
from cli_helpers import runner

from ncood.cli import app
from ncood.store.run import RunDir
from ncood.store.scores_file import LEGACY_NAME, load_scores_beside, scores_path

# -- commands and their errors -------------------------------------------------------------------


def analyze(*args: str):
    return runner.invoke(app, ["analyze", *map(str, args), "--quiet"])


def analyze_bootstrap_50(*args) -> object:
    """``analyze`` with 50 bootstrap resamples (fast; the comparisons are still computed)."""
    return runner.invoke(app, ["analyze", *map(str, args), "--quiet", "--bootstrap", "50"])


def analyze_run(run: RunDir, *args: str):
    """``analyze`` of a run folder, without bootstrap intervals."""
    return runner.invoke(app, ["analyze", str(run.root), "--quiet", "--bootstrap", "0", *args])


def one_line_error(result, *fragments: str) -> str:
    """Exit 1, no traceback, and one line holding every fragment: on stderr, and nothing else
    in the whole output."""
    cli_helpers.one_line_error(result, *fragments)
    return cli_helpers.one_line_error(result, *fragments, stream="stderr")


# -- what a folder holds -------------------------------------------------------------------------


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def snapshot(folder: Path) -> dict[str, bytes]:
    """``files_of`` but for the lock file a command may leave (it holds nothing)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".ncood.lock"
    }


# -- runs to attack ------------------------------------------------------------------------------

FOLDER_IMAGES = 8


def write_image(path: Path, colour: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)


def copied(run: RunDir, where: Path) -> RunDir:
    shutil.copytree(run.root, where, ignore=shutil.ignore_patterns("analysis"))
    return RunDir.open(where)


def unfinished(small_run: Path, target: Path) -> Path:
    """A copy of the run as if killed after its last epoch (resuming it trains nothing)."""
    shutil.copytree(small_run, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["status"] = "running"
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


# -- a results.json and its scores file ----------------------------------------------------------

SCORERS = "msp,energy,vim"


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def listed(results: dict) -> set[str]:
    return {s for per in results["ood"].values() for s in per}


def checked_pair(out: Path) -> tuple[dict, dict]:
    """results.json and the scores beside it, checked to be one pair: the file it names is
    there with its id and lengths, and holds the scores of exactly the scorers it lists."""
    results = results_of(out)
    scores = load_scores_beside(out, results)  # raises on a missing / foreign / short file
    assert set(scores) == listed(results)
    for scorer in listed(results):
        assert {"test", *(f"ood/{o}" for o in results["ood"])} <= set(scores[scorer])
    verdict = results.get("significance", {}).get("ood", {})
    for ood, found in verdict.items():  # the comparisons are over exactly the scorers listed
        assert set(found["pairs"]) == set(results["ood"][ood])
    return results, scores


def leftovers(out: Path) -> list[str]:
    """What the folder holds besides results.json and the one scores file it names."""
    named = scores_path(out, results_of(out)).name
    return sorted(p.name for p in out.iterdir() if p.name not in ("results.json", named))


def as_legacy(out: Path) -> None:
    """The folder as an ncood before generations wrote it: scores.safetensors, and a
    results.json that records the id but names no file."""
    results = results_of(out)
    scores_path(out, results).rename(out / LEGACY_NAME)
    results["scores_file"].pop("name", None)
    (out / "results.json").write_text(json.dumps(results, indent=2))
