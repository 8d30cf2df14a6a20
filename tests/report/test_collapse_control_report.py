"""The report's comparison of runs that control collapse (issue 27): three small runs of one
recipe, cross-entropy, a fixed ETF head and LogitNorm, set side by side with sentences computed
from their numbers, in French and English."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ncood.analyze.driver import analyze_file, select
from ncood.engine.presets import resolve_preset
from ncood.engine.train import train
from ncood.host.loading import host
from ncood.ood.delong import pairwise_pvalues
from ncood.ood.spread import is_degenerate
from ncood.report.build import _render_section, core_templates
from ncood.report.context import ReportContext, load_analyzed_run, load_strings
from ncood_plugins.sections import collapse_control as section

SCORERS = ["msp", "energy", "mahalanobis", "nc"]


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """demo-standard cut to 2 epochs on 256 images at width 4 (cross-entropy), and the same
    with an ETF head and with LogitNorm, each analyzed at both checkpoints with a few scorers."""
    root = tmp_path_factory.mktemp("controls")
    runs = []
    for name, change in (
        ("ce", {}),
        ("etf", {"head": "etf"}),
        ("logitnorm", {"loss": "logitnorm"}),
    ):
        config = resolve_preset(
            "demo-standard", epochs=2, width=4, checkpoint_every=1, train_subset=256, **change
        )
        run = train(config, root / name, show_progress=False)
        scorers, analyses = select(host(), SCORERS)
        for epoch in run.feature_epochs():
            analyze_file(run.features(epoch), run.analysis_dir(epoch), scorers, analyses)
        runs.append(run.root)
    return runs


def context(paths, tmp_path, lang: str) -> ReportContext:
    figures = tmp_path / f"figures-{lang}"
    figures.mkdir(exist_ok=True)
    return ReportContext(
        [load_analyzed_run(p) for p in paths],
        lang,
        figures,
        tmp_path,
        load_strings(lang, [core_templates()]),
    )


@pytest.fixture(scope="module")
def built(three_runs, tmp_path_factory):
    """The section built once per language: {lang: (context, data)}."""
    out = {}
    for lang in ("fr", "en"):
        ctx = context(three_runs, tmp_path_factory.mktemp(f"report-{lang}"), lang)
        out[lang] = ctx, section.build(ctx)
    return out


def test_the_section_needs_runs_that_differ_in_a_control(three_runs, built, tmp_path):
    assert section.build(context(three_runs[:1], tmp_path, "en")) is None
    data = built["en"][1]
    assert data is not None and len(data["runs"]) == 3
    assert "ETF" in str(data["runs"][1]["controls"])
    assert "LogitNorm" in str(data["runs"][2]["controls"])
    assert "(2 ep., ce)" in str(data["reference"])  # the cross-entropy run is the reference


def test_sentences_follow_the_numbers(built):
    ctx, data = built["en"]
    runs = ctx.runs
    nc1 = [r.final["nc"]["nc1"] for r in runs]
    most = runs[int(np.argmin(nc1))]
    collapse = " ".join(map(str, data["collapse"]))
    assert collapse.startswith(f"At the last epoch, {ctx.label(most)} collapses the most")
    # the ETF run's classifier is the frame: NC2 of the weights is 0 (to float32 rounding)
    assert runs[1].final["nc"]["nc2_maxangle_weights"] < 1e-6
    assert f"The classifier of {ctx.label(runs[1])} is a fixed simplex ETF" in collapse

    (noise_or_photos, *_) = data["per_ood"]
    ood = runs[0].ood_sets()[0]
    scorers = section.shared_scorers(ctx, runs, ood)
    usable = [
        s
        for s in ("msp", "energy", "mahalanobis")
        if not any(is_degenerate(r.final["ood"][ood][s]) for r in runs)
    ]
    assert sorted(scorers) == sorted(usable) and len(scorers) >= 2
    aurocs = {(i, s): runs[i].final["ood"][ood][s]["auroc"] for i in range(3) for s in scorers}
    best = max(aurocs, key=aurocs.get)
    sentences = " ".join(map(str, noise_or_photos["sentences"]))
    assert f"the best detection among these runs is that of {ctx.label(runs[best[0]])}" in (
        sentences
    )
    # DeLong between runs, recomputed from the scores files, Holm over the whole table
    found = section.comparisons(runs[0], runs, ood, scorers)
    raw = []
    for comparison in found:
        other = runs.index(comparison.run)
        a, b = runs[0].final_scores[comparison.scorer], runs[other].final_scores[comparison.scorer]
        auroc, p = pairwise_pvalues(
            np.stack([a["test"], b["test"]]), np.stack([a[f"ood/{ood}"], b[f"ood/{ood}"]])
        )
        assert comparison.delta == pytest.approx(auroc[1] - auroc[0], abs=1e-12)
        assert comparison.delta == pytest.approx(
            aurocs[other, comparison.scorer] - aurocs[0, comparison.scorer], abs=1e-9
        )
        assert comparison.p == pytest.approx(p[0, 1], rel=1e-12)
        raw.append(p[0, 1])
    order = np.argsort(raw)
    stepped = np.minimum(np.maximum.accumulate((len(raw) - np.arange(len(raw))) * np.sort(raw)), 1)
    for rank, index in enumerate(order):
        assert found[index].p_adjusted == pytest.approx(stepped[rank], rel=1e-12)
    verdicts = [c for c in found if c.scorer == best[1]]
    expected = [
        "detects better than" if c.significant and c.delta > 0
        else "detects worse than" if c.significant
        else "cannot tell the two apart"
        for c in verdicts
    ]  # fmt: skip
    for phrase in expected:
        assert phrase in sentences
    most_detects_best = runs[best[0]] is most
    assert ("agree with the thesis" in sentences) == most_detects_best
    assert ("do not support the thesis" in sentences) == (not most_detects_best)


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_the_section_renders_in_both_languages(built, lang):
    ctx, data = built[lang]
    registered = host().report_sections().get("collapse-control")
    tex = _render_section(registered, data, ctx)
    title = {"fr": "Contrôler l'effondrement", "en": "Controlling collapse"}[lang]
    assert f"\\section{{{title}" in tex
    assert "DeLong" in tex and "\\ref{fig:cc-nc}" in tex
    assert not re.search(r"<[a-z_]+>", tex)  # every placeholder filled
    for figure in re.findall(r"\\includegraphics\[[^]]*\]\{([^}]*)\}", tex):
        assert (ctx.tex_dir / figure).is_file()
    if lang == "fr":
        assert "s'effondre le plus" in tex and "Face à" in tex
