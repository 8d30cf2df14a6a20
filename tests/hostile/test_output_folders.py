"""Where the commands write: a ``--out`` that is a file, under a file or read-only; ``--force``
on a folder that is not an ncood run or holds files that are not ncood's; a disk that fills
during an analysis or a report (the previous results and report are kept, no figure is left
truncated); files that follow the umask.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import runner, train
from hostile_helpers import analyze, files_of, one_line_error, snapshot

from ncood.cli import app
from ncood.report.build import build_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- --out that cannot be a folder -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "under-file"])
def test_train_out_that_cannot_be_a_folder_is_one_line(tmp_path, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if kind == "file" else blocker / "run"
    one_line_error(train("--epochs", "1", "--out", str(out)), str(out))
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize("kind", ["file", "under-file"])
def test_analyze_out_that_cannot_be_a_folder_is_one_line(tmp_path, features_file, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if kind == "file" else blocker / "out"
    one_line_error(analyze(features_file, "--out", out), str(out))
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize("kind", ["file", "under-file", "read-only"])
def test_report_out_that_cannot_be_a_folder_is_one_line(demo_run, tmp_path, kind):
    if kind == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    blocker = tmp_path / "blocker"
    if kind == "read-only":
        blocker.mkdir(mode=0o555)
        out = blocker / "reports"
    else:
        blocker.write_text("a file")
        out = blocker if kind == "file" else blocker / "reports"
    result = runner.invoke(app, ["report", str(demo_run.root), "--out", str(out), "--no-pdf"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output and str(out) in result.stderr


# -- --force ---------------------------------------------------------------------------------------


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# -- a full disk -----------------------------------------------------------------------------------


def test_a_full_disk_during_analyze_says_so_and_keeps_the_results(run_copy, tmp_path, monkeypatch):
    before = files_of(run_copy)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    line = one_line_error(analyze(run_copy, "--plugins", "msp"))
    assert "no space left on device" in line and "not written" in line
    monkeypatch.undo()
    assert files_of(run_copy) == before


def test_a_full_disk_leaves_no_truncated_figure(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from ncood.report.figures import new_figure, save

    def half_then_full(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"%PDF-1.4 trunc")
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    fig, (axis,) = new_figure(1)
    axis.plot([0, 1], [0, 1])
    monkeypatch.setattr(Figure, "savefig", half_then_full)
    target = tmp_path / "figure.pdf"
    with pytest.raises(OSError):
        save(fig, target)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_report_says_so_and_keeps_the_previous_report(
    demo_run, tmp_path, monkeypatch, light_sections
):
    out = tmp_path / "out"
    first = runner.invoke(app, ["report", str(demo_run.root), "--out", str(out), "--no-pdf"])
    assert first.exit_code == 0, first.output
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    from ncood.report import figures

    real_save = figures.save
    calls = []

    def full_on_second(fig, path, tight=True):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(fig, path, tight)

    monkeypatch.setattr(figures, "save", full_on_second)
    result = runner.invoke(app, ["report", str(demo_run.root), "--out", str(out), "--no-pdf"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "no space left on device" in lines[0] and "previous report" in lines[0]
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


# -- permissions -----------------------------------------------------------------------------------


def test_outputs_follow_the_umask(demo_run, tmp_path, light_sections):
    old = os.umask(0o022)
    try:
        result = build_report([demo_run.root], out_dir=tmp_path / "out", pdf=False)
    finally:
        os.umask(old)
    assert result.tex.stat().st_mode & 0o777 == 0o644
    assert result.figures and all(f.stat().st_mode & 0o777 == 0o644 for f in result.figures)
    assert result.figures[0].parent.stat().st_mode & 0o777 == 0o755
