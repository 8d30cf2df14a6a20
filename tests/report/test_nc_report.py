"""The report's Neural Collapse and NC5 sections, built on small analyzed runs."""

from __future__ import annotations

import pytest
from nc_builders import analyzed_run

from ncood.report.build import core_templates
from ncood.report.context import ReportContext, load_analyzed_run, load_strings
from ncood.report.latex import environment, percent, sci
from ncood_plugins.sections import nc as report_nc
from ncood_plugins.sections import nc5 as report_nc5


def context(tmp_path, runs, lang="en") -> ReportContext:
    figures = tmp_path / "report" / "figures"
    figures.mkdir(parents=True)
    return ReportContext(
        runs=[load_analyzed_run(r.root) for r in runs],
        lang=lang,
        figures_dir=figures,
        tex_dir=tmp_path / "report",
        strings=load_strings(lang, [core_templates()]),
    )


def render(ctx, template: str, data: dict) -> str:
    env = environment([core_templates()])
    return env.get_template(template).render(ctx=ctx, t=ctx.t, data=data)


@pytest.fixture(scope="module")
def collapsing_run(tmp_path_factory):
    """Three checkpoints whose within-class spread shrinks: NC1 must fall."""
    return analyzed_run(tmp_path_factory.mktemp("nc") / "run", {1: 2.0, 3: 1.0, 5: 0.4})


def test_nc_section_shows_measured_values_and_chooses_its_sentences(tmp_path, collapsing_run):
    ctx = context(tmp_path, [collapsing_run])
    data = report_nc.build(ctx)
    tex = render(ctx, "sections/nc.tex.j2", data)
    results = {e: collapsing_run.results_for(e)["nc"] for e in (1, 5)}
    assert results[5]["nc1"] < results[1]["nc1"]
    for epoch in (1, 5):  # the table and sentence carry the measured NC1, not a constant
        assert str(sci(results[epoch]["nc1"])) in tex
    assert "within-class variability collapses, as expected" in tex
    assert "unlike what is expected, within-class variability" not in tex
    for label in ("fig:nc-progress", "fig:nc-metrics", "tab:nc", "fig:nc-layers"):
        assert f"\\label{{{label}}}" in tex
    assert "AUROC against" in tex and "Across layers" in tex
    for path in (data["progress"], data["metrics"], data["layers"]):
        assert (ctx.tex_dir / path).is_file()
    run = data["runs"][0]
    assert (ctx.tex_dir / run["ood_figure"]).is_file()
    assert (ctx.tex_dir / run["geometry"]["figure"]).is_file()
    assert run["tsne"]["epochs"] == [1, 5]
    assert (collapsing_run.analysis_dir(5) / "tsne.safetensors").is_file()
    assert len(ctx.definitions) == 5  # NC1, CDNV, NC2, NC3, NC4 in the appendix


def test_a_run_whose_features_spread_out_is_called_out(tmp_path):
    run = analyzed_run(tmp_path / "run", {1: 0.4, 2: 2.0}, with_layers=False)
    ctx = context(tmp_path, [run], lang="fr")
    data = report_nc.build(ctx)
    tex = render(ctx, "sections/nc.tex.j2", data)
    assert "contrairement à l'attendu, la variance intra-classe ne diminue pas" in tex
    assert "contrairement à l'attendu, les autres ne diminuent pas" in tex
    assert data["layers"] is None and "--stage-features" not in tex  # escaped in LaTeX
    assert r"\texttt{ncood train -{}-stage-features}" in tex


def test_nc5_section_reports_the_three_numbers_and_orthogonality(tmp_path, collapsing_run):
    ctx = context(tmp_path, [collapsing_run])
    data = report_nc5.build(ctx)
    tex = render(ctx, "sections/nc5.tex.j2", data)
    nc = collapsing_run.results_for(5)["nc"]
    for key in ("model_acc_test", "ncc_acc_test", "ncc_agreement_test"):
        assert str(percent(nc[key])) in tex
    assert "\\label{tab:nc5}" in tex and "\\label{fig:nc5-orthodev}" in tex
    assert "The lab reports" not in tex  # only quoted next to CIFAR-100 runs
    first = collapsing_run.results_for(1)["nc"]["nc5_orthodev/near"]
    key = "as NECO predicts" if nc["nc5_orthodev/near"] < first else "unlike what NECO predicts"
    assert key in tex
    assert (ctx.tex_dir / data["agreement"]).is_file()


def test_sections_leave_themselves_out_without_nc_results(tmp_path, collapsing_run):
    ctx = context(tmp_path, [collapsing_run])
    for run in ctx.runs:
        for results in run.results.values():
            results.pop("nc")
    assert report_nc.build(ctx) is None
    assert report_nc5.build(ctx) is None


def test_a_single_checkpoint_gives_one_column_and_no_trend(tmp_path):
    run = analyzed_run(tmp_path / "run", {4: 1.0}, with_layers=False)
    ctx = context(tmp_path, [run])
    data = report_nc.build(ctx)
    tex = render(ctx, "sections/nc.tex.j2", data)
    assert data["table"]["width"] == 1 and r"\multicolumn{1}{c}" in tex
    assert "as expected" not in tex and "unlike what is expected" not in tex
    assert data["runs"][0]["tsne"]["epochs"] == [4]
    assert render(ctx, "sections/nc5.tex.j2", report_nc5.build(ctx)).count("epoch 4") >= 1


def test_geometry_comes_from_the_arrays_the_analysis_saved(tmp_path, monkeypatch):
    """The report draws the class geometry the nc analysis kept; it never reloads features."""
    import numpy as np

    import ncood.store.features
    from ncood.maths import collapse
    from ncood.store.arrays_file import arrays_path, load_arrays
    from ncood.store.features import load_features

    run = analyzed_run(tmp_path / "run", {2: 1.0})
    dump = load_features(run.features(2))
    stats = collapse.class_means(dump.train.features, dump.train.labels, dump.num_classes)
    passed = collapse.train_pass(
        dump.train.features, dump.train.labels, stats, collapse.between_class(stats)
    )
    expected = collapse.class_geometry(stats, passed.class_variance, dump.head.weight)
    saved = load_arrays(arrays_path(run.analysis_dir(2), "nc"))
    assert set(saved) == set(expected)
    for key, value in expected.items():
        assert np.array_equal(saved[key], value)

    def refuse(*args, **kwargs):
        raise AssertionError("the report reloaded a features file")

    monkeypatch.setattr(ncood.store.features, "load_features", refuse)
    geometry = report_nc.geometry(context(tmp_path, [run]), load_analyzed_run(run.root))
    assert geometry is not None and geometry["epoch"] == 2


def test_geometry_of_many_classes_draws_a_stated_random_subset(tmp_path):
    """Beyond 100 classes the three matrices show 40 classes drawn at random (seeded), the
    caption says so, and the sentences still use every class."""
    run = analyzed_run(tmp_path / "many", {1: 1.0}, with_layers=False, classes=130)
    ctx = context(tmp_path, [run])
    geometry = report_nc.geometry(ctx, ctx.runs[0])
    assert "40 of the 130 classes, chosen at random (seed 0)" in str(geometry["subset"])
    assert (ctx.tex_dir / geometry["figure"]).is_file()
    few = analyzed_run(tmp_path / "few", {1: 1.0}, with_layers=False)
    few_ctx = context(tmp_path / "few-report", [few])
    assert report_nc.geometry(few_ctx, few_ctx.runs[0])["subset"] is None
