"""Scorer families: every built-in scorer has one, the OOD tables group their rows by family
under a heading each, and a sentence names the family with the best mean AUROC — on hand-made
results, without training or compiling anything."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

import ncood
from ncood.host.loading import host
from ncood.host.scoring import FAMILIES
from ncood.report.build import _render_section, core_templates
from ncood.report.context import AnalyzedRun, ReportContext, ReportSection, load_strings
from ncood_plugins.sections import ood as report_ood

EXPECTED = {
    **dict.fromkeys(
        ("msp", "maxlogit", "energy", "gen", "entropy", "klm", "tscaling", "webo"), "logit"
    ),
    **dict.fromkeys(("ensemble", "ensemble-mi", "member-msp"), "logit"),
    **dict.fromkeys(("multi-mahalanobis", "layers"), "feature"),
    **dict.fromkeys(("react", "dice", "ash-p", "ash-b", "ash-s", "scale", "vra", "lts"), "shaping"),
    **dict.fromkeys(
        (
            *("mahalanobis", "l2", "rmds", "vim", "neco", "knn", "nci", "fdbd", "she"),
            *("gradnorm", "nnguide", "gmm", "openmax"),
            *("residual", "maxcosine", "caref", "cadref", "relation", "pnml", "graduncertainty"),
        ),
        "feature",
    ),
    **dict.fromkeys(
        (
            *("odin", "mcd", "gram", "rankfeat", "nac", "mahalanobis-odin"),
            *("adascale-a", "adascale-l", "iodin"),
        ),
        "model",
    ),
}

# Logit: (0.80 + 0.92) / 2 = 0.86 over 2; feature: (0.95 + 0.71) / 2 = 0.83 over 2;
# shaping: 0.84 alone; "mystery" (no plugin knows it): 0.50, under "other".
AUROCS = {
    "mystery": 0.50,
    "knn": 0.71,
    "react": 0.84,
    "msp": 0.80,
    "mahalanobis": 0.95,
    "energy": 0.92,
}


def metrics(auroc: float) -> dict:
    return {"auroc": auroc, "aupr_in": auroc, "aupr_out": auroc, "fpr95": 1 - auroc}


def made_up_run(aurocs: dict[str, float], groups: bool = False) -> AnalyzedRun:
    results = {"ood": {"noise": {s: metrics(a) for s, a in aurocs.items()}}}
    if groups:
        results["ood_groups"] = {
            "far": {
                "sets": ["noise"],
                "scorers": {s: {"auroc": a, "fpr95": 1 - a} for s, a in aurocs.items()},
            }
        }
    manifest = {
        "config": {"preset": "demo", "epochs": 2, "ood": ["noise"]},
        "dataset": {"name": "blobs"},
    }
    run = AnalyzedRun(SimpleNamespace(root=Path("/made/up/demo")), manifest, [], {2: results})
    run.__dict__["final_scores"] = {}  # no per-sample scores: no figures
    return run


def context(run: AnalyzedRun, tmp_path: Path, lang: str) -> ReportContext:
    return ReportContext([run], lang, tmp_path, tmp_path, load_strings(lang, [core_templates()]))


def test_every_built_in_scorer_has_its_family():
    registered = {}
    for name, scorer in host().scorers().items():
        assert scorer.family in FAMILIES, name
        registered[name] = scorer.family
    assert {n: f for n, f in registered.items() if n in EXPECTED} == EXPECTED
    assert set(host().scorers().names()) == set(EXPECTED)


class ThirdParty:
    @ncood.hookimpl
    def register_scorers(self, register):
        register("plain3p", object, "a third-party scorer with no family")
        register("net3p", NetScorer, "a scorer that runs the network", title="Net 3P")


class NetScorer(ncood.Scorer):
    needs_network = True


def test_unknown_and_familyless_scorers_are_other_model_scorers_are_found(tmp_path, plugin_host):
    plugin_host(ThirdParty(), "third_party_families")
    ctx = context(made_up_run(AUROCS), tmp_path, "en")
    assert ctx.scorer_family("mystery") == "other"  # in the results, in no loaded plugin
    assert ctx.scorer_family("plain3p") == "other"  # registered without a family
    assert ctx.scorer_family("net3p") == "model"  # a network scorer's default
    assert ctx.scorer_title("net3p") == "Net 3P"
    assert ctx.scorer_family("energy") == "logit"
    order = report_ood.by_family(ctx, ["mystery", "net3p", "react", "knn", "msp", "energy"])
    assert order == [
        ("logit", ["msp", "energy"]),
        ("feature", ["knn"]),
        ("shaping", ["react"]),
        ("model", ["net3p"]),
        ("other", ["mystery"]),
    ]


def heading(columns: int, title: str) -> str:
    return rf"\multicolumn{{{columns}}}{{@{{}}l}}{{\textit{{{title}}}}} \\"


@pytest.mark.parametrize(
    ("lang", "titles"),
    [
        ("en", ["Logit-based", "Feature-based", "Activation shaping", "Other"]),
        (
            "fr",
            [
                "Fondées sur les logits",
                "Fondées sur les caractéristiques",
                r"Remodelage des activations (\emph{activation shaping})",
                "Autres",
            ],
        ),
    ],
)
def test_tables_group_rows_by_family_under_headings(tmp_path, lang, titles):
    ctx = context(made_up_run(AUROCS, groups=True), tmp_path, lang)
    data = report_ood.build(ctx)
    assert data["tables"][0]["scorers"] == [
        *("msp", "energy", "mahalanobis", "knn", "react", "mystery")  # TP order within a family
    ]
    tex = _render_section(
        ReportSection("ood", 30, "sections/ood.tex.j2", report_ood.build), data, ctx
    )
    metrics_table, group_table = re.findall(r"\\begin\{tabular\}.*?\\end\{tabular\}", tex, re.S)
    # one run: method + 1 AUROC + AUPR-In, AUPR-Out, FPR@95; the group: method + 1 set + 2
    for table, columns in ((metrics_table, 5), (group_table, 4)):
        lines = [line.strip() for line in table.splitlines()]
        body = lines[lines.index(r"\midrule") : lines.index(r"\bottomrule")]
        first_cells = [line.split(" & ")[0] for line in body]
        assert first_cells == [
            r"\midrule",
            heading(columns, titles[0]),
            "MSP",
            "Energy Score",
            r"\midrule",
            heading(columns, titles[1]),
            "Mahalanobis",
            "KNN",
            r"\midrule",
            heading(columns, titles[2]),
            "ReAct",
            r"\midrule",
            heading(columns, titles[3]),
            "mystery",
        ]


@pytest.mark.parametrize(
    ("lang", "sentence"),
    [
        (
            "en",
            r"By family, the logit-based methods do best on average: a mean AUROC of \num{0.860} "
            r"over 2 methods, the best being Energy Score (\num{0.920}).",
        ),
        (
            "fr",
            r"Par famille, ce sont les méthodes fondées sur les logits qui font le mieux en "
            r"moyenne : une AUROC moyenne de \num{0.860} sur 2 méthodes, la meilleure étant "
            r"Energy Score (\num{0.920}).",
        ),
    ],
)
def test_best_family_sentence_names_the_family_and_its_mean(tmp_path, lang, sentence):
    ctx = context(made_up_run(AUROCS), tmp_path, lang)
    data = report_ood.build(ctx)
    assert len(data["best"]) == 2  # the best method's sentence, then the best family's
    assert str(data["best"][1]) == sentence


def test_best_family_ties_go_to_family_order_and_one_family_says_nothing(tmp_path):
    tied = {"knn": 0.8125, "mahalanobis": 0.8125, "energy": 0.875, "msp": 0.75}  # both 0.8125
    ctx = context(made_up_run(tied), tmp_path, "en")
    sentence = str(report_ood.family_sentence(ctx, ctx.runs[0], "noise", list(tied)))
    assert "the logit-based methods do best on average: a mean AUROC of \\num{0.812} over 2" in (
        sentence
    )
    lone = {"knn": 0.9, "mystery": 0.6}  # feature alone beats "other": one method, no mean
    ctx = context(made_up_run(lone), tmp_path, "en")
    sentence = str(report_ood.family_sentence(ctx, ctx.runs[0], "noise", list(lone)))
    assert "do best on average, represented here by KNN alone (AUROC \\num{0.900})" in (sentence)
    single = {"msp": 0.8, "energy": 0.9}
    ctx = context(made_up_run(single), tmp_path, "en")
    assert report_ood.family_sentence(ctx, ctx.runs[0], "noise", list(single)) is None
    assert len(report_ood.build(ctx)["best"]) == 1
