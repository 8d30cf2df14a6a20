"""The report's statistics end to end: intervals and ties in the OOD tables, the sentences,
seed runs as mean ± std with bands, the tuning appendix."""

from __future__ import annotations

import json
import re
import shutil

import matplotlib.axes
import pytest

from ncood.analyze.driver import OodOptions, analyze_file, select
from ncood.host.loading import host
from ncood.ood.groups import parse_ood
from ncood.report.build import build_report

SCORERS = "msp,energy,mahalanobis,l2,vim,knn,nc"


@pytest.fixture(scope="module")
def seed_runs(demo_run, tmp_path_factory):
    """The demo run (seed 0) and two more trainings of the same configuration, seeds 1 and 2."""
    from ncood.engine.presets import resolve_preset
    from ncood.engine.train import train

    root = tmp_path_factory.mktemp("seeds")
    scorers, analyses = select(host(), SCORERS.split(","))
    runs = [demo_run.root]
    for seed in (1, 2):
        config = resolve_preset("demo-standard", epochs=2, width=4, checkpoint_every=1, seed=seed)
        run = train(config, root / f"seed-{seed}", show_progress=False)
        for epoch in run.feature_epochs():
            options = OodOptions(bootstrap=200)
            analyze_file(
                run.features(epoch), run.analysis_dir(epoch), scorers, analyses, options=options
            )
        runs.append(run.root)
    return runs


def count_bands(monkeypatch) -> list:
    calls = []
    original = matplotlib.axes.Axes.fill_between

    def spy(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between", spy)
    return calls


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_seed_runs_give_mean_and_std_and_bands(seed_runs, tmp_path, monkeypatch, lang):
    bands = count_bands(monkeypatch)
    result = build_report(seed_runs, lang=lang, out_dir=tmp_path, pdf=False)
    tex = result.tex.read_text()
    # one group: every table value of the seed runs is a mean ± std
    ood_table = tex[tex.index(r"\label{sec:ood}") : tex.index(r"\label{tab:auroc-1}")]
    rows = [line for line in ood_table.splitlines() if line.strip().startswith("MSP")]
    assert rows and rows[0].count(r"\pm") == 4  # AUROC, AUPR-In, AUPR-Out, FPR@95
    training = tex[tex.index(r"\label{sec:training}") : tex.index(r"\label{sec:ood}")]
    assert r"\SI{" in training and r"\pm" in training
    assert "3 seeds" in tex if lang == "en" else "3 graines" in tex
    # the figures draw bands: 4 training curves, NC progressions, AUROC along training
    assert len(bands) >= 6
    if lang == "en":
        assert "was trained 3 times, with the seeds 0, 1 and 2" in tex
        assert re.search(r"over 3 seeds, the best mean AUROC against .* in \d of the 3 seeds", tex)
    else:
        assert "a été entraîné 3 fois, avec les graines aléatoires 0, 1 et 2" in tex


def test_a_folder_of_seed_runs_is_one_group(seed_runs, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    for index, path in enumerate(seed_runs):
        shutil.copytree(path, folder / f"seed-{index}")
    tex = build_report([folder], lang="en", out_dir=tmp_path / "out", pdf=False).tex.read_text()
    assert "3 seeds, study" not in tex and "(2 ep., 3 seeds)" in tex


def test_single_run_tables_show_intervals_ties_and_the_sentence(demo_run, tmp_path):
    tex = build_report([demo_run.root], lang="en", out_dir=tmp_path, pdf=False).tex.read_text()
    table = tex[tex.index(r"\label{sec:ood}") : tex.index(r"\label{tab:auroc-1}")]
    msp = next(line for line in table.splitlines() if line.strip().startswith("MSP"))
    assert msp.count(r"{\scriptsize[") == 4  # every metric with its interval
    results = json.loads(
        (demo_run.analysis_dir(demo_run.feature_epochs()[-1]) / "results.json").read_text()
    )
    for ood, verdict in results["significance"]["ood"].items():
        tied = [s for s in verdict["indistinguishable"] if s != verdict["best"]]
        sentence = next(
            line
            for line in tex.splitlines()
            if "the best method against" in line
            and ("uniform noise" in line if ood == "noise" else "photos" in line)
        )
        if tied:
            assert "cannot tell it apart from" in sentence
        else:
            assert "significantly ahead of every other method" in sentence
    assert "DeLong" in tex and "Holm" in tex and "stratified bootstrap" in tex
    marks = table.count(r"\textsuperscript{\dag}")
    tied_photos = len(results["significance"]["ood"]["photos"]["indistinguishable"]) - 1
    assert marks == tied_photos + ("indistinguishable from the best AUROC" in table)


def test_tuning_and_groups_reach_the_report(demo_run, tmp_path):
    run = tmp_path / "tuned"
    shutil.copytree(demo_run.root, run, ignore=shutil.ignore_patterns("analysis"))
    from ncood.store.run import RunDir

    tuned = RunDir.open(run)
    scorers, analyses = select(host(), ["knn", "msp", "nc"])
    options = OodOptions(
        bootstrap=100,
        test_sets=parse_ood(["far:photos"]),
        tune={"knn": {"k": ["1", "4"]}},
        tune_on="noise",
    )
    for epoch in tuned.feature_epochs():
        analyze_file(
            tuned.features(epoch), tuned.analysis_dir(epoch), scorers, analyses, options=options
        )
    for lang, title, group in (
        ("en", "Tuned hyper-parameters", "far OOD"),
        ("fr", "Hyper-paramètres ajustés", "OOD lointain"),
    ):
        tex = build_report([run], lang=lang, out_dir=tmp_path / lang, pdf=False).tex.read_text()
        assert title in tex and r"\texttt{k=1}" in tex and r"\texttt{k=4}" in tex
        assert r"\label{tab:ood-group-1}" in tex and group in tex
