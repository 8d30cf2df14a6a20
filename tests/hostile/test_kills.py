"""Commands killed or interrupted mid-write, or two writing one folder: what they leave.

An analysis SIGKILLed at any step of its write leaves the old results.json and scores file or
the new pair, never a mix, and the next analysis starts from it cleanly; a second writer of
the same folder waits its turn. A report killed or terminated takes latexmk and its children
along. A training resumed after a kill removes the temp files of the dead writers only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import runner
from hostile_helpers import (
    SCORERS,
    as_legacy,
    checked_pair,
    leftovers,
    listed,
    results_of,
    unfinished,
)
from hostile_helpers import analyze_bootstrap_50 as analyze

from ncood.cli import app
from ncood.store.atomic import folder_lock
from ncood.store.scores_file import is_scores_file, scores_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- an analysis killed at every step of its write -------------------------------------------------


# The analysis in a child process that SIGKILLs itself just before (or just after) its Nth call
# of the operations that change what is on disk for good or make it durable.
KILLED_CHILD = textwrap.dedent(
    """
    import atexit, os, signal, sys
    from ncood.cli import main
    point, when = int(sys.argv[1]), sys.argv[2]
    seen = [0]
    def traced(operation):
        def call(*args, **kwargs):
            seen[0] += 1
            if seen[0] == point and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = operation(*args, **kwargs)
            if seen[0] == point and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return call
    for name in ("replace", "rename", "unlink", "remove", "rmdir", "fsync"):
        setattr(os, name, traced(getattr(os, name)))
    atexit.register(lambda: print(f"operations={seen[0]}", file=sys.stderr))
    sys.argv = ["ncood", *sys.argv[3:]]
    main()
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("start", ["generation", "legacy"])
def test_a_kill_at_any_step_leaves_the_old_pair_or_the_new_one(tmp_path, features, start):
    first = tmp_path / "first"
    assert analyze(features, "--plugins", SCORERS, "--out", first).exit_code == 0
    if start == "legacy":
        as_legacy(first)
    old_text = (first / "results.json").read_text()
    _, old_scores = checked_pair(first)
    rerun = ["--plugins", "msp,energy", "--set", "energy.T=2"]
    reference = tmp_path / "reference"  # the same rerun, not killed
    shutil.copytree(first, reference)
    assert analyze(features, *rerun, "--out", reference).exit_code == 0
    new_results, new_scores = checked_pair(reference)
    assert new_results["params"]["energy"]["T"] == 2.0

    outcomes, point = set(), 0
    while True:
        point += 1
        for when in ("before", "after"):
            out = tmp_path / f"killed-{point}-{when}"
            shutil.copytree(first, out)
            child = subprocess.run(
                [sys.executable, "-c", KILLED_CHILD, str(point), when, "analyze", features]
                + [*rerun, "--bootstrap", "50", "--quiet", "--out", out],
                capture_output=True,
                text=True,
                timeout=120,
            )
            killed = child.returncode == -signal.SIGKILL
            assert killed or child.returncode == 0, child.stderr
            results, scores = checked_pair(out)
            if (out / "results.json").read_text() == old_text:  # the old pair, whole
                outcomes.add("old")
                assert set(scores) == set(old_scores)
                for scorer, per_split in old_scores.items():
                    for split, values in per_split.items():
                        np.testing.assert_array_equal(scores[scorer][split], values)
            else:  # the new pair, whole: what the uninterrupted rerun wrote
                outcomes.add("new")
                assert results["params"] == new_results["params"]
                assert set(scores) == set(new_scores) == listed(new_results)
                for scorer, per_split in new_scores.items():  # another process: same values
                    for split, values in per_split.items():
                        np.testing.assert_allclose(scores[scorer][split], values, rtol=1e-12)
            # the next analysis starts from it cleanly: nothing lost, nothing left behind
            after = analyze(features, "--plugins", "msp", "--out", out)
            assert after.exit_code == 0, after.output
            assert listed(checked_pair(out)[0]) == {"msp", "energy", "vim"}
            assert leftovers(out) == []
            shutil.rmtree(out)
        if not killed:
            break
    # every step was reached: two renames and their fsyncs at least, on both sides of them
    assert point >= 5 and outcomes == {"old", "new"}, (point, outcomes)


@pytest.mark.slow
def test_a_killed_write_leaves_no_scores_file_that_is_ever_read(tmp_path, features):
    """A scores file the killed writer made before its switch is not what results.json
    names; the next write removes it (and the temp files of the dead writer)."""
    out = tmp_path / "out"
    assert analyze(features, "--plugins", SCORERS, "--out", out).exit_code == 0
    orphan = out / ("scores-" + "ab" * 16 + ".safetensors")
    shutil.copyfile(scores_path(out, results_of(out)), orphan)
    assert is_scores_file(orphan.name) and scores_path(out, results_of(out)) != orphan
    assert analyze(features, "--plugins", "msp", "--out", out).exit_code == 0
    assert not orphan.exists() and leftovers(out) == []


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="folders are not locked on Windows")
def test_two_writers_of_one_folder_take_turns(tmp_path, features):
    """A write waits while another holds the folder, then merges into what that one wrote."""
    out = tmp_path / "out"
    assert analyze(features, "--plugins", "msp", "--out", out).exit_code == 0
    finished = []
    with folder_lock(out):  # another writer, between its read and its switch
        second = threading.Thread(
            target=lambda: finished.append(analyze(features, "--plugins", "energy", "--out", out))
        )
        second.start()
        second.join(timeout=1.0)
        assert second.is_alive() and not finished  # waiting, nothing written meanwhile
        assert listed(results_of(out)) == {"msp"}
    second.join(timeout=60)
    assert finished and finished[0].exit_code == 0, finished
    assert listed(checked_pair(out)[0]) == {"msp", "energy"} and leftovers(out) == []


# -- a killed report -------------------------------------------------------------------------------


def fake_latexmk(tmp_path: Path) -> tuple[Path, Path]:
    """A latexmk (and pdflatex) that starts a child and waits, recording both pids."""
    bin_dir, pids = tmp_path / "bin", tmp_path / "pids"
    bin_dir.mkdir()
    pids.mkdir()
    script = f"#!/bin/sh\necho $$ > {pids}/latexmk\nsleep 300 &\necho $! > {pids}/child\nwait\n"
    for name in ("latexmk", "pdflatex"):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    return bin_dir, pids


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def wait_for(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def start_compile(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    bin_dir, pids = fake_latexmk(tmp_path)
    tex = tmp_path / "doc.tex"
    tex.write_text("\\documentclass{article}\\begin{document}x\\end{document}\n")
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from ncood.report.compile import compile_pdf
        compile_pdf(Path({str(tex)!r}), Path({str(tmp_path / "doc.pdf")!r}))
        """
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    assert wait_for(lambda: (pids / "child").is_file() and (pids / "child").read_text().strip())
    return child, pids


def kill_leftovers(pids: Path) -> None:
    for record in pids.iterdir():
        text = record.read_text().strip()
        if text and not gone(int(text)):
            os.kill(int(text), signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_latexmk_dies_with_a_killed_ncood_and_is_in_its_process_group(tmp_path):
    child, pids = start_compile(tmp_path)
    try:
        latexmk = int((pids / "latexmk").read_text())
        assert os.getpgid(latexmk) == os.getpgid(child.pid)
        builds = list(Path(tempfile.gettempdir()).glob(f"ncood-latex-*-{child.pid}-*"))
        assert len(builds) == 1
        child.kill()
        child.wait()
        assert wait_for(lambda: gone(latexmk), 5), "latexmk outlived ncood"
        # the next report removes the private build folder the dead one left
        from ncood.store.atomic import clean_stale

        clean_stale(Path(tempfile.gettempdir()), prefix="ncood-latex")
        assert not builds[0].exists()
    finally:
        child.kill()
        kill_leftovers(pids)


def test_a_terminated_report_takes_latexmk_and_its_children_along(tmp_path):
    child, pids = start_compile(tmp_path)
    try:
        latexmk, grandchild = (int((pids / n).read_text()) for n in ("latexmk", "child"))
        child.send_signal(signal.SIGTERM)
        assert child.wait(10) != 0
        assert wait_for(lambda: gone(latexmk) and gone(grandchild), 5)
        assert not list(Path(tempfile.gettempdir()).glob(f"ncood-latex-*-{child.pid}-*"))
    finally:
        child.kill()
        kill_leftovers(pids)


# -- a training resumed after a kill ---------------------------------------------------------------


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


@pytest.mark.slow
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
