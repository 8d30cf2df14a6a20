"""LaTeX-safe Jinja2: ``\\VAR{…}``/``\\BLOCK{…}`` delimiters and escaping of every value.

Every value that reaches the document is escaped unless it is :class:`markupsafe.Markup`
(produced by our own filters, e.g. ``num``). A string from a plugin, a dataset or the user can
therefore never run a TeX command.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from markupsafe import Markup

if TYPE_CHECKING:
    import jinja2

_SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "^": r"\textasciicircum{}",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "%": r"\%",
    "[": "{[}",
    "]": "{]}",
}
# Greek small letters from U+03B1 in order; omicron ("_") is an italic o, left to the fallback.
_GREEK = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "_",
    "pi",
    "rho",
    "varsigma",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
]
# Symbols that scorer descriptions and names use but pdflatex's utf8 input cannot typeset
# (any other unknown character prints as a boxed "?" instead of stopping LaTeX, see the preamble).
_MATH = {
    "‖": r"\|",
    "·": r"\cdot",
    "−": "-",
    "×": r"\times",
    "÷": r"\div",
    "≤": r"\leq",
    "≥": r"\geq",
    "≠": r"\neq",
    "≈": r"\approx",
    "→": r"\to",
    "←": r"\leftarrow",
    "∈": r"\in",
    "∑": r"\sum",
    "√": r"\surd",
    "∞": r"\infty",
    "±": r"\pm",
    "†": r"\dagger",
    "ᵀ": r"^{\top}",
    "⁻": r"^{-}",
    "∘": r"\circ",
    "∝": r"\propto",
    "⊤": r"\top",
    "ℓ": r"\ell",
    **{
        chr(code): "\\" + name
        for code, name in zip(range(0x3B1, 0x3CA), _GREEK, strict=True)
        if name != "_"
    },
    "Σ": r"\Sigma",
    "Δ": r"\Delta",
    "Λ": r"\Lambda",
    "Φ": r"\Phi",
    "Ω": r"\Omega",
    "Π": r"\Pi",
}
_SPECIALS.update({char: rf"\ensuremath{{{latex}}}" for char, latex in _MATH.items()})
_SPECIAL_RE = re.compile("|".join(re.escape(c) for c in _SPECIALS))


MAX_VALUE_CHARS = 1000  # a longer value (a name, say) is cut: TeX reads lines of bounded size
_LINE_BREAKS = re.compile(r"[\t\n\r\v\f\u0085\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """A value as one line TeX and matplotlib can set: line breaks become spaces (a blank line
    would end the paragraph inside a caption), other control characters ``?``, and a value
    longer than ``MAX_VALUE_CHARS`` is cut with an ellipsis."""
    text = _CONTROL.sub("?", _LINE_BREAKS.sub(" ", text))
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def escape(value: object) -> Markup:
    """Escape a value for LaTeX text mode, in one regex pass; Markup passes through."""
    if isinstance(value, Markup):
        return value
    return Markup(_SPECIAL_RE.sub(lambda m: _SPECIALS[m.group(0)], printable(str(value))))


def command(name: str, value: object) -> Markup:
    """``\\name{value}`` with the value escaped (never ``Markup("…%s") % value``: markupsafe's
    own operators escape for HTML, not LaTeX)."""
    return Markup(f"\\{name}{{{escape(value)}}}")


def join(separator: object, items: Iterable[object]) -> Markup:
    """Items escaped for LaTeX and joined (``Markup(sep).join`` would HTML-escape strings)."""
    return Markup(escape(separator).join(escape(item) for item in items))


def _spread(value: object) -> float | None:
    """The standard deviation a number carries (a mean over seeds), if any."""
    std = getattr(value, "std", None)
    return float(std) if isinstance(std, numbers.Real) and math.isfinite(std) else None


def num(value: object, digits: int = 3) -> Markup:
    """A number through siunitx, so the locale (decimal comma in French) applies; a mean over
    seeds prints as ``mean ± std``."""
    if value is None or (isinstance(value, numbers.Real) and not math.isfinite(float(value))):
        return Markup("--")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return Markup(rf"\num{{{int(value)}}}")
    std = _spread(value)
    if std is not None:
        return Markup(rf"\num{{{float(value):.{digits}f} \pm {std:.{digits}f}}}")
    return Markup(rf"\num{{{float(value):.{digits}f}}}")


def percent(value: object, digits: int = 2) -> Markup:
    if value is None or not math.isfinite(float(value)):
        return Markup("--")
    std = _spread(value)
    if std is not None:
        return Markup(
            rf"\SI{{{100 * float(value):.{digits}f} \pm {100 * std:.{digits}f}}}{{\percent}}"
        )
    return Markup(rf"\SI{{{100 * float(value):.{digits}f}}}{{\percent}}")


def sci(value: object, digits: int = 3) -> Markup:
    """A number in scientific notation when it spans orders of magnitude (NC metrics)."""
    if value is None or not math.isfinite(float(value)):
        return Markup("--")
    std = _spread(value)
    if std is not None and float(value) != 0.0:
        exponent = math.floor(math.log10(abs(float(value))))
        scale = 10.0**exponent
        places = max(digits - 1, 0)
        mantissa, error = float(value) / scale, std / scale
        power = f"e{exponent}" if exponent else ""
        return Markup(rf"\num{{{mantissa:.{places}f} \pm {error:.{places}f}{power}}}")
    return Markup(rf"\num{{{float(value):.{digits}g}}}")


def environment(template_dirs: Iterable[Path]) -> jinja2.Environment:
    import jinja2  # only the report renders templates; plugins import this module for escape()

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs]),
        block_start_string=r"\BLOCK{",
        block_end_string="}",
        variable_start_string=r"\VAR{",
        variable_end_string="}",
        comment_start_string=r"\#{",
        comment_end_string="}",
        line_statement_prefix="%-",
        line_comment_prefix="%#",
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        finalize=escape,
        keep_trailing_newline=True,
    )
    env.filters.update(num=num, percent=percent, sci=sci, e=escape, escape=escape)
    return env


def format_param(value) -> str:
    """A parameter as a reader wants it: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
