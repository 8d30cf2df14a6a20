"""Presets: the TP's exact recipe, overrides of any field, and --dry-run."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from ncood.cli import app
from ncood.engine.presets import resolve_preset
from ncood.errors import NcoodError
from ncood.store.train_config import TrainConfig

runner = CliRunner()


def dry_run(*args: str) -> dict:
    result = runner.invoke(app, ["train", "--out", "unused", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("name", ["tp-200", "tp-600"])
def test_tp_presets_are_the_lab_recipe(name):
    config = dry_run("--preset", name)
    assert config["dataset"] == "cifar100" and config["ood"] == ["svhn"]
    assert (config["batch_size"], config["lr"], config["momentum"], config["weight_decay"]) == (
        128,
        0.1,
        0.9,
        5e-4,
    )
    assert config["crop_padding"] == 4 and config["flip"] is True and config["width"] == 64
    epochs = int(name.split("-")[1])
    assert config["epochs"] == epochs
    # Neural Collapse is followed along training: every 10 epochs, and the last one
    assert config["checkpoint_epochs"] == list(range(10, epochs + 1, 10))


def test_tp_200_is_cosine_and_tp_600_multistep_at_300_and_450():
    assert dry_run("--preset", "tp-200")["schedule"] == "cosine"
    config = dry_run("--preset", "tp-600")
    assert config["schedule"] == "multistep"
    assert config["milestones"] == [300, 450] and config["gamma"] == 0.1


def test_every_field_can_be_overridden():
    config = dry_run(
        "--preset",
        "tp-600",
        "--epochs",
        "60",
        "--lr",
        "0.05",
        "--batch-size",
        "256",
        "--checkpoint-every",
        "7",
        "--gamma",
        "0.2",
        "--momentum",
        "0.8",
        "--weight-decay",
        "1e-4",
        "--width",
        "32",
        "--crop-padding",
        "2",
        "--no-flip",
        "--seed",
        "5",
        "--dataset",
        "cifar10",
        "--ood",
        "svhn,mnist",
        "--precision",
        "bf16",
        "--channels-last",
        "--compile",
        "--deterministic",
        "--no-sync-batchnorm",
        "--train-subset",
        "1000",
        "--no-download",
        "--stage-features",
        "--device",
        "cpu",
    )
    assert config["milestones"] == [30, 45]  # the TP's milestones keep their place (½, ¾)
    assert config["checkpoint_epochs"] == [7, 14, 21, 28, 35, 42, 49, 56, 60]
    assert config["lr"] == 0.05 and config["batch_size"] == 256 and config["gamma"] == 0.2
    assert (config["momentum"], config["weight_decay"], config["width"]) == (0.8, 1e-4, 32)
    assert (config["crop_padding"], config["flip"], config["seed"]) == (2, False, 5)
    assert config["dataset"] == "cifar10" and config["ood"] == ["svhn", "mnist"]
    assert config["precision"] == "bf16" and config["channels_last"] and config["compile"]
    assert config["deterministic"] and not config["sync_batchnorm"]
    assert config["train_subset"] == 1000 and not config["download"]
    assert config["stage_features"] and config["device"] == "cpu"


def test_explicit_milestones_and_checkpoint_epochs():
    config = dry_run(
        "--preset",
        "tp-200",
        "--schedule",
        "multistep",
        "--milestones",
        "50,100,150",
        "--checkpoint-epochs",
        "1,2,5,200",
    )
    assert config["milestones"] == [50, 100, 150]
    assert config["checkpoint_epochs"] == [1, 2, 5, 200]


def test_every_config_field_has_an_option():
    """--dry-run promises that options override *any* field: keep the CLI in step."""
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    internal = {"preset", "milestone_fractions", "data_dir"}  # data_dir: --data-dir (a Path)
    for field in dataclasses.fields(TrainConfig):
        if field.name not in internal:
            assert f"--{field.name.replace('_', '-')}" in result.output, field.name
    assert "--data-dir" in result.output


@pytest.mark.parametrize(
    "override, message",
    [
        ({"epochs": 0}, "--epochs must be at least 1"),
        ({"lr": float("nan")}, "--lr must be a finite positive number"),
        ({"lr": 0.0}, "--lr must be a finite positive number"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"schedule": "linear"}, "unknown schedule 'linear'"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"schedule": "multistep", "milestones": [0, 500]}, "milestones [0, 500] lie outside"),
        ({"ood": []}, "at least one OOD dataset"),
    ],
)
def test_bad_values_are_one_line_errors(override, message):
    with pytest.raises(NcoodError) as caught:
        resolve_preset("tp-200", **override)
    assert message in str(caught.value)


def test_cli_needs_a_preset_and_an_out():
    result = runner.invoke(app, ["train", "--out", "x"])
    assert result.exit_code == 1 and "give --preset NAME and --out RUN_DIR" in result.output


@pytest.mark.parametrize(
    ("name", "base", "changed"),
    [
        ("tp-200-etf", "tp-200", {"head": "etf"}),
        ("tp-200-logitnorm", "tp-200", {"loss": "logitnorm"}),
        ("demo-standard-etf", "demo-standard", {"head": "etf"}),
        ("demo-standard-logitnorm", "demo-standard", {"loss": "logitnorm"}),
    ],
)
def test_collapse_control_presets_differ_from_their_pair_in_one_field(name, base, changed):
    paired, plain = dry_run("--preset", name), dry_run("--preset", base)
    differing = {k for k in paired if paired[k] != plain[k]}
    assert differing == {"preset", *changed}
    assert all(paired[k] == v for k, v in changed.items())
    assert paired["logitnorm_tau"] == 0.04  # Wei et al.'s default
