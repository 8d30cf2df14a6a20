"""--tune validates on ID *training* images: the report and the docs say it is optimistic."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncood.report.build import core_templates
from ncood.report.context import ReportContext, load_strings
from ncood_plugins.sections.appendix import tuning_text

ROOT = Path(__file__).resolve().parents[2]
CAVEAT = {
    "en": ("among those the network was trained on", "optimistic"),
    "fr": ("celles sur lesquelles le réseau a été entraîné", "optimiste"),
}


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_tuning_sentence_says_the_id_validation_is_optimistic(tmp_path, lang):
    figures = tmp_path / "figures"
    figures.mkdir()
    ctx = ReportContext([], lang, figures, tmp_path, load_strings(lang, [core_templates()]))
    rows = [
        {
            "ood": "Noise",
            "validation": {"fraction": 0.1, "seed": 0, "id_size": 36, "fit_size": 324},
        }
    ]
    text = str(tuning_text(ctx, rows))
    assert "36" in text and "324" in text and "Noise" in text
    for fragment in CAVEAT[lang]:
        assert fragment in text, text


def test_the_docs_say_what_tune_validates_on():
    conventions = (ROOT / "docs" / "conventions.md").read_text(encoding="utf-8")
    assert "ID side of the validation is" in conventions and "optimistic" in conventions
    assert "optimistic" in (ROOT / "ncood" / "ood" / "tuning.py").read_text(encoding="utf-8")
