"""The demo pipeline end to end at a tiny size: train → features → analyze → French PDF."""

import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from ncood.cli import app
from ncood.store.run import RunDir

runner = CliRunner()


def test_run_directory_follows_the_format(demo_run):
    manifest = demo_run.manifest()
    assert manifest["status"] == "complete"
    assert manifest["config"]["epochs"] == 2
    assert set(manifest["files"]) == {
        "checkpoints/epoch-0001.safetensors",
        "checkpoints/epoch-0002.safetensors",
        "features/epoch-0001.safetensors",
        "features/epoch-0002.safetensors",
    }
    history = demo_run.history()
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"lr", "train_loss", "train_acc", "test_loss", "test_acc"} <= set(history[0])
    results = demo_run.results_for(2)
    assert set(results["ood"]) == {"photos", "noise"}
    metrics = ("auroc", "aupr_in", "aupr_out", "fpr95")  # each with its bootstrap interval
    assert {*metrics, *(f"{m}_ci" for m in metrics)} == set(results["ood"]["photos"]["msp"])


def test_existing_run_is_not_overwritten(demo_run):
    result = runner.invoke(app, ["train", "--preset", "demo-standard", "--out", str(demo_run.root)])
    assert result.exit_code == 1 and "already holds a run" in result.output


def test_report_without_tex_writes_the_source(tmp_path, demo_run, monkeypatch):
    monkeypatch.setattr("ncood.report.build.latexmk_available", lambda: False)
    result = runner.invoke(app, ["report", str(demo_run.root), "--out", str(tmp_path)])
    assert result.exit_code == 0
    assert "apt-get install latexmk" in result.output
    tex = (tmp_path / "ncood-report-fr.tex").read_text()
    assert r"\section{Entraînement" in tex


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="TeX is not installed")
def test_french_pdf_end_to_end(tmp_path, demo_run):
    result = runner.invoke(
        app, ["report", str(demo_run.root), "--lang", "fr", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    pdf = tmp_path / "ncood-report-fr.pdf"
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    assert "Entraînement" in text and "AUROC" in text
    for method in ("MSP", "Max Logit", "Energy"):
        assert method in text
    auroc = RunDir(demo_run.root).results_for(2)["ood"]["photos"]["msp"]["auroc"]
    assert f"{auroc:.3f}".replace(".", ",") in text
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    assert int(next(ln.split()[-1] for ln in info.splitlines() if ln.startswith("Pages"))) >= 3
    assert json.loads((demo_run.root / "manifest.json").read_text())["status"] == "complete"


def test_score_keys_survive_slashes_in_scorer_names(tmp_path):
    import numpy as np

    from ncood.store.scores_file import load_scores, save_scores

    scores = {
        r"\input{/etc/passwd}": {"test": np.ones(3), "ood/photos": np.zeros(2)},
        "msp": {"test": np.ones(3), "ood/photos": np.zeros(2)},
    }
    save_scores(tmp_path / "s.safetensors", scores)
    back = load_scores(tmp_path / "s.safetensors")
    assert set(back) == set(scores)
    assert set(back[r"\input{/etc/passwd}"]) == {"test", "ood/photos"}
