"""Seed runs reported as one: Spread numbers, aggregation, grouping, mean ± std in LaTeX."""

import math
from pathlib import Path

import numpy as np
import pytest

from ncood.report.context import AnalyzedRun
from ncood.report.latex import num, percent, sci
from ncood.report.seeds import (
    SeedGroup,
    Spread,
    aggregate,
    expand_paths,
    group_by_seed,
    plot_curve,
)
from ncood.store.run import RunDir


def test_spread_is_the_mean_and_keeps_its_std_through_scaling():
    value = Spread.of([0.80, 0.84, 0.88])
    assert float(value) == pytest.approx(0.84)
    assert value.std == pytest.approx(0.04)  # sample standard deviation (n − 1)
    assert value.count == 3
    scaled = 100 * value
    assert isinstance(scaled, Spread) and scaled.std == pytest.approx(4.0)
    assert (1 - value).std == pytest.approx(0.04) and float(1 - value) == pytest.approx(0.16)
    assert not isinstance(value * value, Spread)  # unknown correlation: a plain float
    assert max([value, Spread.of([0.1, 0.2])]) is value


def test_aggregate_structures():
    members = [
        {"epoch": 5, "ood": {"x": {"auroc": 0.8, "auroc_ci": [0.7, 0.9]}}, "note": "a", "only": 1},
        {"epoch": 5, "ood": {"x": {"auroc": 0.9, "auroc_ci": [0.8, 1.0]}}, "note": "b"},
    ]
    merged = aggregate(members)
    assert merged["epoch"] == 5 and type(merged["epoch"]) is int
    assert isinstance(merged["ood"]["x"]["auroc"], Spread)
    assert float(merged["ood"]["x"]["auroc"]) == pytest.approx(0.85)
    assert merged["ood"]["x"]["auroc"].std == pytest.approx(math.sqrt(0.005))
    assert [float(v) for v in merged["ood"]["x"]["auroc_ci"]] == pytest.approx([0.75, 0.95])
    assert merged["note"] == "a" and "only" not in merged


def test_latex_numbers_print_mean_plus_minus_std():
    value = Spread.of([0.80, 0.84, 0.88])
    assert str(num(value)) == r"\num{0.840 \pm 0.040}"
    assert str(num(0.84)) == r"\num{0.840}"
    assert str(percent(value)) == r"\SI{84.00 \pm 4.00}{\percent}"
    assert str(sci(Spread.of([0.012, 0.014]))) == r"\num{1.30 \pm 0.14e-2}"


def fake_run(root: Path, seed: int, lr: float = 0.1, auroc: float = 0.8) -> AnalyzedRun:
    root.mkdir(parents=True)
    (root / "manifest.json").write_text("{}")
    manifest = {"config": {"preset": "demo", "epochs": 2, "lr": lr, "seed": seed, "device": "cpu"}}
    history = [{"epoch": 1, "train_loss": 1.0 + seed}, {"epoch": 2, "train_loss": 0.5 + seed}]
    results = {2: {"ood": {"noise": {"msp": {"auroc": auroc + 0.01 * seed}}}}}
    return AnalyzedRun(RunDir(root), manifest, history, results)


def test_runs_equal_but_for_the_seed_become_one_group(tmp_path):
    seeds = [fake_run(tmp_path / "d" / f"seed-{s}", s) for s in (2, 0, 1)]
    other = fake_run(tmp_path / "other", 0, lr=0.01)
    grouped = group_by_seed([other, *seeds])
    assert grouped[0] is other
    group = grouped[1]
    assert isinstance(group, SeedGroup) and len(grouped) == 2
    assert group.seeds == [0, 1, 2] and group.name == "d"
    assert group.manifest["seeds"] == [0, 1, 2]
    auroc = group.final["ood"]["noise"]["msp"]["auroc"]
    assert float(auroc) == pytest.approx(0.81) and auroc.std == pytest.approx(0.01)
    assert [float(r["train_loss"]) for r in group.history] == pytest.approx([2.0, 1.5])
    # the same seed twice is not a seed study: left alone
    twins = [fake_run(tmp_path / "t1", 0), fake_run(tmp_path / "t2", 0)]
    assert group_by_seed(twins) == twins


def test_a_folder_of_seed_runs_expands(tmp_path):
    for s in (10, 2, 1):
        (tmp_path / "d" / f"seed-{s}").mkdir(parents=True)
        (tmp_path / "d" / f"seed-{s}" / "manifest.json").write_text("{}")
    (tmp_path / "d" / "notes").mkdir()
    single = tmp_path / "single"
    single.mkdir()
    (single / "manifest.json").write_text("{}")
    assert expand_paths([tmp_path / "d", single]) == [
        tmp_path / "d" / "seed-1",
        tmp_path / "d" / "seed-2",
        tmp_path / "d" / "seed-10",
        single,
    ]


def test_plot_curve_draws_a_band_only_for_spreads():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots()
    plot_curve(axis, [1, 2], [0.5, 0.6])
    assert len(axis.collections) == 0
    plot_curve(axis, [1, 2], [Spread.of([0.4, 0.6]), Spread.of([0.5, 0.7])])
    (band,) = axis.collections
    vertices = band.get_paths()[0].vertices
    assert np.isclose(vertices[:, 1].min(), 0.5 - math.sqrt(0.02))
    plt.close(fig)
