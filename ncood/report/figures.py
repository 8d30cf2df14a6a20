"""Shared figure conventions: one size, one style, vector PDF, dense scatters rasterised."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FULL_WIDTH = (7.0, 2.9)
HALF_WIDTH = (3.4, 2.7)


def new_figure(ncols: int = 1, size: tuple[float, float] = FULL_WIDTH):
    fig, axes = plt.subplots(1, ncols, figsize=size, squeeze=False)
    return fig, list(axes[0])


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=200)
    plt.close(fig)
    return path
