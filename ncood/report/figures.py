"""Shared figure conventions: one size, one style, vector PDF, dense scatters rasterised."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import Formatter, ScalarFormatter  # noqa: E402

FULL_WIDTH = (7.0, 2.9)
HALF_WIDTH = (3.4, 2.7)
DENSE_POINTS = 500  # a scatter with more points than this is rasterised
STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "pdf.fonttype": 3,  # matplotlib's default: faster than TrueType subsetting; pdftotext reads it
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 200,  # only rasterised artists (dense scatters) use it
}


def new_figure(ncols: int = 1, size: tuple[float, float] = FULL_WIDTH, nrows: int = 1):
    """A figure in the report's style; returns it and a flat list of its axes."""
    matplotlib.rcParams.update(STYLE)  # the report process draws only report figures
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    return fig, [axis for row in axes for axis in row]


def dense_scatter(axis, x, y, **kwargs):
    """A scatter that stays vector when small and is rasterised when dense (PDF size, speed)."""
    kwargs.setdefault("rasterized", len(x) > DENSE_POINTS)
    kwargs.setdefault("s", 4)
    kwargs.setdefault("linewidths", 0)
    return axis.scatter(x, y, **kwargs)


class DecimalComma(Formatter):
    """Wraps a tick formatter and writes its decimal points as commas (French figures)."""

    def __init__(self, inner: ScalarFormatter) -> None:
        self.inner = inner

    def set_axis(self, axis) -> None:
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def set_locs(self, locs) -> None:
        self.inner.set_locs(locs)

    def get_offset(self) -> str:
        return self.inner.get_offset().replace(".", ",")

    def __call__(self, x, pos=None) -> str:
        text = self.inner(x, pos)
        return text.replace(".", "{,}" if "$" in text else ",")


def localise(fig, lang: str) -> None:
    """Decimal commas on the linear axes of every subplot when the report is in French."""
    if lang != "fr":
        return
    for axis in fig.axes:
        for ticks in (axis.xaxis, axis.yaxis):
            formatter = ticks.get_major_formatter()
            if type(formatter) is ScalarFormatter:
                ticks.set_major_formatter(DecimalComma(formatter))


def save(fig, path: Path, tight: bool = True) -> Path:
    """Vector PDF of ``fig`` at ``path``; closes the figure. ``tight=False`` keeps a layout
    the caller arranged (room left for a figure-level legend, say)."""
    if tight:
        fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
