"""Issue #10 on run folders: --force (2), leftovers of a kill (6), --out and tampered
manifests or resume state (7), a deleted state/ (8)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import one_line_error, runner, train

from ncood.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".ncood.lock"
    }


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("small") / "run"
    result = train("--epochs", "2", "--checkpoint-every", "1", "--out", str(run))
    assert result.exit_code == 0, result.output
    return run


def unfinished(small_run: Path, target: Path) -> Path:
    """A copy of the run as if killed after its last epoch (resuming it trains nothing)."""
    shutil.copytree(small_run, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["status"] = "running"
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


# -- 2. --force ----------------------------------------------------------------------------------


def test_force_refuses_a_folder_whose_manifest_is_not_an_ncood_run(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "manifest.json").write_text('{"name": "someone else\'s web app"}')
    (project / "index.html").write_text("<html/>")
    (project / "src").mkdir()
    (project / "src" / "main.js").write_text("run()")
    before = snapshot(project)
    one_line_error(train("--epochs", "1", "--out", str(project), "--force"), "not an ncood run")
    assert snapshot(project) == before


def test_force_replaces_only_ncood_files(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    foreign = {
        "notes.txt": "my notes",
        "checkpoints/README": "what these are",
        "analysis/epoch-0001/my-plot.png": "png",
        "features/epoch-0001.safetensors.bak": "a backup",
        "extra/data.csv": "1,2",
    }
    for relative, text in foreign.items():
        (run / relative).parent.mkdir(parents=True, exist_ok=True)
        (run / relative).write_text(text)
    result = train("--epochs", "1", "--out", str(run), "--force")
    assert result.exit_code == 0, result.output
    for relative, text in foreign.items():
        assert (run / relative).read_text() == text
    assert not (run / "checkpoints" / "epoch-0002.safetensors").exists()  # the old run's
    assert (run / "checkpoints" / "epoch-0001.safetensors").is_file()  # the new run's
    assert json.loads((run / "manifest.json").read_text())["config"]["epochs"] == 1


# -- 6. leftovers of a kill ----------------------------------------------------------------------


def killed_writer_leaves_temp(folder: Path, name: str) -> Path:
    """A process that dies by SIGKILL in the middle of an atomic write of ``folder/name``."""
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from ncood.store.atomic import atomic_path
        with atomic_path(Path({str(folder / name)!r})) as tmp:
            tmp.write_bytes(b"half")
            print(tmp, flush=True)
            time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    temp = Path(child.stdout.readline().strip())
    assert temp.name, child.communicate()
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert temp.is_file() and temp.parent == folder
    return temp


def test_resume_removes_the_temp_files_of_a_killed_writer_only(small_run, tmp_path):
    run = unfinished(small_run, tmp_path / "run")
    dead = [
        killed_writer_leaves_temp(run / folder, name)
        for folder, name in [
            (".", "history.json"),
            ("checkpoints", "epoch-0003.safetensors"),
            ("state", "epoch-0003.safetensors"),
        ]
    ]
    # a writer that is alive (here: a sleeping child) keeps its temp file
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from ncood.store.atomic import host_tag

        live_temp = run / "features" / f".epoch-0009.safetensors.{host_tag()}-{alive.pid}-ab12.tmp"
        live_temp.write_bytes(b"in progress")
        result = runner.invoke(app, ["train", "--resume", str(run), "--quiet"])
        assert result.exit_code == 0, result.output
        assert [p for p in dead if p.exists()] == []
        assert live_temp.is_file()
    finally:
        alive.kill()
        alive.wait()


# -- 7. --out and tampered files on --resume -----------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "under-file"])
def test_train_out_that_cannot_be_a_folder_is_one_line(tmp_path, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if kind == "file" else blocker / "run"
    one_line_error(train("--epochs", "1", "--out", str(out)), str(out))
    assert blocker.read_text() == "a file"


MANIFEST_TAMPERS = {
    "a list": lambda m: [m],
    "config a list": lambda m: {**m, "config": []},
    "epochs a string": lambda m: {**m, "config": {**m["config"], "epochs": "many"}},
    "lr NaN": lambda m: {**m, "config": {**m["config"], "lr": float("nan")}},
    "config without epochs": lambda m: {
        **m,
        "config": {k: v for k, v in m["config"].items() if k != "epochs"},
    },
    "dataset sizes strings": lambda m: {**m, "dataset": {**m["dataset"], "train_size": "128"}},
}


@pytest.mark.parametrize("tamper", sorted(MANIFEST_TAMPERS))
def test_a_tampered_manifest_on_resume_is_one_line(small_run, tmp_path, tamper):
    run = unfinished(small_run, tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(MANIFEST_TAMPERS[tamper](manifest)))
    before = snapshot(run)
    one_line_error(runner.invoke(app, ["train", "--resume", str(run), "--quiet"]))
    assert snapshot(run) == before


STATE_TAMPERS = {
    "a list": lambda s: [s],
    "tensors elsewhere": lambda s: {**s, "tensors": "../manifest.json"},
    "epoch a string": lambda s: {**s, "epoch": "2"},
    "no optimizer": lambda s: {k: v for k, v in s.items() if k != "optimizer"},
    "history a string": lambda s: {**s, "history": "none"},
    "param groups empty": lambda s: {**s, "optimizer": {**s["optimizer"], "param_groups": []}},
    "python rng wrong": lambda s: {**s, "rng": {**s["rng"], "python": [3, [1, 2], None]}},
}


@pytest.mark.parametrize("tamper", sorted(STATE_TAMPERS))
def test_a_tampered_resume_state_is_one_line(small_run, tmp_path, tamper):
    run = unfinished(small_run, tmp_path / "run")
    state = json.loads((run / "state" / "state.json").read_text())
    (run / "state" / "state.json").write_text(json.dumps(STATE_TAMPERS[tamper](state)))
    before = snapshot(run)
    one_line_error(runner.invoke(app, ["train", "--resume", str(run), "--quiet"]))
    assert snapshot(run) == before


# -- 8. a deleted state/ -------------------------------------------------------------------------


def test_resume_without_state_after_finished_epochs_is_refused(small_run, tmp_path):
    run = unfinished(small_run, tmp_path / "run")
    shutil.rmtree(run / "state")
    before = snapshot(run)
    one_line_error(
        runner.invoke(app, ["train", "--resume", str(run), "--quiet"]),
        "state",
        "finished 2 epoch(s)",
    )
    assert snapshot(run) == before


def test_extract_force_replaces_only_an_ncood_run_holding_nothing_else(small_run, tmp_path):
    """The sibling of train --force: ``ncood extract --force`` replaces its --out whole."""
    from ncood.errors import NcoodError
    from ncood.extraction.imported import prepare_out

    project = tmp_path / "project"
    project.mkdir()
    (project / "manifest.json").write_text('{"name": "web app"}')
    with pytest.raises(NcoodError, match="not an ncood run"):
        prepare_out(project, force=True)
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    prepare_out(run, force=True)  # only ncood's files: may be replaced
    (run / "notes.txt").write_text("mine")
    with pytest.raises(NcoodError, match=r"holds files that are not ncood's \(notes.txt\)"):
        prepare_out(run, force=True)
