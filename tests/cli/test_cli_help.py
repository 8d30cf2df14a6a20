"""Every command's --help shows conventional metavars, never Typer's type placeholders."""

import re

import pytest
import typer
from typer.testing import CliRunner

from ncood.cli import app

runner = CliRunner()
GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.list_commands(typer.Context(GROUP)))
# Typer 0.29's placeholders: "<str>", "<path>", "<list[str]>", "{source}", "[[FILE]...]..."
PLACEHOLDER = re.compile(r"<[^<>\s]*>|\{[^{}]*\}|\[\[")


def _help(command: str) -> str:
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def _terms(text: str) -> dict[str, str]:
    """The left column of the Arguments and Options sections, keyed by its first word."""
    terms = {}
    for line in text.splitlines():
        if re.match(r"  \S", line):
            term = re.split(r"\s{2,}", line.strip())[0]
            terms[term.split()[0]] = term
    return terms


def test_the_commands_are_listed():
    assert {"analyze", "extract", "plugins", "presets", "report", "train"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_type_placeholders(command):
    text = _help(command)
    usage = next(line for line in text.splitlines() if line.startswith("Usage:"))
    assert not PLACEHOLDER.search(usage), usage
    for term in _terms(text).values():
        assert not PLACEHOLDER.search(term), term


@pytest.mark.parametrize("command", COMMANDS)
def test_every_value_has_an_upper_case_metavar(command):
    for param in GROUP.commands[command].params:
        if param.param_type_name == "option" and (param.is_flag or param.count):
            assert param.metavar is None, param.name
            continue
        assert param.metavar, f"{command}: {param.name} has no metavar"
        # upper case, but for the literal choices such as fr|en or N|last|all
        assert any(c.isupper() for c in param.metavar) or "|" in param.metavar, param.metavar


def test_the_shown_metavars():
    analyze = _terms(_help("analyze"))
    assert _help("analyze").splitlines()[0].endswith(" analyze [OPTIONS] SOURCE")
    assert analyze["SOURCE"] == "SOURCE"
    assert analyze["--plugins"] == "--plugins NAMES"
    assert analyze["--epoch"] == "--epoch N|last|all"
    assert analyze["--set"] == "--set NAME.PARAM=VALUE"
    assert analyze["--ood"] == "--ood [GROUP:]SETS"
    assert analyze["--bootstrap"] == "--bootstrap N"
    assert analyze["--device"] == "--device DEVICE"
    report = _terms(_help("report"))
    assert _help("report").splitlines()[0].endswith(" report [OPTIONS] RUN_DIR...")
    assert report["RUN_DIR..."] == "RUN_DIR..."
    assert report["--lang"] == "--lang fr|en"
    assert report["--out"] == "--out DIR"
    extract = _terms(_help("extract"))
    assert _help("extract").splitlines()[0].endswith(" extract [OPTIONS] [FILE]...")
    assert extract["--weights"] == "--weights FILE|NAME"
    assert _terms(_help("train"))["--seed"] == "--seed N"


def test_flags_have_no_metavar():
    analyze = _terms(_help("analyze"))
    for flag in ("--json", "--quiet", "--verify", "--discard-failed"):
        assert analyze[flag] == flag
    assert _terms(_help("plugins"))["--json"] == "--json"
    assert _terms(_help("report"))["--no-pdf"] == "--no-pdf"
    train = _terms(_help("train"))
    assert train["--quiet"] == "--quiet / --no-quiet"
    assert train["--flip"] == "--flip / --no-flip"
