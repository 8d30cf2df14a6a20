"""The images a run was made from, changed since: a ``folder:`` OOD set whose images were
replaced (the same count) or removed. A model-based scorer rebuilds the split from them, so
it must not score other images silently, and a missing one is named by its folder; runs
recorded before the digests stay readable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import runner
from hostile_helpers import FOLDER_IMAGES, copied, one_line_error, write_image
from hostile_helpers import analyze_run as analyze

from ncood.cli import app
from ncood.errors import NcoodError
from ncood.store.run import RunDir


def test_a_replaced_folder_image_is_refused_for_odin(trained, tmp_path):
    from ncood.extraction.rerun import load_run_data

    manifest = trained.manifest()
    spec = next(s for s in manifest["config"]["ood"] if s.startswith("folder:"))
    folder = tmp_path / "elsewhere" / Path(spec.removeprefix("folder:")).name
    shutil.copytree(spec.removeprefix("folder:"), folder)
    run = copied(trained, tmp_path / "run")
    manifest["config"]["ood"] = [
        s if s != spec else f"folder:{folder}" for s in manifest["config"]["ood"]
    ]
    (run.root / "manifest.json").write_text(json.dumps(manifest))
    assert "digests" in manifest["dataset"]
    load_run_data(run)  # the copy holds the same images: accepted

    write_image(folder / "3.png", (0, 0, 0))  # another image, the same count
    assert len(list(folder.iterdir())) == FOLDER_IMAGES
    with pytest.raises(NcoodError):
        load_run_data(run)
    result = runner.invoke(app, ["analyze", str(run.root), "--plugins", "odin", "--quiet"])
    one_line_error(result, "textures")  # the set, named by its folder
    assert not (run.root / "analysis").exists()


def test_runs_without_digests_stay_readable(trained, tmp_path):
    from ncood.extraction.rerun import load_run_data

    run = copied(trained, tmp_path / "run")
    manifest = run.manifest()
    del manifest["dataset"]["digests"]
    (run.root / "manifest.json").write_text(json.dumps(manifest))
    assert set(load_run_data(run).splits) >= {"train", "test", "ood/textures"}


def test_a_changed_absolute_folder_names_the_folder(tmp_path):
    """An image gone from an absolute ``folder:`` OOD set: --data-dir has no say over it, so
    the line names the folder (as given at extraction) rather than asking for --data-dir."""
    from PIL import Image

    from ncood.engine.resnet import ResNet18

    folder = (tmp_path / "textures").resolve()
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        pixels = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    torch.manual_seed(3)
    torch.save(ResNet18(10, width=4).state_dict(), tmp_path / "w.pth")
    args = ["extract", "--model", "resnet18-cifar", "--model-arg", "width=4", "--weights"]
    args += [str(tmp_path / "w.pth"), "--dataset", "digits", "--ood", f"folder:{folder}"]
    args += ["--image-size", "24", "--limit", "20", "--out", str(tmp_path / "run"), "--quiet"]
    assert runner.invoke(app, args).exit_code == 0
    (folder / "3.png").unlink()
    run = RunDir.open(tmp_path / "run")
    line = one_line_error(analyze(run, "--plugins", "mcd", "--set", "mcd.samples=2"))
    assert str(folder) in line and "--data-dir" not in line
    assert not (run.root / "analysis").exists()
