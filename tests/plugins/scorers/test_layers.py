"""Scores across layers (plugins/scorers/layers.py): ``multi-mahalanobis`` against pytorch-ood
0.4.0's ``MultiMahalanobis`` on a dump with stage features, and ``layers``' Fisher and Brown
combinations against hand computations and a direct implementation of Brown (1975)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from pytorch_ood.detector import MultiMahalanobis as PeerMultiMahalanobis
from sklearn.metrics import roc_auc_score

import ncood
from ncood.errors import NcoodError
from ncood.store.features import FeatureDump, Head, Split, load_features, save_features

CLASSES, DIM = 5, 16
WIDTHS = {"layer1": 6, "layer2": 10, "layer3": 12}
TOLERANCE = 1e-3


def staged_dump(seed: int = 0) -> FeatureDump:
    """Class clusters whose stages are noisy random maps of a hidden vector, so that each stage
    carries part of the class signal; OOD from fresh patterns."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1.2, (CLASSES, DIM))
    maps = {name: rng.normal(0, 1, (DIM, width)) for name, width in WIDTHS.items()}
    weight = (means - means.mean(0)).astype(np.float32)
    bias = np.zeros(CLASSES, np.float32)

    def make(centres: np.ndarray, labels: np.ndarray) -> Split:
        hidden = centres + rng.normal(0, 1.0, centres.shape)
        layers = {
            name: (hidden @ m + rng.normal(0, 1.0, (len(hidden), m.shape[1]))).astype(np.float32)
            for name, m in maps.items()
        }
        features = hidden.astype(np.float32)
        return Split(features, features @ weight.T + bias, labels, layers)

    def in_distribution(n: int) -> Split:
        labels = rng.integers(0, CLASSES, n)
        return make(means[labels], labels)

    return FeatureDump(
        in_distribution(600),
        in_distribution(300),
        {"fresh": make(rng.normal(0, 1.2, (300, DIM)), np.full(300, -1))},
        Head(weight, bias),
    )


@pytest.fixture(scope="module")
def dump() -> FeatureDump:
    return staged_dump()


def auroc(test: np.ndarray, ood: np.ndarray) -> float:
    labels = np.r_[np.ones(len(test)), np.zeros(len(ood))]
    return float(roc_auc_score(labels, np.r_[test, ood]))


def fitted(name: str, dump: FeatureDump, **params):
    scorer = ncood.create_scorer(name, **params)
    scorer.fit(dump.train, dump.head)
    return scorer


def stage_tensors(split: Split, stages: list[str]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(split.layers[s], np.float32)) for s in stages]


@pytest.mark.parametrize("weights", [None, [1.0, 0.5, 2.0]])
def test_multi_mahalanobis_equals_pytorch_ood(dump, weights):
    """The same AUROC as MultiMahalanobis.fit_structured / predict_structured to 1e-3, and the
    same per-sample scores up to pytorch-ood's scale: its covariance is the within-class
    scatter, N times ncood's, so its distances are 1/N of ncood's."""
    stages = sorted(WIDTHS)
    params = {} if weights is None else {"weights": ",".join(map(str, weights))}
    ours = fitted("multi-mahalanobis", dump, **params)
    assert ours.resolved_params["stages"] == ",".join(stages)
    peer = PeerMultiMahalanobis([torch.nn.Identity()] * len(stages), alpha=weights)
    peer.fit_structured(stage_tensors(dump.train, stages), torch.from_numpy(dump.train.labels))
    results = {}
    for name, split in (("test", dump.test), ("ood", dump.ood["fresh"])):
        theirs = -peer.predict_structured(stage_tensors(split, stages)).numpy()
        mine = ours.score(split)
        np.testing.assert_allclose(mine / len(dump.train), theirs, rtol=1e-4)
        results[name] = (mine, theirs)
    mine_auroc = auroc(results["test"][0], results["ood"][0])
    assert mine_auroc == pytest.approx(auroc(results["test"][1], results["ood"][1]), abs=TOLERANCE)
    assert 0.6 < mine_auroc < 0.999  # not a trivial case


def test_multi_mahalanobis_is_mahalanobis_summed_over_stages(dump):
    """Each stage's term is ncood's mahalanobis on that stage (−½ min_c MD), weighted."""
    ours = fitted("multi-mahalanobis", dump, stages="layer2,features", weights="2,0.5")
    expected = np.zeros(len(dump.test))
    for stage, weight in (("layer2", 2.0), ("features", 0.5)):
        single = ncood.create_scorer("mahalanobis")
        single.fit(dump.train.stage(stage), dump.head)
        expected += 0.5 * weight * single.score(dump.test.stage(stage))
    np.testing.assert_allclose(ours.score(dump.test), expected, rtol=1e-12)


def test_stages_are_read_from_the_file_streamed(dump, tmp_path, monkeypatch):
    """On a features file (memory-mapped, read in chunks of 7 rows) the scores equal those in
    memory: ``Split.stage`` reads the stage's own tensor."""
    from ncood.store import features as store

    save_features(tmp_path / "f.safetensors", dump)
    monkeypatch.setattr(store, "CHUNK_ROWS", 7)
    loaded = load_features(tmp_path / "f.safetensors")
    for name in ("multi-mahalanobis", "layers"):
        in_memory = fitted(name, dump).score(dump.ood["fresh"])
        on_file = fitted(name, loaded).score(loaded.ood["fresh"])
        np.testing.assert_allclose(on_file, in_memory, rtol=1e-9)


def test_the_weights_must_match_the_stages(dump):
    with pytest.raises(NcoodError, match="3 weights for 2 stages"):
        fitted("multi-mahalanobis", dump, stages="layer1,layer2", weights="1,1,1")
    with pytest.raises(NcoodError, match="no stage 'layer9'"):
        fitted("layers", dump, stages="layer9")


# ---- Fisher and Brown


class Column(ncood.Scorer):
    """A stand-in scorer: its score is the first feature (so the stages' scores are chosen)."""

    def score(self, split):
        return np.asarray(split.features[:, 0], np.float64)


def tiny_dump() -> FeatureDump:
    """Two stages of one column each: the per-stage scores are the values written here."""
    train = {"a": [1.0, 2.0, 3.0, 4.0], "b": [10.0, 30.0, 20.0, 40.0]}
    test = {"a": [2.5, 0.0, 4.0], "b": [25.0, 50.0, 5.0]}

    def split(columns, labels):
        layers = {k: np.asarray(v, np.float32)[:, None] for k, v in columns.items()}
        features = np.zeros((len(labels), 1), np.float32)
        return Split(features, np.zeros((len(labels), 2), np.float32), np.asarray(labels), layers)

    return FeatureDump(
        split(train, [0, 1, 0, 1]),
        split(test, [0, 1, 0]),
        {"o": split(test, [-1, -1, -1])},
        Head(np.zeros((2, 1), np.float32), np.zeros(2, np.float32)),
    )


@pytest.fixture
def column_scorer(monkeypatch):
    """``layers`` built on the stand-in scorer, registered for the test only."""
    from ncood.host.loading import host
    from ncood.host.scoring import Contribution

    real = host().scorers()
    contribution = Contribution("column", Column, "", "test", "scorer")

    class Scorers:
        def __contains__(self, name):
            return name == "column" or name in real

        def get(self, name):
            return contribution if name == "column" else real.get(name)

        def names(self):
            return ["column", *real.names()]

    class Host:
        def scorers(self):
            return Scorers()

    monkeypatch.setattr("ncood.host.loading.host", lambda: Host())
    return "column"


def test_fisher_by_hand(column_scorer):
    """N = 4 train scores per stage; the ECDF is (1 + #{train ≤ v}) / (N + 2) = 2/6 … 5/6 at the
    train values, 1/6 and 1 at N spreads below and above (a: 1 − 4·3 = −11 and 4 + 12 = 16;
    b: 10 − 120 = −110 and 40 + 120 = 160), linear between.
    Sample 0: a = 2.5 → 3.5/6, b = 25 → 3.5/6. Sample 1: a = 0 → (1 + 11/12)/6 = 23/72,
    b = 50 → 5/6 + (10/120)/6 = 61/72. Sample 2: a = 4 → 5/6, b = 5 → (1 + 115/120)/6 = 47/144.
    Fisher: X² = −2 ln(p_a p_b); χ²₄ survival: e^{−X²/2}(1 + X²/2) = p_a p_b (1 − ln p_a p_b)."""
    scorer = ncood.create_scorer("layers", scorer=column_scorer, method="fisher")
    dump = tiny_dump()
    scorer.fit(dump.train, dump.head)
    products = np.array([(3.5 / 6) ** 2, 23 / 72 * 61 / 72, 5 / 6 * 47 / 144])
    expected = products * (1 - np.log(products))
    np.testing.assert_allclose(np.exp(scorer.score(dump.test)), expected, rtol=1e-12)
    assert scorer.resolved_params == {"stages": "a,b", "scale": 1.0, "dof": 4.0}


def brown_reference(train_p: np.ndarray, test_p: np.ndarray) -> np.ndarray:
    """Brown (1975), written out: X² = −2 Σ ln p_i; E[X²] = 2k; Var[X²] = 4k + 2 Σ_{i<j}
    cov(−2 ln p_i, −2 ln p_j); X²/c ~ χ²_f with c = Var/(2E), f = 2E²/Var."""
    k = train_p.shape[1]
    terms = -2 * np.log(train_p)
    variance = 4.0 * k
    for i in range(k):
        for j in range(i + 1, k):
            a, b = terms[:, i], terms[:, j]
            variance += 2 * np.sum((a - a.mean()) * (b - b.mean())) / (len(a) - 1)
    mean = 2.0 * k
    c, f = variance / (2 * mean), 2 * mean**2 / variance
    statistic = -2 * np.log(test_p).sum(axis=1)
    return scipy.stats.chi2.logsf(statistic / c, f)


def empirical_p(train: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The augmented ECDF of each column, written out for distinct train scores."""
    n = len(train)
    columns = []
    for i in range(train.shape[1]):
        ordered = np.sort(train[:, i])
        spread = ordered[-1] - ordered[0]
        xs = np.r_[ordered[0] - n * spread, ordered, ordered[-1] + n * spread]
        ys = np.arange(1, n + 3) / (n + 2)
        columns.append(np.interp(values[:, i], xs, ys))
    return np.stack(columns, axis=1)


def test_brown_equals_its_formula(dump):
    """``layers`` with method=brown on the staged dump (mahalanobis at three correlated
    stages) against Brown's formula from the per-stage scores computed here."""
    stages = sorted(WIDTHS)
    scorer = fitted("layers", dump, method="brown")

    def per_stage(split):
        columns = []
        for stage in stages:
            single = ncood.create_scorer("mahalanobis")
            single.fit(dump.train.stage(stage), dump.head)
            columns.append(single.score(split.stage(stage)))
        return np.stack(columns, axis=1)

    train_scores = per_stage(dump.train)
    train_p = empirical_p(train_scores, train_scores)
    test_p = empirical_p(train_scores, per_stage(dump.test))
    np.testing.assert_allclose(scorer.score(dump.test), brown_reference(train_p, test_p), rtol=1e-9)
    assert scorer.resolved_params["scale"] > 1.0  # positively correlated stages: c > 1
    fisher = fitted("layers", dump)
    assert fisher.resolved_params["dof"] == 6.0
    # the same ranking (one χ² survival function of one statistic), other p-values
    assert auroc(scorer.score(dump.test), scorer.score(dump.ood["fresh"])) == pytest.approx(
        auroc(fisher.score(dump.test), fisher.score(dump.ood["fresh"])), abs=1e-12
    )


def test_one_stage_keeps_the_scorer_s_ranking(dump):
    """Fisher of one p-value is that p-value (χ²₂'s survival of −2 ln p is p), and the p-value
    increases strictly with the score, beyond the train range too: the AUROC is the scorer's."""
    scorer = fitted("layers", dump, stages="layer1", scorer="rmds", params="ridge=0.001")
    single = ncood.create_scorer("rmds", ridge=0.001)
    single.fit(dump.train.stage("layer1"), dump.head)
    train = single.score(dump.train.stage("layer1"))[:, None]
    for split in (dump.test, dump.ood["fresh"]):
        values = single.score(split.stage("layer1"))
        expected = empirical_p(train, values[:, None])[:, 0]
        np.testing.assert_allclose(np.exp(scorer.score(split)), expected, rtol=1e-12)
    ours = auroc(scorer.score(dump.test), scorer.score(dump.ood["fresh"]))
    theirs = auroc(
        single.score(dump.test.stage("layer1")), single.score(dump.ood["fresh"].stage("layer1"))
    )
    assert ours == theirs


def test_bad_parameters_are_one_line():
    for params, message in (
        ({"method": "stouffer"}, "method must be one of fisher, brown"),
        ({"scorer": "nope"}, "no scorer 'nope'"),
        ({"scorer": "odin"}, "does not read the features file's stages"),
        ({"scorer": "layers"}, "already combines"),
        ({"params": "k"}, "NAME=VALUE"),
        ({"scorer": "knn", "params": "kk=3"}, "no parameter 'kk'"),
    ):
        with pytest.raises(NcoodError, match=message):
            ncood.create_scorer("layers", **params)


def test_the_default_selection_leaves_them_out_without_stages(dump, tmp_path):
    """Without ``--plugins``, a file without stage features would only repeat mahalanobis in
    the layer scorers (a note, then the penultimate layer): they run where stages exist."""
    from ncood.analyze.driver import by_default, select
    from ncood.host.loading import host

    scorers, _ = select(host(), None)
    flat, staged = tmp_path / "flat.safetensors", tmp_path / "staged.safetensors"
    save_features(staged, dump)
    save_features(
        flat,
        FeatureDump(
            *(flat_split(s) for s in (dump.train, dump.test)),
            {name: flat_split(s) for name, s in dump.ood.items()},
            dump.head,
        ),
    )
    names = {"multi-mahalanobis", "layers"}
    assert names <= {s.name for s in scorers}
    assert not names & {s.name for s in by_default(scorers, flat)}
    assert names <= {s.name for s in by_default(scorers, staged)}
    assert len(by_default(scorers, flat)) == len(scorers) - 2  # nothing else is left out


def flat_split(split: Split) -> Split:
    return Split(split.features, split.logits, split.labels)
