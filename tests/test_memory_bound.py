"""``ncood analyze`` of a file much larger than its working memory: peak RSS of a fresh process
grows far less than the file (the splits are streamed, never loaded or mapped whole).

About 5 s: a 220 MB features file (200,000 × 256 train, 10 classes) is written and analyzed by
the TP's six scorers and ``nc``, and a tiny file by the same command as the baseline.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ncood.store.features_writer import FeaturesWriter

PLUGINS = "msp,maxlogit,energy,mahalanobis,vim,neco,nc"
# Issue 19's feature-level scorers (nnguide's bank, a share of train, is the one thing that
# grows with the train split: its paper's 1 %).
FEATURE_LEVEL = (
    "entropy,klm,tscaling,webo,dice,ash-p,ash-b,ash-s,scale,vra,gradnorm,nnguide,gmm,openmax"
)


def write_dump(path, train: int, dim: int = 256, classes: int = 10, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    means = np.maximum(rng.normal(0.5, 1.0, (classes, dim)), 0).astype(np.float32)
    weight = (means - means.mean(axis=0)).astype(np.float32) / np.float32(np.sqrt(dim))
    bias = np.zeros(classes, np.float32)
    sizes = {"train": train, "test": 5_000, "ood/far": 5_000}
    metadata = {"epoch": "1"}
    with FeaturesWriter(path, classes=classes, dim=dim, splits=sizes, metadata=metadata) as writer:
        writer.write_head(weight, bias)
        for name, n in sizes.items():
            for start in range(0, n, 20_000):
                rows = min(20_000, n - start)
                labels = np.arange(start, start + rows) % classes
                centres = means[labels] if name != "ood/far" else means[labels] * 0.2
                noise = rng.standard_normal((rows, dim), dtype=np.float32)
                features = np.maximum(centres + noise, 0, dtype=np.float32)
                writer.write_rows(name, "features", start, features)
                writer.write_rows(name, "logits", start, features @ weight.T + bias)
                writer.write_rows(
                    name, "labels", start, labels if name != "ood/far" else np.full(rows, -1)
                )


def peak_rss(path, out_dir, plugins: str = PLUGINS, settings=("vim.dim=128",)) -> int:
    """Peak resident set (bytes) of a fresh ``ncood analyze`` process."""
    env = {**os.environ, "NCOOD_LOAD_PLUGINS": ""}
    command = [sys.executable, "-m", "ncood", "analyze", str(path), "--plugins", plugins]
    for setting in settings:
        command += ["--set", setting]
    command += ["--out", str(out_dir), "--quiet"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, process.stderr.read().decode()
    return usage.ru_maxrss * 1024


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs wait4 (Linux, macOS)")
def test_peak_memory_grows_far_less_than_the_file(tmp_path):
    small, large = tmp_path / "small.safetensors", tmp_path / "large.safetensors"
    write_dump(small, train=2_000)
    write_dump(large, train=200_000)
    size = large.stat().st_size
    baseline = peak_rss(small, tmp_path / "small")
    peak = peak_rss(large, tmp_path / "large")
    growth = peak - baseline
    # Today's loader alone would add the whole file (and briefly twice it).
    assert growth < 0.25 * size, (
        f"peak RSS grew {growth / 2**20:.0f} MiB for a {size >> 20} MiB file"
    )


# with the class-mean, relation and logit-scaling scorers (relation's bank, a share of train,
# is the one thing of theirs that grows with the train split): one analysis for all of them
CLASS_MEANS_AND_MORE = "residual,maxcosine,caref,cadref,relation,lts,pnml,graduncertainty"


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs wait4 (Linux, macOS)")
def test_the_feature_level_scorers_stream_too(tmp_path):
    small, large = tmp_path / "small.safetensors", tmp_path / "large.safetensors"
    write_dump(small, train=2_000)
    write_dump(large, train=200_000)
    size = large.stat().st_size
    plugins = f"{FEATURE_LEVEL},{CLASS_MEANS_AND_MORE}"
    settings = ("nnguide.bank_fraction=0.01", "residual.dim=128", "relation.bank_fraction=0.01")
    baseline = peak_rss(small, tmp_path / "small", plugins, settings)
    growth = peak_rss(large, tmp_path / "large", plugins, settings) - baseline
    assert growth < 0.25 * size, (
        f"peak RSS grew {growth / 2**20:.0f} MiB for a {size >> 20} MiB file"
    )
