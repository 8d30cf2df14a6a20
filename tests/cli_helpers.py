"""What several CLI test modules share: a small training, and the one-line-error check."""

from __future__ import annotations

from typer.testing import CliRunner

from ncood.cli import app

runner = CliRunner()
# The demo preset at width 4 on 128 images: a real run in a second or two.
SMALL = ["--preset", "demo-standard", "--width", "4", "--train-subset", "128", "--quiet"]


def train(*args: str):
    return runner.invoke(app, ["train", *SMALL, *args])


def one_line_error(result, *fragments: str, stream: str = "output") -> str:
    """Exit 1, no traceback, exactly one line on ``stream`` holding every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    text = getattr(result, stream)
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
