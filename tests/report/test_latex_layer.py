"""The report's LaTeX layer without TeX: escaping, number formats, names, translations, logs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from markupsafe import Markup

from ncood.errors import NcoodError
from ncood.report.build import core_templates, section_label
from ncood.report.compile import LatexError, latexmk_command, log_problems
from ncood.report.context import ReportContext, load_strings, slugify
from ncood.report.figures import localise, new_figure
from ncood.report.latex import command, environment, escape, join, num, percent, sci

HOSTILE = "$&%#_{}~^"
TEMPLATES = core_templates()


def make_context(tmp_path: Path, lang: str = "fr") -> ReportContext:
    figures = tmp_path / "report-figures"
    figures.mkdir(parents=True, exist_ok=True)
    return ReportContext([], lang, figures, tmp_path, load_strings(lang, [TEMPLATES]))


# -- escaping ---------------------------------------------------------------------------------


def test_every_special_character_is_escaped():
    assert escape(HOSTILE) == (r"\$\&\%\#\_\{\}\textasciitilde{}\textasciicircum{}")
    assert escape("\\input{/etc/passwd}") == r"\textbackslash{}input\{/etc/passwd\}"
    assert escape("[x]") == "{[}x{]}"  # a bracket cannot open an optional argument


def test_markup_passes_through_unescaped():
    assert escape(Markup(r"\textbf{x}")) == r"\textbf{x}"


def test_unicode_math_becomes_latex():
    assert escape("‖z‖ · α − μ") == (
        r"\ensuremath{\|}z\ensuremath{\|} \ensuremath{\cdot} \ensuremath{\alpha} "
        r"\ensuremath{-} \ensuremath{\mu}"
    )


def test_command_and_join_escape_for_latex_not_html():
    assert command("texttt", "a & b<c") == r"\texttt{a \& b<c}"
    assert join(", ", ["x&y", Markup(r"\ref{a}")]) == r"x\&y, \ref{a}"
    # markupsafe's own join would write &amp; — the trap these helpers avoid
    assert Markup(", ").join(["x&y"]) == "x&amp;y"


def test_template_values_are_escaped():
    env = environment([TEMPLATES])
    rendered = env.from_string(r"\section{\VAR{name}} \VAR{safe}").render(
        name="\\input{/etc/passwd}", safe=Markup(r"\emph{ok}")
    )
    assert rendered == r"\section{\textbackslash{}input\{/etc/passwd\}} \emph{ok}"


# -- numbers ----------------------------------------------------------------------------------


def test_numbers_go_through_siunitx():
    assert num(0.12345) == r"\num{0.123}"
    assert num(0.5, 2) == r"\num{0.50}"
    assert num(7) == r"\num{7}"
    assert num(np.int64(1437)) == r"\num{1437}"
    assert num(np.float32(0.25)) == r"\num{0.250}"
    assert num(None) == "--" and num(float("nan")) == "--"
    assert percent(0.9081) == r"\SI{90.81}{\percent}"
    assert percent(float("inf")) == "--"
    assert sci(1.2e-5) == r"\num{1.2e-05}"


# -- names and figure paths ---------------------------------------------------------------------


def test_slugify_keeps_plain_names_and_separates_odd_ones():
    assert slugify("demo-standard") == "demo-standard"
    odd = [HOSTILE, "a$b", "a&b", "\\input{/etc/passwd}", "", "Été 2024", "../../etc"]
    slugs = [slugify(name) for name in odd]
    assert len(set(slugs)) == len(slugs)
    assert all(re.fullmatch(r"[a-z0-9-]+", s) for s in slugs), slugs
    assert slugify("../../etc").startswith("etc-")


def test_figure_paths_are_plain_and_unique(tmp_path):
    ctx = make_context(tmp_path)
    first = ctx.figure(f"roc-{HOSTILE}")
    second = ctx.figure(f"roc-{HOSTILE}")
    assert first != second and first.parent == second.parent == ctx.figures_dir
    for path in (first, second):
        path.touch()
        assert re.fullmatch(r"[A-Za-z0-9._/-]+", str(ctx.relative(path)))


def test_relative_refuses_a_path_latex_cannot_take(tmp_path):
    ctx = make_context(tmp_path)
    with pytest.raises(NcoodError, match="characters LaTeX cannot take"):
        ctx.relative(tmp_path / "report-figures" / "a b{c}.pdf")


def test_section_labels_are_plain():
    assert section_label("neural-collapse") == "sec:neural-collapse"
    assert re.fullmatch(r"sec:[a-z0-9-]+", section_label(HOSTILE))


# -- translations ------------------------------------------------------------------------------


def test_translation_escapes_values_and_formats_floats(tmp_path):
    ctx = make_context(tmp_path)
    ctx.strings["probe"] = r"\emph{<name>} : <value> / <count>"
    assert ctx.t("probe", name=HOSTILE, value=0.5, count=3) == (
        r"\emph{\$\&\%\#\_\{\}\textasciitilde{}\textasciicircum{}} : \num{0.500} / 3"
    )
    with pytest.raises(NcoodError, match="no 'fr' translation for 'missing'"):
        ctx.t("missing")


def test_plain_text_for_figures_never_starts_mathtext(tmp_path):
    ctx = make_context(tmp_path)
    ctx.strings["probe"] = "<name> (<value>)"
    assert ctx.text("probe", name="$x$", value=0.25) == r"\$x\$ (0,250)"
    assert make_context(tmp_path, "en").plain(0.25) == "0.250"


def _keys_and_placeholders(lang: str) -> dict[str, set[str]]:
    strings = json.loads((TEMPLATES / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    return {key: set(re.findall(r"<(\w+)>", value)) for key, value in strings.items()}


def test_french_and_english_have_the_same_keys_and_placeholders():
    french, english = _keys_and_placeholders("fr"), _keys_and_placeholders("en")
    assert set(french) == set(english), set(french) ^ set(english)
    different = {k for k in french if french[k] != english[k]}
    assert not different, different


def test_every_key_the_templates_use_is_translated():
    used = set()
    for template in TEMPLATES.rglob("*.j2"):
        used |= set(re.findall(r"""\bt\(\s*["']([\w-]+)["']\s*[,)]""", template.read_text()))
    for plugin in (Path(__file__).parents[2] / "plugins").glob("report_*.py"):
        text = plugin.read_text()
        used |= set(re.findall(r"""ctx\.(?:t|text)\(\s*["']([\w-]+)["']\s*[,)]""", text))
    for lang in ("fr", "en"):
        missing = used - set(_keys_and_placeholders(lang))
        assert not missing, (lang, missing)


def test_figure_phrases_are_plain_text():
    """Keys read with ctx.text reach matplotlib, which shows text-mode LaTeX literally (only
    its own mathtext, between dollars, is understood)."""
    for lang in ("fr", "en"):
        strings = json.loads((TEMPLATES / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        for key, value in strings.items():
            if key.startswith("fig_") or key.endswith("_short"):
                text = re.sub(r"\$[^$]*\$", "", value)
                assert not re.search(r"[\\$~{}]", text), (lang, key, value)


def test_unknown_language_is_a_user_error():
    with pytest.raises(NcoodError, match="unknown language 'de'"):
        load_strings("de", [TEMPLATES])


# -- figures -----------------------------------------------------------------------------------


def test_french_figures_get_decimal_commas():
    matplotlib.use("Agg")
    fig, (axis,) = new_figure(1)
    axis.plot([0, 1], [0.0, 0.5])
    localise(fig, "fr")
    fig.canvas.draw()
    labels = [t.get_text() for t in axis.get_yticklabels() if t.get_text()]
    assert any("," in label for label in labels) and not any("." in label for label in labels)


# -- compiling ---------------------------------------------------------------------------------


def test_latexmk_never_allows_shell_escape(tmp_path):
    command_line = latexmk_command("r.tex")
    assert "-norc" in command_line
    assert "-no-shell-escape" in command_line
    assert not any("shell-escape" in a and a != "-no-shell-escape" for a in command_line)
    assert "-halt-on-error" in command_line and "-file-line-error" in command_line


SAMPLE_LOG = r"""This is pdfTeX, Version 3.141592653-2.6-1.40.24 (TeX Live 2022/Debian)
(./report.tex
LaTeX2e <2022-11-01> patch level 1
Overfull \hbox (3.2pt too wide) in paragraph at lines 40--41
./report.tex:57: Undefined control sequence.
l.57 \undefinedmacro
                    {}
! Emergency stop.
"""


def test_log_problems_keep_only_file_line_errors():
    problems = log_problems(SAMPLE_LOG)
    assert [str(p) for p in problems] == [
        r"./report.tex:57: Undefined control sequence. [\undefinedmacro]"
    ]
    fatal_only = log_problems("! LaTeX Error: File `x.sty' not found.\nl.3 \\usepackage")
    assert fatal_only[0].line is None and "x.sty" in fatal_only[0].message


def test_latex_error_message_is_short_and_hints_at_missing_packages(tmp_path):
    problems = log_problems("./r.tex:3: LaTeX Error: File `siunitx.sty' not found.\n")
    message = str(LatexError(tmp_path / "r.tex", problems, tmp_path / "r.log"))
    assert "r.tex:3: LaTeX Error" in message and "apt-get install" in message
    assert len(message.splitlines()) <= 5
