"""Issue #10 on analysis: results merged per plugin with a matching scores file (3), plugins
that misbehave (4), integrity (5), input classes (7), silent misreadings (8), smaller (9)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import cli_helpers
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

import ncood
from ncood.cli import app
from ncood.host.loading import host
from ncood.store.features import save_features

runner = CliRunner()


def analyze(*args: str):
    return runner.invoke(app, ["analyze", *map(str, args), "--quiet"])


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def one_line_error(result, *fragments: str) -> str:
    return cli_helpers.one_line_error(result, *fragments, stream="stderr")


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def features_file(tmp_path, tiny_dump):
    path = tmp_path / "features.safetensors"
    save_features(path, tiny_dump)  # D = 8, C = 4, OOD set "blobs"
    return path


@pytest.fixture
def test_plugin():
    added = []

    def add(plugin, name):
        host().add(plugin, name, distribution="tests", version="0", builtin=False)
        added.append(name)

    yield add
    for name in added:
        host().remove(name)


# -- 3. results merged per plugin; the scores file always matches ------------------------------


def test_a_new_run_of_one_plugin_replaces_only_its_entries(tmp_path, features_file):
    out = tmp_path / "out"
    assert analyze(features_file, "--plugins", "msp,energy", "--out", out).exit_code == 0
    first = results_of(out)
    result = analyze(features_file, "--plugins", "energy", "--set", "energy.T=3", "--out", out)
    assert result.exit_code == 0, result.output
    merged = results_of(out)
    assert merged["ood"]["blobs"]["msp"] == first["ood"]["blobs"]["msp"]
    assert merged["params"]["energy"] == {"T": 3.0} and "msp" in merged["params"]
    from ncood.store.scores_file import load_scores_beside

    scores = load_scores_beside(out, merged)
    assert set(scores) == {"msp", "energy"}


def test_a_failed_plugin_keeps_its_previous_good_result_unless_asked(tmp_path, features_file):
    out = tmp_path / "out"
    assert analyze(features_file, "--plugins", "msp,vim", "--out", out).exit_code == 0
    good = results_of(out)["ood"]["blobs"]["vim"]
    failed = analyze(features_file, "--plugins", "vim", "--set", "vim.dim=8", "--out", out)
    assert failed.exit_code == 1
    assert "vim failed: vim.dim must be between" in failed.stderr
    assert "previous result is kept" in failed.stderr
    kept = results_of(out)
    assert kept["ood"]["blobs"]["vim"] == good and "vim.dim" in kept["errors"]["vim"]
    assert "msp" in kept["ood"]["blobs"]
    from ncood.store.scores_file import load_scores_beside

    assert set(load_scores_beside(out, kept)) == {"msp", "vim"}
    dropped = analyze(
        features_file, "--plugins", "vim", "--set", "vim.dim=8", "--out", out, "--discard-failed"
    )
    assert dropped.exit_code == 1
    assert "vim" not in results_of(out)["ood"]["blobs"]
    assert set(load_scores_beside(out, results_of(out))) == {"msp"}


def test_when_every_plugin_fails_the_results_and_scores_still_match(tmp_path, features_file):
    out = tmp_path / "out"
    assert analyze(features_file, "--plugins", "msp,energy", "--out", out).exit_code == 0
    assert analyze(features_file, "--plugins", "vim", "--set", "vim.dim=8", "--out", out).exit_code
    results = results_of(out)
    assert set(results["ood"]["blobs"]) == {"msp", "energy"}
    from safetensors import safe_open

    from ncood.store.scores_file import scores_path

    with safe_open(str(scores_path(out, results)), "numpy") as handle:
        assert handle.metadata()["id"] == results["scores_file"]["id"]
        assert {k.split("/")[0] for k in handle.keys()}  # noqa: SIM118 == {"msp", "energy"}


def test_the_report_refuses_scores_that_are_not_the_results_own(demo_run, tmp_path):
    from ncood.errors import NcoodError
    from ncood.report.context import load_analyzed_run

    run = tmp_path / "run"
    shutil.copytree(demo_run.root, run)
    from ncood.store.scores_file import scores_path

    first, last = (sorted((run / "analysis").iterdir())[i] for i in (0, -1))
    shutil.copyfile(  # another epoch's scores file beside this epoch's results
        scores_path(first, results_of(first)), scores_path(last, results_of(last))
    )
    with pytest.raises(NcoodError, match="not the scores file results.json was written with"):
        load_analyzed_run(run).final_scores  # noqa: B018


def test_the_report_refuses_a_scores_file_of_the_wrong_length(demo_run, tmp_path):
    from ncood.errors import NcoodError
    from ncood.report.context import load_analyzed_run

    run = tmp_path / "run"
    shutil.copytree(demo_run.root, run)
    from safetensors import safe_open

    from ncood.store.scores_file import scores_path

    folder = sorted((run / "analysis").iterdir())[-1]
    last = scores_path(folder, results_of(folder))

    with safe_open(str(last), "numpy") as handle:
        metadata = handle.metadata()
    tensors = {k: v[:-3] for k, v in load_file(str(last)).items()}
    save_file(tensors, str(last), metadata=metadata)  # same id, three samples short
    with pytest.raises(NcoodError, match="expected"):
        load_analyzed_run(run).final_scores  # noqa: B018


# -- 4. plugins that misbehave -------------------------------------------------------------------


def analysis_plugin(name: str, returns):
    class Analysis:
        def run(self, dump):
            return returns() if callable(returns) else returns

    class Plugin:
        @ncood.hookimpl
        def register_analyses(self, register):
            register(name, Analysis, "a test analysis")

    return Plugin()


def test_odd_values_from_an_analysis_are_converted_at_the_boundary(
    tmp_path, features_file, test_plugin
):
    values = {
        "scalar": np.float32(1.5),
        "count": np.int64(3),
        "flag": np.bool_(True),
        "nan": float("nan"),
        "inf": np.float64("inf"),
        "array": np.arange(3),
        "keys": {np.int64(1): "one", 2: "two"},
    }
    test_plugin(analysis_plugin("odd", values), "odd_plugin")
    out = tmp_path / "out"
    result = analyze(features_file, "--plugins", "msp,odd", "--out", out)
    assert result.exit_code == 0, result.output
    odd = results_of(out)["odd"]
    assert odd == {
        "scalar": 1.5,
        "count": 3,
        "flag": True,
        "nan": None,
        "inf": None,
        "array": [0, 1, 2],
        "keys": {"1": "one", "2": "two"},
    }


@pytest.mark.parametrize(
    "returns, reason",
    [
        ({"a set": {1, 2}}, "of type set, which is not JSON"),
        ({"obj": object()}, "of type object, which is not JSON"),
        ([1, 2], "returned a list, not a dict"),
        (lambda: sys.exit(0), "called sys.exit(0)"),
        (lambda: sys.exit("bye"), "called sys.exit('bye')"),
    ],
)
def test_a_misbehaving_analysis_fails_alone(tmp_path, features_file, test_plugin, returns, reason):
    test_plugin(analysis_plugin("bad", returns), "bad_plugin")
    out = tmp_path / "out"
    result = analyze(features_file, "--plugins", "msp,bad,energy", "--out", out)
    assert result.exit_code == 1
    assert "bad failed: " in result.stderr and reason in result.stderr, result.stderr
    assert "Traceback" not in result.output
    results = results_of(out)
    assert set(results["ood"]["blobs"]) == {"msp", "energy"}
    assert reason in results["errors"]["bad"]


def test_ctrl_c_in_a_plugin_still_stops_ncood(tmp_path, features_file, test_plugin):
    def interrupt():
        raise KeyboardInterrupt

    test_plugin(analysis_plugin("stop", interrupt), "stop_plugin")
    result = analyze(features_file, "--plugins", "stop", "--out", tmp_path / "out")
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert not (tmp_path / "out" / "results.json").exists()


# An installed plugin whose module imports a dependency that is not installed.
BROKEN_ENTRY_POINT = EntryPoint(
    name="broken_import", value="missing_dependency_of_a_plugin:plugin", group="ncood"
)


@pytest.fixture
def broken_install(monkeypatch):
    import ncood.host.loading as plugins_module

    real = plugins_module.entry_points
    monkeypatch.setenv("NCOOD_LOAD_PLUGINS", "broken_import")
    monkeypatch.setattr(
        plugins_module, "entry_points", lambda group: [*real(group=group), BROKEN_ENTRY_POINT]
    )
    plugins_module.host.cache_clear()
    yield
    monkeypatch.undo()
    plugins_module.host.cache_clear()


def test_a_plugin_that_fails_to_import_is_listed_as_broken(broken_install, features_file):
    listed = runner.invoke(app, ["plugins"])
    assert listed.exit_code == 0, listed.output
    line = next(ln for ln in listed.output.splitlines() if ln.startswith("broken_import"))
    assert "BROKEN" in line and "missing_dependency_of_a_plugin" in line
    assert "scorer msp" in listed.output  # the others still load
    result = analyze(features_file, "--plugins", "msp")
    assert result.exit_code == 0, result.output
    assert "plugin 'broken_import'" in result.stderr and "is broken" in result.stderr


def test_a_plugin_whose_registration_raises_is_broken_not_fatal(test_plugin, features_file):
    class Plugin:
        @ncood.hookimpl
        def register_scorers(self, register):
            register("half", object, "registered before the crash")
            raise RuntimeError("registration bug")

    test_plugin(Plugin(), "bad_registration")
    result = analyze(features_file, "--plugins", "msp")
    assert result.exit_code == 0, result.output
    assert "'bad_registration'" in result.stderr and "registration bug" in result.stderr
    listed = runner.invoke(app, ["plugins"])
    assert "BROKEN" in listed.output and "scorer half" not in listed.output


# -- 5. integrity --------------------------------------------------------------------------------


def flip_a_bit(path: Path, keep_mtime: bool = False) -> None:
    info = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(info.st_size - 100)
        byte = handle.read(1)
        handle.seek(info.st_size - 100)
        handle.write(bytes([byte[0] ^ 0x10]))
    if keep_mtime:
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


@pytest.fixture
def run_copy(demo_run, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(demo_run.root, run)
    return run


def test_a_bit_flipped_features_file_is_refused(run_copy):
    features = sorted((run_copy / "features").iterdir())[-1]
    flip_a_bit(features)
    before = files_of(run_copy)
    one_line_error(analyze(run_copy), features.name, "does not match the run's manifest")
    assert files_of(run_copy) == before
    report = runner.invoke(app, ["report", str(run_copy), "--no-pdf", "--out", "unused"])
    one_line_error(report, "does not match the run's manifest")


def test_a_flip_that_kept_the_mtime_is_found_when_asked(run_copy):
    features = sorted((run_copy / "features").iterdir())[-1]
    flip_a_bit(features, keep_mtime=True)
    one_line_error(analyze(run_copy, "--verify"), "sha256 differs")


def test_a_truncated_features_file_is_refused_by_its_size(run_copy):
    features = sorted((run_copy / "features").iterdir())[-1]
    with open(features, "r+b") as handle:
        handle.truncate(features.stat().st_size - 8)
    one_line_error(analyze(run_copy), "size")


# -- 7. input classes ----------------------------------------------------------------------------


def raw_safetensors(path: Path, tensors: dict, metadata=None) -> Path:
    """A safetensors file written by hand: name → (dtype, shape, bytes)."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, blob) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
    return path


def as_raw(path: Path) -> dict:
    tensors = load_file(str(path))
    kinds = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    return {k: (kinds[v.dtype], v.shape, v.tobytes()) for k, v in tensors.items()}


@pytest.mark.parametrize("dtype, size", [("BF16", 2), ("F8_E4M3", 1), ("BOOL", 1)])
def test_tensors_of_dtypes_ncood_does_not_read_are_one_line(tmp_path, features_file, dtype, size):
    tensors = as_raw(features_file)
    _, shape, _ = tensors["test/features"]
    tensors["test/features"] = (dtype, shape, b"\0" * (int(np.prod(shape)) * size))
    path = raw_safetensors(tmp_path / "odd.safetensors", tensors, {"format": "ncood-features"})
    one_line_error(analyze(path, "--out", tmp_path / "out"), "test/features", dtype)


@pytest.mark.parametrize("epoch", ["abc", "-1", "1e3", "9" * 40])
def test_metadata_values_of_the_wrong_kind_are_one_line(tmp_path, features_file, epoch):
    path = raw_safetensors(
        tmp_path / "odd.safetensors",
        as_raw(features_file),
        {"format": "ncood-features", "epoch": epoch},
    )
    one_line_error(analyze(path, "--out", tmp_path / "out"), "epoch")


@pytest.mark.parametrize("kind", ["file", "under-file"])
def test_analyze_out_that_cannot_be_a_folder_is_one_line(tmp_path, features_file, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if kind == "file" else blocker / "out"
    one_line_error(analyze(features_file, "--out", out), str(out))
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "NaN"])
def test_non_finite_set_values_are_refused(tmp_path, features_file, value):
    out = tmp_path / "out"
    one_line_error(
        analyze(features_file, "--plugins", "energy", "--set", f"energy.T={value}", "--out", out),
        "finite",
    )
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.parametrize(
    "manifest",
    [
        [],
        "a string",
        {"format": "ncood-run", "config": []},
        {"format": "ncood-run", "dataset": {"name": 3}},
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_line(run_copy, manifest):
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    before = files_of(run_copy)
    one_line_error(analyze(run_copy))
    one_line_error(runner.invoke(app, ["report", str(run_copy), "--no-pdf", "--out", "unused"]))
    assert files_of(run_copy) == before


def test_a_full_disk_during_analyze_says_so_and_keeps_the_results(run_copy, tmp_path, monkeypatch):
    before = files_of(run_copy)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    line = one_line_error(analyze(run_copy, "--plugins", "msp"))
    assert "no space left on device" in line and "not written" in line
    monkeypatch.undo()
    assert files_of(run_copy) == before


# -- 8. silent misreadings -----------------------------------------------------------------------


def test_fractional_float_labels_are_refused(tmp_path, features_file):
    tensors = as_raw(features_file)
    labels = load_file(str(features_file))["train/labels"].astype(np.float32) + 0.4
    tensors["train/labels"] = ("F32", labels.shape, labels.tobytes())
    path = raw_safetensors(tmp_path / "odd.safetensors", tensors, {"format": "ncood-features"})
    one_line_error(analyze(path, "--out", tmp_path / "out"), "labels")


def test_identical_class_means_give_an_undefined_nc1_not_perfect_collapse(tiny_dump):
    from ncood.analyze.driver import analyze_dump, select

    rng = np.random.default_rng(0)
    points = rng.normal(size=(10, tiny_dump.feature_dim)).astype(np.float32)
    classes = tiny_dump.num_classes
    features = np.tile(points, (classes, 1))  # every class: the same ten points
    labels = np.repeat(np.arange(classes), len(points))
    logits = features @ tiny_dump.head.weight.T
    from ncood.store.features import FeatureDump, Split

    train = Split(features, logits, labels)
    dump = FeatureDump(train, train, tiny_dump.ood, tiny_dump.head)
    outcome = analyze_dump(dump, [], select(host(), ["nc"])[1])
    nc = outcome.results["nc"]
    assert nc["nc1"] is None
    assert any("undefined" in note for note in nc.get("notes", [])), nc


# -- 9. smaller ----------------------------------------------------------------------------------


NOISY_RUN = """
import sys, warnings
import numpy as np
import ncood
from ncood.host.loading import host

class Noisy:
    def fit(self, train, head):
        warnings.warn("something deprecated", DeprecationWarning, stacklevel=1)
        warnings.warn("something odd", UserWarning, stacklevel=1)
        np.log(np.zeros(1))  # RuntimeWarning: divide by zero

    def score(self, split):
        return split.logits.max(axis=1)

class Plugin:
    @ncood.hookimpl
    def register_scorers(self, register):
        register("noisy", Noisy, "warns")

host().add(Plugin(), "noisy_plugin", distribution="tests", version="0", builtin=False)
from ncood.cli import main
sys.argv = ["ncood", "analyze", sys.argv[1], "--plugins", "noisy", "--out", sys.argv[2], "--quiet"]
main()
"""


def test_python_warnings_do_not_leak_onto_stderr(tmp_path, features_file):
    """In a process of its own: pytest would catch the warnings before they reach stderr."""
    import subprocess

    env = {**os.environ, "NCOOD_LOAD_PLUGINS": ""}
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(
        [sys.executable, "-c", NOISY_RUN, str(features_file), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_help_shows_flags_as_flags():
    for command in ("train", "analyze", "report", "plugins"):
        text = runner.invoke(app, [command, "--help"], terminal_width=200).output
        assert "<bool>" not in text, text
    analyze_help = runner.invoke(app, ["analyze", "--help"], terminal_width=200).output
    assert "--quiet" in analyze_help and "--no-quiet" not in analyze_help


def test_a_literal_dollar_in_figure_text_stays_literal():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.cbook import is_math_text

    from ncood.report.context import plain

    for raw in (r"a\$b", "c$d", r"\$x$", "e\\"):
        assert not is_math_text(plain(raw))
