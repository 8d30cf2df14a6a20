"""Scores across layers: each stage of the features file scored on its own, then combined.

A features file written with ``--stage-features`` holds, beside the penultimate features, the
pooled output of each stage (``<split>/layers/<stage>``, docs/run-format.md). Two scorers read
them; both take ``stages`` (default: every stage the file holds, or the penultimate features
alone when it holds none; ``features`` names the penultimate layer):

* ``multi-mahalanobis``: −½ Σ_l α_l min_c (f_l − μ_lc)ᵀ Σ_l⁻¹ (f_l − μ_lc), ncood's
  ``mahalanobis`` on each stage l, weighted by ``weights`` α (default 1 each) — pytorch-ood's
  ``MultiMahalanobis`` and OpenOOD's ``mds_ensemble`` without input noise (Lee et al., 2018).
* ``layers``: any feature-level scorer (``scorer``, default ``mahalanobis``; its parameters in
  ``params``, ``"k=10;..."``) on each stage, turned into a p-value by the empirical CDF of its ID
  train scores and combined by Fisher's method or Brown's (oodeel's aggregation; Haroush et
  al., ICLR 2022). The score is the log of the combined p-value (higher = more ID).
"""

from __future__ import annotations

import math

import numpy as np

import ncood
from ncood.errors import NcoodError, note, one_line
from ncood.store.features import Head, Split

PENULTIMATE = "features"  # the name ``stages`` gives the penultimate features
METHODS = ("fisher", "brown")


def chosen_stages(train: Split, spec: str, who: str) -> list[str]:
    """The stages ``spec`` names (comma-separated), or every stage of the file; one line for a
    name the file lacks."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        if train.layers:
            return sorted(train.layers)
        note(
            f"{who}: the features file holds no stage (train with --stage-features): "
            f"scoring the penultimate features alone",
            once=f"{who}-no-stages",
        )
        return [PENULTIMATE]
    unknown = [name for name in names if name != PENULTIMATE and name not in train.layers]
    if unknown:
        known = ", ".join(sorted(train.layers)) or "none in this file"
        raise NcoodError(
            f"{who}.stages: no stage {unknown[0]!r} in the features file (stages: {known}; "
            f"{PENULTIMATE!r} is the penultimate layer)"
        )
    if len(set(names)) != len(names):
        raise NcoodError(f"{who}.stages names a stage twice: {spec}")
    return names


def on_stage(split: Split, stage: str, who: str) -> Split:
    if stage != PENULTIMATE and stage not in split.layers:
        raise NcoodError(
            f"{who}: a split holds no stage {stage!r}, which ID train holds (every split of the "
            f"features file needs the stages scored)"
        )
    return split.stage(stage)


def parse_weights(text: str) -> list[float] | None:
    """``"1,0.5,2"`` → [1.0, 0.5, 2.0]; ``""`` → None (1 each). A ValueError for the rest."""
    if not text.strip():
        return None
    try:
        weights = [float(item) for item in text.split(",")]
    except ValueError:
        raise ValueError(f"weights must be numbers separated by commas, got {text!r}") from None
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be finite, got {text!r}")
    return weights


class MultiMahalanobis(ncood.Scorer):
    needs_stages = True
    """−½ Σ_l α_l min_c MD_l,c(f_l): pytorch-ood's MultiMahalanobis on the dumped stages."""

    def __init__(self, stages: str = "", weights: str = "", ridge: float = 1e-6) -> None:
        self.spec, self.weights = stages, parse_weights(weights)
        ncood.create_scorer("mahalanobis", ridge=ridge)  # its checks, before any work
        self.ridge = ridge

    def fit(self, train: Split, head: Head) -> None:
        self.stages = chosen_stages(train, self.spec, "multi-mahalanobis")
        weights = self.weights or [1.0] * len(self.stages)
        if len(weights) != len(self.stages):
            raise NcoodError(
                f"multi-mahalanobis.weights gives {len(weights)} weights for "
                f"{len(self.stages)} stages ({', '.join(self.stages)})"
            )
        self.alpha = weights
        self.per_stage = []
        for stage in self.stages:
            detector = ncood.create_scorer("mahalanobis", ridge=self.ridge)
            detector.fit(on_stage(train, stage, "multi-mahalanobis"), head)
            self.per_stage.append(detector)
        self.resolved_params = {
            "stages": ",".join(self.stages),
            "weights": ",".join(f"{w:g}" for w in self.alpha),
        }

    def score(self, split: Split) -> np.ndarray:
        total = np.zeros(len(split), np.float64)
        for stage, alpha, detector in zip(self.stages, self.alpha, self.per_stage, strict=True):
            # mahalanobis scores −min_c MD; pytorch-ood's per-layer term is ½ of it
            total += 0.5 * alpha * detector.score(on_stage(split, stage, "multi-mahalanobis"))
        return total


def parse_params(text: str) -> dict[str, str]:
    """``"k=10;alpha=2"`` → {"k": "10", "alpha": "2"} (strings, typed by the scorer's build)."""
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"params expects NAME=VALUE;NAME=VALUE, got {text!r}")
        params[key.strip()] = value.strip()
    return params


class EmpiricalCdf:
    """The p-value of a score among the N ID train scores s_(1) ≤ … ≤ s_(N): at each train value v,
    (1 + #{s_i ≤ v}) / (N + 2); linear between them; out to 1/(N + 2) at N spreads below the
    lowest and to 1 at N spreads above the highest (the spread: s_(N) − s_(1)), held beyond.
    oodeel's augmented ECDF: a low score is evidence of OOD, p is never 0, and p increases
    strictly over that wide range, so samples beyond every train score keep their order."""

    def __init__(self, train_scores: np.ndarray) -> None:
        values, counts = np.unique(np.asarray(train_scores, np.float64), return_counts=True)
        n = len(train_scores)
        spread = (values[-1] - values[0]) or max(abs(values[0]), 1.0)
        self.knots = np.concatenate([[values[0] - n * spread], values, [values[-1] + n * spread]])
        self.heights = np.concatenate([[1.0], 1.0 + np.cumsum(counts), [n + 2.0]]) / (n + 2.0)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(scores, self.knots, self.heights)


def log_chi2_sf(x: np.ndarray, dof: float) -> np.ndarray:
    """log P(χ²_dof ≥ x) in float64: log1p(−CDF) where the survival is near 1 (so the most
    ID-like samples do not all round to log 1 = 0), log(survival) elsewhere, a survival below
    the smallest float held at it (X² is bounded: every p ≥ 1/(N + 2))."""
    from scipy.special import chdtr, chdtrc  # imported when the scorer runs

    survival = chdtrc(dof, x)
    with np.errstate(divide="ignore"):
        return np.where(
            survival > 0.5,
            np.log1p(-chdtr(dof, x)),
            np.log(np.maximum(survival, np.finfo(np.float64).tiny)),
        )


def brown_scale(fisher_terms: np.ndarray) -> tuple[float, float]:
    """Brown's (1975) correction of Fisher's method for dependent p-values: (c, f) with
    X² / c ~ χ²_f, c = Var/(2E), f = 2E²/Var, E = 2k, Var = 4k + 2 Σ_{i<j} cov(−2 ln p_i, −2 ln
    p_j), the covariances those of the ID train split (``fisher_terms``: N × k of −2 ln p)."""
    k = fisher_terms.shape[1]
    if k == 1:
        return 1.0, 2.0
    covariance = np.cov(fisher_terms, rowvar=False)
    variance = 4.0 * k + (covariance.sum() - np.trace(covariance))
    if not variance > 0:
        raise NcoodError(
            f"layers: Brown's variance 4k + 2Σcov = {variance:.3g} is not positive (the stages' "
            f"p-values are too anti-correlated): use method=fisher"
        )
    mean = 2.0 * k
    return variance / (2.0 * mean), 2.0 * mean**2 / variance


class LayerPValues(ncood.Scorer):
    needs_stages = True
    """log of the combined p-value of a scorer's per-stage p-values (Fisher or Brown)."""

    def __init__(
        self,
        scorer: str = "mahalanobis",
        method: str = "fisher",
        stages: str = "",
        params: str = "",
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        from ncood.host.loading import host

        scorers = host().scorers()
        if scorer not in scorers:
            raise ValueError(f"no scorer {scorer!r} (known: {', '.join(scorers.names())})")
        self.inner = scorers.get(scorer)
        if self.inner.needs_network or self.inner.needs_members:
            raise ValueError(f"scorer {scorer!r} does not read the features file's stages")
        if scorer in ("layers", "multi-mahalanobis"):
            raise ValueError(f"scorer {scorer!r} already combines the stages")
        self.params = parse_params(params)
        self.inner.build(self.params)  # a bad parameter is one line, before any work
        self.method, self.spec = method, stages

    def _scores(self, split: Split) -> np.ndarray:
        """N × k: the inner scorer's scores on each stage."""
        columns = []
        for stage, detector in zip(self.stages, self.per_stage, strict=True):
            columns.append(self._guarded(stage, detector.score, on_stage(split, stage, "layers")))
        return np.stack(columns, axis=1)

    def _guarded(self, stage: str, call, *args):
        try:
            return np.asarray(call(*args), np.float64)
        except NcoodError as exc:
            raise NcoodError(f"{self.inner.name} on stage {stage!r}: {exc}") from None
        except Exception as exc:  # e.g. a scorer that reads the head, on a stage of another width
            raise NcoodError(
                f"{self.inner.name} on stage {stage!r}: {type(exc).__name__}: {one_line(exc)}"
            ) from None

    def fit(self, train: Split, head: Head) -> None:
        self.stages = chosen_stages(train, self.spec, "layers")
        self.per_stage = []
        for stage in self.stages:
            detector, _ = self.inner.build(self.params)
            self._guarded(stage, detector.fit, on_stage(train, stage, "layers"), head)
            self.per_stage.append(detector)
        train_scores = self._scores(train)
        self.cdfs = [EmpiricalCdf(column) for column in train_scores.T]
        terms = -2.0 * np.log(self._p_values(train_scores))
        self.scale, self.dof = (
            brown_scale(terms) if self.method == "brown" else (1.0, 2.0 * len(self.stages))
        )
        self.resolved_params = {
            "stages": ",".join(self.stages),
            "scale": float(self.scale),
            "dof": float(self.dof),
        }

    def _p_values(self, scores: np.ndarray) -> np.ndarray:
        return np.stack([cdf(scores[:, i]) for i, cdf in enumerate(self.cdfs)], axis=1)

    def score(self, split: Split) -> np.ndarray:
        fisher = -2.0 * np.log(self._p_values(self._scores(split))).sum(axis=1)
        return log_chi2_sf(fisher / self.scale, self.dof)


@ncood.hookimpl
def register_scorers(register):
    register(
        "multi-mahalanobis",
        MultiMahalanobis,
        "−½ Σ_l α_l Mahalanobis distance at each stage (pytorch-ood's MultiMahalanobis)",
        title="Multi-Mahalanobis",
        family="feature",
    )
    register(
        "layers",
        LayerPValues,
        "a scorer's p-values at each stage, combined by Fisher's or Brown's method",
        title="Layers (p-values)",
        family="feature",
    )
