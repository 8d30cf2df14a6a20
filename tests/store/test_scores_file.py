"""The scores file keeps scores at the precision they were computed in (format version 2)."""

from __future__ import annotations

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

import ncood.errors
from ncood.store.scores_file import FORMAT_VERSION, load_scores, save_scores


def test_scores_round_trip_bit_for_bit_in_float64(tmp_path):
    # two MSP values 3e-8 apart: one float32, two float64 (what made intervals differ by CPU)
    values = np.array([0.99963468, 0.99963471, 0.5], np.float64)
    assert np.float32(values[0]) == np.float32(values[1])
    save_scores(tmp_path / "s.safetensors", {"msp": {"test": values, "ood/x": values[:2]}})
    with safe_open(str(tmp_path / "s.safetensors"), framework="numpy") as handle:
        assert handle.metadata()["format_version"] == FORMAT_VERSION == "2"
    back = load_scores(tmp_path / "s.safetensors")
    assert back["msp"]["test"].dtype == np.float64
    assert back["msp"]["test"].tobytes() == values.tobytes()


def test_an_older_float32_file_is_read_with_one_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ncood.errors, "_NOTED", set())
    old = {"msp/test": np.array([0.25, 0.5], np.float32), "msp/ood/x": np.zeros(1, np.float32)}
    for name in ("a", "b"):
        save_file(old, str(tmp_path / f"{name}.safetensors"), metadata={"format": "ncood-scores"})
    first = load_scores(tmp_path / "a.safetensors")
    load_scores(tmp_path / "b.safetensors")
    assert first["msp"]["test"].dtype == np.float64
    np.testing.assert_array_equal(first["msp"]["test"], [0.25, 0.5])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ncood: note:") and "float32" in err[0]
