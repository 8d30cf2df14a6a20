"""The deep-ensemble scorers (plugins/scorers/ensemble.py) against the formulas computed here in
NumPy, on dumps joined as ``ncood analyze`` joins a seeds folder; and ``ncood analyze`` of a
``--seeds`` folder laid out as ``ncood train --seeds 0,1,2`` writes it."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from nc_builders import make_dump
from typer.testing import CliRunner

import ncood
from ncood.cli import app
from ncood.errors import NcoodError
from ncood.ood.conventions import ood_metrics
from ncood.store.features import save_features
from ncood.store.members import join_members
from ncood.store.run import RunDir
from ncood.testing import check_scorer

SEEDS = (0, 1, 2)


def members(**kwargs):
    """Three runs' dumps of the same images (make_dump's labels do not depend on the seed)."""
    return [make_dump(seed=seed, **kwargs) for seed in SEEDS]


def reference(logits: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """MSP of the mean softmax and the mutual information, straight from the definitions."""
    probs = []
    for z in logits:
        e = np.exp(z.astype(np.float64) - z.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    probs = np.array(probs)  # M × N × C
    mean = probs.mean(axis=0)

    def entropy(p):
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=-1)

    return mean.max(axis=1), entropy(mean) - entropy(probs).mean(axis=0)


def test_ensemble_scores_equal_the_formulas():
    """Logits scaled down to a trained network's spread (probabilities away from 0 and 1), so
    that the members disagree and the information is far from 0."""
    dumps = [
        replace(
            d,
            **{
                n: replace(getattr(d, n), logits=getattr(d, n).logits / 8)
                for n in ("train", "test")
            },
            ood={k: replace(v, logits=v.logits / 8) for k, v in d.ood.items()},
        )
        for d in members(num_classes=5, dim=8, per_class=20, ood_count=30)
    ]
    joined = join_members(dumps)
    msp, mi = ncood.create_scorer("ensemble"), ncood.create_scorer("ensemble-mi")
    for scorer in (msp, mi):
        scorer.fit(joined.train, joined.head)
    for name, split in joined.splits().items():
        expected_msp, expected_mi = reference([d.splits()[name].logits for d in dumps])
        np.testing.assert_allclose(msp.score(split), expected_msp, rtol=1e-12)
        np.testing.assert_allclose(-mi.score(split), expected_mi, rtol=1e-9, atol=1e-15)
        assert np.all(expected_mi >= 0) and expected_mi.max() > 1e-2  # the members disagree


def test_one_member_is_its_msp_and_no_information():
    """Three copies of one run: the ensemble MSP is that run's MSP, the information 0."""
    dump = make_dump()
    joined = join_members([dump, dump, dump])
    msp = ncood.create_scorer("msp")
    msp.fit(dump.train, dump.head)
    ensemble = ncood.create_scorer("ensemble")
    ensemble.fit(joined.train, joined.head)
    np.testing.assert_allclose(ensemble.score(joined.test), msp.score(dump.test), rtol=1e-12)
    mi = ncood.create_scorer("ensemble-mi")
    np.testing.assert_allclose(mi.score(joined.test), 0.0, atol=1e-12)  # log-sum-exp rounding


def test_member_msp_is_that_run_s_msp():
    dumps = members()
    joined = join_members(dumps)
    for member in (0, 2):
        scorer = ncood.create_scorer("member-msp", member=member)
        scorer.fit(joined.train, joined.head)
        msp = ncood.create_scorer("msp")
        msp.fit(dumps[member].train, dumps[member].head)
        for name, split in joined.splits().items():
            expected = msp.score(dumps[member].splits()[name])
            np.testing.assert_allclose(scorer.score(split), expected, rtol=1e-12)
    beyond = ncood.create_scorer("member-msp", member=3)
    with pytest.raises(NcoodError, match="has 3 runs"):
        beyond.fit(joined.train, joined.head)
    with pytest.raises(NcoodError, match="member must be 0 or more"):
        ncood.create_scorer("member-msp", member=-1)


@pytest.mark.parametrize("name", ["ensemble", "ensemble-mi", "member-msp"])
def test_the_contract(name):
    check_scorer(name)


def test_a_single_run_is_refused():
    dump = make_dump()
    scorer = ncood.create_scorer("ensemble")
    with pytest.raises(NcoodError, match="analyze a seeds folder"):
        scorer.fit(dump.train, dump.head)
    with pytest.raises(NcoodError, match="at least two runs"):
        join_members([dump])
    other = make_dump(per_class=20)
    with pytest.raises(NcoodError, match="other images"):
        join_members([dump, other])


def seeds_folder(root, epochs=(2, 4)):
    """``ncood train --seeds 0,1,2 --out root``'s layout: root/seed-<s>/, one run each."""
    for seed in SEEDS:
        run_root = root / f"seed-{seed}"
        run_root.mkdir(parents=True)
        manifest = {"format": "ncood-run", "status": "complete", "config": {"seed": seed}}
        (run_root / "manifest.json").write_text(json.dumps(manifest))
        for epoch in epochs:
            dump = make_dump(num_classes=5, per_class=20, ood_count=30, seed=10 * seed + epoch)
            save_features(RunDir(run_root).features(epoch), dump)
    return root


def test_analyze_a_seeds_folder(tmp_path):
    """Every epoch the members share gets results.json beside a scores file in
    OUT/analysis/epoch-N/, with intervals and the DeLong comparison, equal to the scorers run on
    the joined dumps; the members' own analysis stays theirs."""
    out = seeds_folder(tmp_path / "out")
    result = CliRunner().invoke(app, ["analyze", str(out), "--epoch", "all", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "ensemble-mi" in result.output
    for epoch in (2, 4):
        results = json.loads((out / "analysis" / f"epoch-000{epoch}" / "results.json").read_text())
        assert set(results["ood"]["blobs"]) == {"ensemble", "ensemble-mi", "member-msp"}
        metrics = results["ood"]["blobs"]["ensemble"]
        low, high = metrics["auroc_ci"]
        assert low <= metrics["auroc"] <= high
        assert results["significance"]["ood"]["blobs"]["best"] in results["ood"]["blobs"]
        joined = join_members(
            [ncood.load_features(RunDir(out / f"seed-{s}").features(epoch)) for s in SEEDS]
        )
        scorer = ncood.create_scorer("ensemble")
        scorer.fit(joined.train, joined.head)
        expected = ood_metrics(scorer.score(joined.test), scorer.score(joined.ood["blobs"]))
        assert metrics["auroc"] == pytest.approx(expected["auroc"], abs=1e-12)
    assert not (out / "seed-0" / "analysis").exists()


def test_seeds_folder_errors_are_one_line(tmp_path):
    from cli_helpers import one_line_error

    out = seeds_folder(tmp_path / "out")
    runner = CliRunner()
    one_line_error(
        runner.invoke(app, ["analyze", str(out), "--plugins", "msp"]), "not an ensemble scorer"
    )
    one_line_error(runner.invoke(app, ["analyze", str(out), "--epoch", "3"]), "epoch 3")
    one_line_error(
        runner.invoke(app, ["analyze", str(out / "seed-0"), "--plugins", "ensemble"]),
        "scores the runs of an ensemble",
    )
