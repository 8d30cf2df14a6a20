"""Each training setting is declared once (ncood/store/train_config.py): the options of
``ncood train``, its dry run, the manifest schema and the checks all follow the declaration."""

from __future__ import annotations

import dataclasses
import json

import pytest
import typer
from typer.testing import CliRunner

from ncood.cli.app import Command, user_errors
from ncood.cli.train import train_command
from ncood.store.run_schema import CONFIG, check
from ncood.store.train_config import TrainConfig, config_schema, setting


@pytest.fixture
def extended():
    """TrainConfig with one more field, as a contributor would add it: nothing else edited."""
    return dataclasses.make_dataclass(
        "ExtendedConfig",
        [
            (
                "label_smoothing",
                float,
                setting(0.0, help="Label smoothing of the loss.", metavar="EPS", minimum=0),
            ),
            ("warmup_epochs", list[int], setting([], help="Warm-up epochs.", metavar="EPOCHS")),
        ],
        bases=(TrainConfig,),
    )


def app_for(config_class):
    app = typer.Typer(rich_markup_mode=None)  # click's plain layout, as ncood's own app
    app.command(name="train", cls=Command)(user_errors(train_command(config_class)))
    app.command(name="other")(lambda: None)  # two commands: `train` stays a subcommand
    return app


def test_a_new_field_is_an_option_a_schema_entry_and_in_the_dry_run(extended):
    app = app_for(extended)
    help_text = CliRunner().invoke(app, ["train", "--help"]).output
    assert "--label-smoothing EPS" in help_text and "Label smoothing of the loss." in help_text
    assert "--warmup-epochs EPOCHS" in help_text
    assert config_schema(extended)["label_smoothing"] == "number"
    assert config_schema(extended)["warmup_epochs"] == ["int"]
    args = ["train", "--preset", "demo-standard", "--dry-run", "--label-smoothing", "0.1"]
    result = CliRunner().invoke(app, [*args, "--warmup-epochs", "1,2"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["label_smoothing"] == 0.1 and printed["warmup_epochs"] == [1, 2]
    assert printed["epochs"] == 12  # the preset's own values stand where nothing is given
    bad = CliRunner().invoke(
        app, ["train", "--preset", "demo-standard", "--dry-run", "--label-smoothing", "-1"]
    )
    assert bad.exit_code == 1 and "label-smoothing" in bad.output


def test_every_field_is_in_the_schema_the_cli_and_the_dry_run():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(CONFIG) == fields and CONFIG["cuda_graphs"] == "bool"
    help_text = CliRunner().invoke(app_for(TrainConfig), ["train", "--help"]).output
    on_cli = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata["option"]}
    assert {"preset", "milestone_fractions"} == fields - on_cli
    assert all(f"--{name.replace('_', '-')}" in help_text for name in on_cli)
    result = CliRunner().invoke(app_for(TrainConfig), ["train", "--preset", "tp-600", "--dry-run"])
    assert set(json.loads(result.output)) == fields


def test_the_schema_refuses_a_manifest_value_of_the_wrong_type():
    check({"cuda_graphs": True, "train_subset": None}, {"config": CONFIG}, "m")
    with pytest.raises(Exception, match="cuda_graphs"):
        check({"config": {"cuda_graphs": "yes"}}, {"config": CONFIG}, "m")
