"""Malformed files: features files, manifests, results and scores files, and every command
that reads them, run in-process.

Every outcome must be one of two: the command accepts the input (exit 0, no error line), or
it refuses it cleanly (exit 1, exactly one ``ncood: error:`` line on stderr, no traceback, no
exception escaping, and no file under the run changed). Inputs that cannot be valid (a
truncated file, a flipped byte in a run whose manifest records its checksums, tensors of
dtypes ncood does not read, fractional labels) must be refused.

Byte-level mutations come from ``hypothesis`` with a fixed seed (``derandomize``) and bounded
examples, so CI sees the same cases every time and the whole file stays under a minute.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import runner
from hostile_helpers import analyze, one_line_error
from hostile_helpers import snapshot as files_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nc_builders import make_dump
from safetensors.numpy import load_file, save_file

from ncood.analyze.driver import analyze_file, select
from ncood.cli import app
from ncood.engine.presets import resolve_preset
from ncood.host.loading import host
from ncood.host.registry import Registry
from ncood.report import build as build_module
from ncood.report.context import ReportSection
from ncood.store.features import save_features
from ncood.store.run import RunDir
from ncood.store.scores_file import scores_path

FUZZ = settings(
    max_examples=16,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


FEATURES = "features/epoch-0002.safetensors"


RESULTS = "analysis/epoch-0002/results.json"


DTYPES = ["F16", "F32", "F64", "BF16", "F8_E4M3", "F8_E5M2", "BOOL", "I8", "I32", "I64", "U8", "X"]


# -- a small run, made by hand (no training), and what the commands may do to it -------------------


def write_run(root: Path) -> Path:
    """Two epochs of features of the conftest dump, analyzed with msp, a complete manifest."""
    (root / "features").mkdir(parents=True)
    for epoch in (1, 2):
        dump = make_dump(seed=epoch)
        dump.metadata.update({"epoch": str(epoch), "dataset": "digits"})
        save_features(root / "features" / f"epoch-{epoch:04d}.safetensors", dump)
    run = RunDir(root)
    config = resolve_preset("demo-standard", epochs=2, width=4, checkpoint_every=1)
    files = run.checksums()
    manifest = {
        "format": "ncood-run",
        "format_version": 1,
        "status": "complete",
        "created": "2026-12-01T00:00:00+00:00",
        "seed": 0,
        "config": config.to_dict(),
        "versions": {"ncood": "test"},
        "device": "cpu",
        "dataset": {
            "name": "digits",
            "num_classes": 4,
            "train_size": 120,
            "test_size": 60,
            "ood": {"blobs": 40},
            "mean": [0.5],
            "std": [0.2],
        },
        "model": {"name": "resnet18-cifar", "width": 4, "feature_dim": 8},
        "files": files,
        "file_stats": run.file_stats(files),
    }
    run.write_manifest(manifest)
    record = {"lr": 0.05, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5}
    run.write_history([{"epoch": e, **record, "seconds": 1.0} for e in (1, 2)])
    scorers, analyses = select(host(), ["msp", "energy"])
    for epoch in (1, 2):
        analyze_file(run.features(epoch), run.analysis_dir(epoch), scorers, analyses)
    return root


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("fuzz") / "pristine")


@pytest.fixture
def fresh(pristine, tmp_path):
    """A new copy of the run for each example (the mutation happens in it)."""
    counter = iter(range(10**6))

    def copy() -> Path:
        target = tmp_path / f"run-{next(counter)}"
        shutil.copytree(pristine, target)
        return target

    return copy


def scores_of(root: Path) -> Path:
    """The scores file epoch 2's results.json names."""
    return scores_path((root / RESULTS).parent, json.loads((root / RESULTS).read_text()))


@pytest.fixture(autouse=True)
def probe_sections(monkeypatch):
    """The report with one section that reads what every section reads (results, scores,
    manifest, history) and draws nothing: the fuzz tests the reading, fast."""

    def build(ctx):
        for run in ctx.runs:
            _ = (run.final_scores, run.label, run.preset, run.epochs, run.history)
            for epoch in run.results:
                run.scores_at(epoch)
        return None

    class Host:
        def report_sections(self):
            sections = Registry("report section")
            sections.add("probe", ReportSection("probe", 1, "none.tex.j2", build))
            return sections

    monkeypatch.setattr(build_module, "host", Host)
    # --resume never trains here: validation is what is fuzzed
    monkeypatch.setattr("ncood.engine.train._execute", lambda state, show: state.run)


def check(result, root: Path, before: dict[str, bytes], *, must_refuse: bool) -> None:
    """Accepted cleanly, or refused in one line with the run untouched."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    errors = [ln for ln in result.stderr.splitlines() if not ln.startswith("ncood: warning:")]
    if result.exit_code == 0:
        assert not must_refuse, f"accepted: {result.output}"
        assert not errors, result.stderr
        return
    assert result.exit_code == 1, result.output
    assert len(errors) == 1 and errors[0].startswith("ncood: error: "), result.stderr
    assert files_of(root) == before


def every_command(root: Path, tmp_path: Path, *, must_refuse: bool, resume_reads=True) -> None:
    """analyze and report read everything; ``train --resume`` of a complete run reads only the
    manifest (``resume_reads=False``: it may accept what the others refuse)."""
    for args, reads in (
        (["analyze", str(root), "--plugins", "msp", "--epoch", "all", "--quiet"], True),
        (["report", str(root), "--no-pdf", "--out", str(tmp_path / "report")], True),
        (["train", "--resume", str(root), "--quiet"], resume_reads),
    ):
        before = files_of(root)
        check(runner.invoke(app, args), root, before, must_refuse=must_refuse and reads)


def rerecord(root: Path) -> None:
    """Make the manifest's checksums agree with the files again: a consistent lie."""
    run = RunDir(root)
    manifest = json.loads(run.manifest_path.read_text())
    manifest["files"] = run.checksums()
    manifest["file_stats"] = run.file_stats(manifest["files"])
    run.manifest_path.write_text(json.dumps(manifest))


def header_of(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def write_header(path: Path, header: dict, data: bytes) -> None:
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


# -- features files --------------------------------------------------------------------------------


@FUZZ
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_features_in_a_run_are_refused(fresh, tmp_path, fraction):
    root = fresh()
    path = root / FEATURES
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(int(size * fraction))
    every_command(root, tmp_path, must_refuse=True, resume_reads=False)


@FUZZ
@given(position=st.integers(0, 4000), flip=st.integers(1, 255))
def test_a_changed_byte_in_a_run_is_refused(fresh, tmp_path, position, flip):
    root = fresh()
    path = root / FEATURES
    raw = bytearray(path.read_bytes())
    raw[position % len(raw)] ^= flip
    path.write_bytes(bytes(raw))
    every_command(root, tmp_path, must_refuse=True, resume_reads=False)


@FUZZ
@given(position=st.integers(0, 2000), value=st.integers(0, 255))
def test_header_bytes_of_a_features_file(tmp_path, position, value):
    """A standalone file (no manifest to check it against): whatever the byte, one line."""
    path = tmp_path / "features.safetensors"
    save_features(path, make_dump())
    raw = bytearray(path.read_bytes())
    (size,) = struct.unpack("<Q", raw[:8])
    raw[position % (size + 8)] = value
    path.write_bytes(bytes(raw))
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["analyze", str(path), "--plugins", "msp", "--out", str(out), "--quiet"]
    )
    check(result, tmp_path / "none", {}, must_refuse=False)


@FUZZ
@given(
    tensor=st.sampled_from(["test/features", "test/logits", "train/labels", "head/weight"]),
    field=st.sampled_from(["dtype", "shape", "data_offsets"]),
    dtype=st.sampled_from(DTYPES),
    numbers=st.lists(st.integers(-2, 10**6), min_size=0, max_size=3),
)
def test_header_lies_in_a_run(fresh, tmp_path, tensor, field, dtype, numbers):
    root = fresh()
    path = root / FEATURES
    header, data = header_of(path)
    header[tensor][field] = dtype if field == "dtype" else numbers
    write_header(path, header, data)
    rerecord(root)  # the manifest agrees: only the header itself can be refused
    every_command(root, tmp_path, must_refuse=False)


@FUZZ
@given(
    metadata=st.dictionaries(
        st.sampled_from(["format", "epoch", "dataset", "format_version", "\x00", "é"]),
        st.one_of(st.text(max_size=12), st.integers(), st.none()),
        max_size=4,
    )
)
def test_odd_metadata(tmp_path, metadata):
    path = tmp_path / "features.safetensors"
    save_features(path, make_dump())
    header, data = header_of(path)
    header["__metadata__"] = metadata
    write_header(path, header, data)
    result = runner.invoke(
        app, ["analyze", str(path), "--plugins", "msp", "--quiet", "--out", str(tmp_path / "out")]
    )
    check(result, tmp_path / "none", {}, must_refuse=False)


@FUZZ
@given(
    tensor=st.sampled_from(
        ["train/features", "test/logits", "ood/blobs/features", "head/weight", "head/bias"]
    ),
    index=st.integers(0, 10**6),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_non_finite_values_are_refused(tmp_path, tensor, index, value):
    path = tmp_path / "features.safetensors"
    save_features(path, make_dump())
    tensors = load_file(str(path))
    flat = tensors[tensor].reshape(-1).copy()
    flat[index % flat.size] = value
    tensors[tensor] = flat.reshape(tensors[tensor].shape)
    save_file(tensors, str(path), metadata={"format": "ncood-features"})
    result = runner.invoke(
        app, ["analyze", str(path), "--plugins", "msp", "--quiet", "--out", str(tmp_path / "out")]
    )
    check(result, tmp_path / "none", {}, must_refuse=True)


MUTATIONS = {
    "float16": lambda a: a.astype(np.float16),
    "float64": lambda a: a.astype(np.float64),
    "int32": lambda a: a.astype(np.int32),
    "uint8": lambda a: a.astype(np.uint8),
    "bool": lambda a: a.astype(bool),
    "fractional": lambda a: a.astype(np.float32) + 0.5,
    "transposed": lambda a: np.ascontiguousarray(a.T),
    "one row less": lambda a: a[:-1],
    "flattened": lambda a: a.reshape(-1),
    "empty": lambda a: a[:0],
    "scalar": lambda a: np.asarray(a.reshape(-1)[0]),
}


@FUZZ
@given(
    tensor=st.sampled_from(
        ["train/features", "train/labels", "test/logits", "ood/blobs/labels", "head/bias"]
    ),
    mutation=st.sampled_from(sorted(MUTATIONS)),
)
def test_dtype_and_shape_mutations(tmp_path, tensor, mutation):
    path = tmp_path / "features.safetensors"
    save_features(path, make_dump())
    tensors = load_file(str(path))
    tensors[tensor] = np.ascontiguousarray(MUTATIONS[mutation](tensors[tensor]))
    save_file(tensors, str(path), metadata={"format": "ncood-features"})
    result = runner.invoke(
        app,
        ["analyze", str(path), "--plugins", "msp,nc", "--quiet", "--out", str(tmp_path / "out")],
    )
    check(result, tmp_path / "none", {}, must_refuse=False)


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


def test_fractional_float_labels_are_refused(tmp_path, features_file):
    tensors = as_raw(features_file)
    labels = load_file(str(features_file))["train/labels"].astype(np.float32) + 0.4
    tensors["train/labels"] = ("F32", labels.shape, labels.tobytes())
    path = raw_safetensors(tmp_path / "odd.safetensors", tensors, {"format": "ncood-features"})
    one_line_error(analyze(path, "--out", tmp_path / "out"), "labels")


# -- manifests -------------------------------------------------------------------------------------


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths_of(value, prefix=()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths_of(inner, (*prefix, key))
    return found


def replaced(value, path: tuple, new):
    if not path:
        return new
    return {**value, path[0]: replaced(value[path[0]], path[1:], new)}


@FUZZ
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_manifests_are_refused(fresh, tmp_path, fraction):
    root = fresh()
    text = (root / "manifest.json").read_text()
    (root / "manifest.json").write_text(text[: int(len(text) * fraction)])
    every_command(root, tmp_path, must_refuse=True)


@FUZZ
@given(data=st.data(), new=JSON_VALUES)
def test_manifests_with_a_value_replaced(fresh, tmp_path, data, new):
    root = fresh()
    manifest = json.loads((root / "manifest.json").read_text())
    where = data.draw(st.sampled_from(paths_of(manifest)))
    mutated = replaced(manifest, where, new)
    (root / "manifest.json").write_text(json.dumps(mutated))  # NaN/Infinity as Python writes
    every_command(root, tmp_path, must_refuse=False)


# -- results and scores ----------------------------------------------------------------------------


@FUZZ
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_results_are_refused_by_the_report(fresh, tmp_path, fraction):
    root = fresh()
    text = (root / RESULTS).read_text()
    (root / RESULTS).write_text(text[: int(len(text) * fraction)])
    before = files_of(root)
    result = runner.invoke(app, ["report", str(root), "--no-pdf", "--out", str(tmp_path / "r")])
    check(result, root, before, must_refuse=True)
    every_command(root, tmp_path, must_refuse=False)


@FUZZ
@given(data=st.data(), new=JSON_VALUES)
def test_results_with_a_value_replaced(fresh, tmp_path, data, new):
    root = fresh()
    results = json.loads((root / RESULTS).read_text())
    where = data.draw(st.sampled_from(paths_of(results)))
    (root / RESULTS).write_text(json.dumps(replaced(results, where, new)))
    before = files_of(root)
    result = runner.invoke(app, ["report", str(root), "--no-pdf", "--out", str(tmp_path / "r")])
    check(result, root, before, must_refuse=False)


@FUZZ
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_scores_are_refused_by_the_report(fresh, tmp_path, fraction):
    root = fresh()
    path = scores_of(root)
    with open(path, "r+b") as handle:
        handle.truncate(int(path.stat().st_size * fraction))
    before = files_of(root)
    result = runner.invoke(app, ["report", str(root), "--no-pdf", "--out", str(tmp_path / "r")])
    check(result, root, before, must_refuse=True)


@FUZZ
@given(
    change=st.sampled_from(["id", "length", "dtype", "no id", "nan", "extra key", "bytes"]),
    position=st.integers(0, 10**5),
)
def test_scores_files_that_lie(fresh, tmp_path, change, position):
    root = fresh()
    path = scores_of(root)
    header, data = header_of(path)
    tensors = load_file(str(path))
    metadata = dict(header.get("__metadata__", {}))
    if change == "bytes":
        raw = bytearray(path.read_bytes())
        raw[position % len(raw)] ^= 0xFF
        path.write_bytes(bytes(raw))
    else:
        if change == "id":
            metadata["id"] = "0" * 32
        elif change == "no id":
            metadata.pop("id")
        elif change == "length":
            key = sorted(tensors)[position % len(tensors)]
            tensors[key] = tensors[key][:-1]
        elif change == "dtype":
            key = sorted(tensors)[position % len(tensors)]
            tensors[key] = tensors[key].astype(np.int32)
        elif change == "nan":
            key = sorted(tensors)[position % len(tensors)]
            tensors[key][position % len(tensors[key])] = np.nan
        elif change == "extra key":
            tensors["stray"] = np.zeros(3, np.float32)
        save_file(tensors, str(path), metadata=metadata)
    before = files_of(root)
    result = runner.invoke(app, ["report", str(root), "--no-pdf", "--out", str(tmp_path / "r")])
    check(result, root, before, must_refuse=change != "bytes")
