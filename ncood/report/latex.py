"""LaTeX-safe Jinja2: ``\\VAR{…}``/``\\BLOCK{…}`` delimiters and escaping of every value.

Every value that reaches the document is escaped unless it is :class:`markupsafe.Markup`
(produced by our own filters, e.g. ``num``). A string from a plugin, a dataset or the user can
therefore never run a TeX command.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

import jinja2
from markupsafe import Markup

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
_SPECIAL_RE = re.compile("|".join(re.escape(c) for c in _SPECIALS))


def escape(value: object) -> Markup:
    """Escape a value for LaTeX text mode, in one regex pass; Markup passes through."""
    if isinstance(value, Markup):
        return value
    return Markup(_SPECIAL_RE.sub(lambda m: _SPECIALS[m.group(0)], str(value)))


def num(value: object, digits: int = 3) -> Markup:
    """A number through siunitx, so the locale (decimal comma in French) applies."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Markup("--")
    if isinstance(value, int) and not isinstance(value, bool):
        return Markup(rf"\num{{{value}}}")
    return Markup(rf"\num{{{float(value):.{digits}f}}}")


def percent(value: object, digits: int = 2) -> Markup:
    if value is None:
        return Markup("--")
    return Markup(rf"\SI{{{100 * float(value):.{digits}f}}}{{\percent}}")


def sci(value: object, digits: int = 3) -> Markup:
    """A number in scientific notation when it spans orders of magnitude (NC metrics)."""
    if value is None or not math.isfinite(float(value)):
        return Markup("--")
    return Markup(rf"\num{{{float(value):.{digits}g}}}")


def environment(template_dirs: Iterable[Path]) -> jinja2.Environment:
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
