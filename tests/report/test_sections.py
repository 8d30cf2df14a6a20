"""The sentences and rules of the core, training and NECO sections, on hand-made results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from ncood.ood.conventions import fpr_at_recall
from ncood.report.build import core_templates
from ncood.report.context import ReportContext, load_analyzed_run, load_strings
from ncood_plugins.sections import intro
from ncood_plugins.sections import neco as report_neco
from ncood_plugins.sections import training as report_training
from ncood_plugins.sections.appendix import manifest_tables


def context(runs, tmp_path: Path, lang: str = "fr") -> ReportContext:
    figures = tmp_path / "figures"
    figures.mkdir(exist_ok=True)
    return ReportContext(
        [load_analyzed_run(r) for r in runs],
        lang,
        figures,
        tmp_path,
        load_strings(lang, [core_templates()]),
    )


def edit_results(run: Path, change) -> None:
    for path in sorted((run / "analysis").glob("epoch-*/results.json")):
        results = json.loads(path.read_text())
        change(results)
        path.write_text(json.dumps(results))


def set_scores(run: Path, change) -> None:
    for path in sorted((run / "analysis").glob("epoch-*/scores-*.safetensors")):
        tensors = change(dict(load_file(str(path))))
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata()  # keeps the id results.json records
        save_file(tensors, str(path), metadata=metadata)


@pytest.fixture
def run_copy(demo_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(demo_run.root, target)
    return target


# -- training ---------------------------------------------------------------------------------


def curves(train_acc, train_loss=None) -> report_training.Curves:
    n = len(train_acc)
    loss = train_loss or [1.0 / (i + 1) for i in range(n)]
    return report_training.Curves(
        list(range(1, n + 1)), [0.1] * n, loss, loss, list(train_acc), list(train_acc), 1.0
    )


def test_terminal_phase_starts_where_accuracy_stays_above_the_threshold():
    assert curves([0.5, 0.995, 0.98, 0.995, 0.999]).terminal_start() == 4
    assert curves([0.5, 0.9, 0.991, 0.992]).terminal_start() == 3
    assert curves([0.5, 0.98]).terminal_start() is None
    assert curves([0.2, 0.9, 0.7]).best_test() == (0.9, 2)


def test_training_sentences_follow_the_numbers(run_copy, tmp_path):
    ctx = context([run_copy], tmp_path)
    run = ctx.runs[0]
    reached = curves([0.5, 0.995, 0.999], [1.0, 0.1, 0.05])
    flat = curves([0.5, 0.995, 0.999], [1.0, 0.1, 0.2])
    never = curves([0.5, 0.9, 0.95])
    assert "comme attendu" in report_training.terminal_sentence(ctx, run, reached)
    assert "contrairement à l'attendu" in report_training.terminal_sentence(ctx, run, flat)
    text = report_training.terminal_sentence(ctx, run, never)
    assert "Contrairement à ce qu'attend le TP" in text and r"\SI{95.00}{\percent}" in text


def test_longer_run_with_higher_loss_is_called_a_contradiction(run_copy, tmp_path):
    longer = tmp_path / "longer"
    shutil.copytree(run_copy, longer)
    history = json.loads((longer / "history.json").read_text())
    history.append({**history[-1], "epoch": len(history) + 1, "train_loss": 99.0})
    (longer / "history.json").write_text(json.dumps(history))
    ctx = context([run_copy, longer], tmp_path)
    assert "Contrairement à l'attendu" in report_training.comparison_sentence(ctx, ctx.runs)


def test_the_training_text_names_the_runs_loss(run_copy, tmp_path):
    logitnorm = tmp_path / "logitnorm"
    shutil.copytree(run_copy, logitnorm)
    manifest = json.loads((logitnorm / "manifest.json").read_text())
    manifest["config"].update(loss="logitnorm", logitnorm_tau=0.04)
    (logitnorm / "manifest.json").write_text(json.dumps(manifest))
    ctx = context([run_copy], tmp_path, lang="en")
    assert "cross-entropy" in report_training.loss_text(ctx, ctx.runs)
    ctx = context([logitnorm], tmp_path, lang="en")
    text = report_training.loss_text(ctx, ctx.runs)
    assert "LogitNorm" in text and "0.04" in text and "cross-entropy" not in text
    ctx = context([run_copy, logitnorm], tmp_path, lang="en")
    mixed = report_training.loss_text(ctx, ctx.runs)
    assert "cross-entropy" not in mixed and "LogitNorm" not in mixed


# -- NECO -------------------------------------------------------------------------------------


def standing(auroc: float, best: float, rank: int) -> report_neco.Standing:
    return report_neco.Standing("photos", auroc, 0.3, rank, 14, "mahalanobis", best)


def test_neco_sentence_says_best_close_or_behind_the_tp(run_copy, tmp_path):
    ctx = context([run_copy], tmp_path)
    run = ctx.runs[0]
    best = report_neco.standing_sentence(ctx, run, standing(0.9, 0.9, 1))
    close = report_neco.standing_sentence(ctx, run, standing(0.89, 0.905, 2))
    behind = report_neco.standing_sentence(ctx, run, standing(0.80, 0.95, 5))
    chance = report_neco.standing_sentence(ctx, run, standing(0.40, 0.95, 9))
    assert "dans le sens du TP" in best
    assert "comme dans le TP, NECO reste compétitif" in close
    assert "contrairement au TP" in behind and "inférieur" not in behind
    assert r"inférieur à \num{0.5}" in chance


def test_neco_rank_counts_only_strictly_better_methods(run_copy, tmp_path):
    def fix(results):
        per_scorer = results["ood"]["photos"]
        for index, name in enumerate(sorted(per_scorer)):
            per_scorer[name]["auroc"] = 0.5 + 0.01 * index
        per_scorer["neco"]["auroc"] = 0.9
        per_scorer["msp"]["auroc"] = 0.95
        per_scorer["energy"]["auroc"] = 0.9  # a tie does not push NECO down

    edit_results(run_copy, fix)
    ctx = context([run_copy], tmp_path)
    result = report_neco.standing(ctx.runs[0], "photos")
    assert (result.rank, result.best, result.best_auroc) == (2, "msp", 0.95)
    assert result.count == len(ctx.runs[0].final["ood"]["photos"])


def test_neco_section_uses_the_scores_and_results(run_copy, tmp_path):
    rng = np.random.default_rng(0)

    def known_scores(tensors):
        # as many samples as the run's sets: a scores file of another length is refused
        tensors["neco/test"] = rng.uniform(0.6, 1.0, len(tensors["neco/test"])).astype(np.float32)
        tensors["neco/ood/photos"] = rng.uniform(0.0, 0.5, len(tensors["neco/ood/photos"])).astype(
            np.float32
        )
        return tensors

    set_scores(run_copy, known_scores)
    ctx = context([run_copy], tmp_path)
    data = report_neco.build(ctx)
    (run,) = data["runs"]
    assert (tmp_path / run["figure"]).is_file()
    assert (tmp_path / data["progression"]).is_file()
    final = ctx.runs[0].final["ood"]
    assert ctx.runs[0].ood_sets(report_neco.SCORER) == ["photos", "noise"]  # the manifest's order
    assert [s["auroc"] for s in run["standings"]] == [
        final[o]["neco"]["auroc"] for o in ("photos", "noise")
    ]
    # the threshold drawn is the one of FPR@95: it keeps ≥ 95 % of ID and accepts FPR@95 of OOD
    for ood in ("photos", "noise"):
        scores = ctx.runs[0].final_scores["neco"]
        id_scores, ood_scores = scores["test"], scores[f"ood/{ood}"]
        threshold = ctx.fpr95_threshold(id_scores, ood_scores)
        assert np.mean(id_scores >= threshold) >= 0.95
        assert np.mean(ood_scores >= threshold) == fpr_at_recall(id_scores, ood_scores)


def test_neco_section_leaves_itself_out_without_neco_results(run_copy, tmp_path):
    def drop(results):
        for per_scorer in results["ood"].values():
            per_scorer.pop("neco", None)

    edit_results(run_copy, drop)
    set_scores(run_copy, lambda t: {k: v for k, v in t.items() if not k.startswith("neco/")})
    ctx = context([run_copy], tmp_path)
    assert report_neco.build(ctx) is None
    assert not list(ctx.figures_dir.iterdir())


# -- introduction and appendix -------------------------------------------------------------------


def test_intro_counts_what_was_measured(run_copy, tmp_path):
    ctx = context([run_copy], tmp_path, "en")
    data = intro.build(ctx)
    final = ctx.runs[0].final
    assert data["checkpoints"] == len(ctx.runs[0].results)
    assert data["classes"] == ctx.runs[0].manifest["dataset"]["num_classes"]
    assert "MSP" in data["methods"] and "NECO" in data["methods"]
    measured = sorted({k[2] for k in final["nc"] if k[:2] == "nc" and k[2:3].isdigit()})
    assert data["nc"] == (f"NC{measured[0]} to NC{measured[-1]}")


def test_enumeration_reads_naturally(tmp_path):
    ctx = context([], tmp_path, "fr")
    assert ctx.enumeration(["a"]) == "a"
    assert ctx.enumeration(["a", "b$", "c"]) == r"a, b\$ et c"


def test_manifest_table_marks_what_differs(run_copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run_copy, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["config"]["lr"] = 0.5
    (other / "manifest.json").write_text(json.dumps(manifest))
    ctx = context([run_copy, other], tmp_path)
    (table,) = manifest_tables(ctx)
    rows = {row["key"]: row for group in table["groups"] for row in group["rows"]}
    assert rows["config.lr"]["differs"] and rows["config.lr"]["cells"][1] == "0.5"
    assert not rows["seed"]["differs"]
    assert "dataset.mean" not in rows and "files" not in " ".join(rows)
