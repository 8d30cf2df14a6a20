"""Percentages and fractions: a scorer parameter declared ``Percent`` or ``Fraction`` is checked
once, in ``Contribution``, and a value in the other library's units (OpenOOD's and
pytorch-ood's fractions where ncood takes percentages, or the reverse) is one line, before any
work, naming the value meant."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from ncood.cli import app
from ncood.errors import NcoodError
from ncood.host.loading import host
from ncood.store.features import save_features

runner = CliRunner()

PERCENTAGES = [
    ("react", "percentile", "0.9", "react.percentile=90"),
    ("ash-p", "percentile", "0.65", "ash-p.percentile=65"),
    ("ash-b", "percentile", "0.65", "ash-b.percentile=65"),
    ("ash-s", "percentile", "0.9", "ash-s.percentile=90"),
    ("scale", "percentile", "0.85", "scale.percentile=85"),
    ("dice", "p", "0.9", "dice.p=90"),
    ("vra", "upper_percentile", "0.99", "vra.upper_percentile=99"),
    ("lts", "percentile", "0.95", "lts.percentile=95"),
]
FRACTIONS = [
    ("knn", "bank_fraction", "10", "knn.bank_fraction=0.1"),
    ("nnguide", "bank_fraction", "1.5", "nnguide.bank_fraction=0.015"),
    ("relation", "bank_fraction", "25", "relation.bank_fraction=0.25"),
    ("gram", "validation_fraction", "10", "gram.validation_fraction=0.1"),
    ("mcd", "p", "50", "mcd.p=0.5"),
]


@pytest.mark.parametrize(("name", "param", "value", "meant"), PERCENTAGES + FRACTIONS)
def test_the_other_librarys_units_are_one_line_naming_the_value_meant(name, param, value, meant):
    with pytest.raises(NcoodError) as error:
        host().scorers().get(name).build({param: value})
    message = str(error.value)
    assert "\n" not in message and f"set {meant}" in message
    assert "another library's units" in message


def test_in_range_values_pass_and_the_edges_are_ncoods():
    scorers = host().scorers()
    for value in ("1", "50", "99.5"):  # 1 % is a percentage: only a value below 1 is suspect
        scorers.get("react").build({"percentile": value})
    for value in ("0.01", "1"):
        scorers.get("knn").build({"bank_fraction": value})
    with pytest.raises(NcoodError, match=r"react.percentile must be a percentage in \[0, 100\]"):
        scorers.get("react").create(percentile=250.0)
    with pytest.raises(NcoodError, match=r"knn.bank_fraction must be a fraction in \[0, 1\]"):
        scorers.get("knn").create(bank_fraction=-0.5)
    # the typed path (create, the Python API) is checked as the --set one
    with pytest.raises(NcoodError, match="set dice.p=90"):
        scorers.get("dice").create(p=0.9)


def test_ncood_analyze_refuses_before_any_work(tmp_path, tiny_dump):
    path = tmp_path / "features.safetensors"
    save_features(path, tiny_dump)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["analyze", str(path), "--plugins", "msp,ash-p", "--set", "ash-p.percentile=0.65"]
        + ["--out", str(out), "--quiet"],
    )
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ncood: error: ")
    assert "set ash-p.percentile=65" in lines[0] and "Traceback" not in result.output
    assert not (out / "results.json").exists()


def test_every_percentile_or_fraction_parameter_declares_its_unit():
    """A new scorer whose parameter reads as a percentile or a share declares it, so that the
    check above covers it."""
    for name, item in host().scorers().items():
        units = item.units()
        for param, default in item.defaults().items():
            suspect = "percentile" in param or "fraction" in param
            suspect |= (name, param) in {("dice", "p"), ("mcd", "p")}
            if suspect and isinstance(default, float):
                assert param in units, (name, param)
        factory = item.factory.__init__ if inspect.isclass(item.factory) else item.factory
        assert set(units) <= set(inspect.signature(factory).parameters), name
