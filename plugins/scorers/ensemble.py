"""Deep ensembles of seed runs: the mean softmax of the members, its MSP and its mutual information.

A seeds folder (``ncood train --seeds 0,1,2 --out OUT``) holds M runs that differ only by their
seed; ``ncood analyze OUT`` joins their features files of one epoch (ncood.store.members), so
each split carries ``members``: the same images as each run saw them. With p_m = softmax(z_m)
and p̄ = (1/M) Σ_m p_m (Lakshminarayanan et al., NeurIPS 2017):

* ``ensemble``: max_c p̄_c, the MSP of the mean softmax;
* ``ensemble-mi``: −[H(p̄) − (1/M) Σ_m H(p_m)], minus the mutual information between the
  prediction and the member (the epistemic part of the entropy: Depeweg et al., ICML 2018;
  Malinin & Gales, NeurIPS 2018), H(p) = −Σ_c p_c log p_c; negated, so higher = more ID;
* ``member-msp``: max_c p_m,c of one run (``member``, default 0: the first seed), so that the
  ensemble and a single run are compared on the same images with the same DeLong test.

Everything in float64, log p̄ by a log-sum-exp over the members (no log 0), streamed: one chunk
of each member's logits at a time.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.maths.stats import logsumexp_rows
from ncood.store.features import Head, Split


def log_softmax(logits: np.ndarray) -> np.ndarray:
    values = np.asarray(logits, np.float64)
    return values - logsumexp_rows(values)[:, None]


def entropy(log_probs: np.ndarray) -> np.ndarray:
    """−Σ_c p_c log p_c over the last axis, from log p (a p that underflows to 0 adds 0)."""
    return -np.sum(np.exp(log_probs) * log_probs, axis=-1)


def mean_log_softmax(member_logits: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(log p_m stacked M×n×C, log p̄ n×C), p̄ the members' mean softmax."""
    log_probs = np.stack([log_softmax(logits) for logits in member_logits])
    return log_probs, np.logaddexp.reduce(log_probs, axis=0) - np.log(len(member_logits))


class EnsembleScorer(ncood.Scorer):
    """A score of the members' softmax outputs; nothing to fit."""

    needs_members = True
    name = ""

    def fit(self, train: Split, head: Head) -> None:
        self._members(train)

    def _members(self, split: Split) -> tuple[Split, ...]:
        members = split.members
        if len(members) < 2:
            raise NcoodError(
                f"{self.name} scores an ensemble: analyze a seeds folder of two runs or more "
                f"(ncood train --seeds 0,1,2 --out OUT, then ncood analyze OUT)"
            )
        return members

    def score(self, split: Split) -> np.ndarray:
        members = self._members(split)
        out = np.empty(len(split), np.float64)
        rows = min(len(split), 4096) or 1
        streams = [member.chunks(rows, ("logits",)) for member in members]
        for chunks in zip(*streams, strict=True):
            log_probs, log_mean = mean_log_softmax([chunk.logits for chunk in chunks])
            out[chunks[0].rows] = self.of(log_probs, log_mean)
        return out

    def of(self, log_probs: np.ndarray, log_mean: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class EnsembleMSP(EnsembleScorer):
    """max_c p̄_c."""

    name = "ensemble"

    def of(self, log_probs: np.ndarray, log_mean: np.ndarray) -> np.ndarray:
        return np.exp(log_mean.max(axis=1))


class EnsembleMutualInformation(EnsembleScorer):
    """−[H(p̄) − mean_m H(p_m)]."""

    name = "ensemble-mi"

    def of(self, log_probs: np.ndarray, log_mean: np.ndarray) -> np.ndarray:
        information = entropy(log_mean) - entropy(log_probs).mean(axis=0)
        return -np.maximum(information, 0.0)  # ≥ 0 by Jensen; clipped where rounding dips below


class MemberMSP(EnsembleScorer):
    """One member's own MSP, max_c p_m,c: the single run the ensemble is compared with, on the
    same images, so that DeLong's test says whether the ensemble beats it."""

    name = "member-msp"

    def __init__(self, member: int = 0) -> None:
        if member < 0:
            raise ValueError(f"member must be 0 or more (the runs in seed order), got {member}")
        self.member = member

    def _members(self, split: Split) -> tuple[Split, ...]:
        members = super()._members(split)
        if self.member >= len(members):
            raise NcoodError(
                f"member-msp.member = {self.member}, but the ensemble has {len(members)} runs "
                f"(0 to {len(members) - 1}, in seed order)"
            )
        return members

    def of(self, log_probs: np.ndarray, log_mean: np.ndarray) -> np.ndarray:
        return np.exp(log_probs[self.member].max(axis=1))


@ncood.hookimpl
def register_scorers(register):
    register(
        "ensemble",
        EnsembleMSP,
        "MSP of the mean softmax of a seeds folder's runs (deep ensemble)",
        title="Ensemble MSP",
        family="logit",
    )
    register(
        "ensemble-mi",
        EnsembleMutualInformation,
        "minus the mutual information of a seeds folder's runs (deep ensemble)",
        title="Ensemble MI",
        family="logit",
    )
    register(
        "member-msp",
        MemberMSP,
        "MSP of one run of a seeds folder (the first by default), beside the ensemble's",
        title="MSP (one run)",
        family="logit",
    )
