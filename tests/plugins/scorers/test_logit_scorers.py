"""MSP, Max Logit and Energy against hand-computed values (their orientation: the contract,
tests/plugins/scorers/test_scorer_contract.py, and tests/plugins/scorers/test_orientation.py)."""

import numpy as np

from ncood.host.loading import host
from ncood.store.features import Split

LOGITS = np.array([[2.0, 0.0], [0.0, 0.0]], dtype=np.float32)
SPLIT = Split(np.zeros((2, 1), np.float32), LOGITS, np.array([0, 1]))


def build(name, **params):
    scorer, _ = host().scorers().get(name).build({k: str(v) for k, v in params.items()})
    scorer.fit(SPLIT, None)
    return scorer


def test_msp_by_hand():
    e = np.exp(2.0)
    np.testing.assert_allclose(build("msp").score(SPLIT), [e / (e + 1), 0.5])


def test_maxlogit_by_hand():
    np.testing.assert_allclose(build("maxlogit").score(SPLIT), [2.0, 0.0])


def test_energy_by_hand_and_temperature():
    np.testing.assert_allclose(build("energy").score(SPLIT), [np.log(np.exp(2) + 1), np.log(2)])
    np.testing.assert_allclose(
        build("energy", T=2).score(SPLIT), [2 * np.log(np.exp(1) + 1), 2 * np.log(2)]
    )
