"""Shared figure conventions: one size, one style, vector PDF, dense scatters rasterised.

matplotlib is imported on first use, not at import: every ``ncood`` command loads the report
plugins with the others, and ``analyze`` should not pay for pyplot (about 0.4 s) it never uses.
"""

from __future__ import annotations

import functools
from pathlib import Path

FULL_WIDTH = (7.0, 2.9)
HALF_WIDTH = (3.4, 2.7)
DENSE_POINTS = 500  # a scatter with more points than this is rasterised
PANELS_PER_ROW = 3  # grids of small panels wrap after this many columns
LINE_STYLES = ("-", "--", "-.", ":")  # cycled when colours alone do not tell lines apart
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


@functools.cache
def pyplot():
    """pyplot on the file-only Agg backend, imported once, when the first figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def new_figure(ncols: int = 1, size: tuple[float, float] = FULL_WIDTH, nrows: int = 1):
    """A figure in the report's style; returns it and a flat list of its axes."""
    plt = pyplot()
    plt.rcParams.update(STYLE)  # the report process draws only report figures
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    return fig, [axis for row in axes for axis in row]


def dense_scatter(axis, x, y, **kwargs):
    """A scatter that stays vector when small and is rasterised when dense (PDF size, speed)."""
    kwargs.setdefault("rasterized", len(x) > DENSE_POINTS)
    kwargs.setdefault("s", 4)
    kwargs.setdefault("linewidths", 0)
    return axis.scatter(x, y, **kwargs)


@functools.cache
def decimal_comma_formatter() -> type:
    """The formatter class, built on first use so that importing this module stays cheap."""
    from matplotlib.ticker import Formatter

    class DecimalComma(Formatter):
        """Wraps a tick formatter and writes its decimal points as commas (French figures)."""

        def __init__(self, inner: Formatter) -> None:
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

    return DecimalComma


def localise(fig, lang: str) -> None:
    """Decimal commas on the linear axes of every subplot when the report is in French."""
    if lang != "fr":
        return
    from matplotlib.ticker import ScalarFormatter

    decimal_comma = decimal_comma_formatter()
    for axis in fig.axes:
        for ticks in (axis.xaxis, axis.yaxis):
            formatter = ticks.get_major_formatter()
            if type(formatter) is ScalarFormatter:
                ticks.set_major_formatter(decimal_comma(formatter))


def save(fig, path: Path, tight: bool = True) -> Path:
    """Vector PDF of ``fig`` at ``path``, written atomically; closes the figure.
    ``tight=False`` keeps a layout the caller arranged (room left for a figure-level legend)."""
    from ncood.store.atomic import atomic_path

    path = Path(path)
    try:
        if tight:
            fig.tight_layout()
        with atomic_path(path) as tmp:  # a full disk leaves no truncated figure
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "pdf")
    finally:
        pyplot().close(fig)
    return path


def integer_ticks(ticks) -> None:
    """Whole numbers only on an axis (epochs, ranks)."""
    from matplotlib.ticker import MaxNLocator

    ticks.set_major_locator(MaxNLocator(integer=True))


def legend_handle(**style):
    """A line-and-marker swatch for a legend that no plotted artist provides."""
    from matplotlib.lines import Line2D

    return Line2D([], [], **style)


def line_style(index: int) -> str:
    """The ``index``-th of :data:`LINE_STYLES`, cycling."""
    return LINE_STYLES[index % len(LINE_STYLES)]


def grid(
    count: int, width: float = 2.45, height: float = 2.1, margins: tuple[float, float] = (0.4, 0.5)
):
    """``count`` panels of ``width`` × ``height`` inches, :data:`PANELS_PER_ROW` a row; the
    unused cells of the last row are hidden. Returns the figure, the panels and the row count."""
    columns = min(count, PANELS_PER_ROW)
    rows = -(-count // columns)
    size = (width * columns + margins[0], height * rows + margins[1])
    fig, axes = new_figure(columns, size, nrows=rows)
    for axis in axes[count:]:
        axis.set_visible(False)
    return fig, axes[:count], rows


def integer_epochs(axes) -> None:
    """Whole-number ticks on the x axis (epochs) of every panel."""
    for axis in axes:
        integer_ticks(axis.xaxis)


def bottom_legend(fig, handles, labels, rows: int, ncol: int, space: float = 0.1) -> None:
    """One legend under the whole grid, with ``space`` (a share of one row) kept for it."""
    fig.tight_layout(rect=(0, space / rows, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, fontsize=6.5)
