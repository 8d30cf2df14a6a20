"""Issue 27's feature-level scorers stream too: ``ncood analyze`` of a file much larger than its
working memory grows its peak RSS far less than the file (relation's bank, a share of train,
is the one thing that grows with the train split)."""

from __future__ import annotations

import os

import pytest
from test_memory_bound import peak_rss, write_dump

ISSUE_27 = "residual,maxcosine,caref,cadref,relation,lts,pnml,graduncertainty"


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs wait4 (Linux, macOS)")
def test_issue_27_feature_scorers_stream(tmp_path):
    small, large = tmp_path / "small.safetensors", tmp_path / "large.safetensors"
    write_dump(small, train=2_000)
    write_dump(large, train=200_000)
    size = large.stat().st_size
    settings = ("residual.dim=128", "relation.bank_fraction=0.01")
    baseline = peak_rss(small, tmp_path / "small", ISSUE_27, settings)
    growth = peak_rss(large, tmp_path / "large", ISSUE_27, settings) - baseline
    assert growth < 0.25 * size, (
        f"peak RSS grew {growth / 2**20:.0f} MiB for a {size >> 20} MiB file"
    )
