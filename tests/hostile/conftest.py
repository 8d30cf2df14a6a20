"""Fixtures several hostile test modules share: the files and runs they attack, and a report
with only its cheap sections."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import train
from hostile_helpers import FOLDER_IMAGES, write_image
from nc_builders import noisy_dump

from ncood.host.loading import host
from ncood.host.registry import Registry
from ncood.report import build as build_module
from ncood.store.features import save_features
from ncood.store.run import RunDir


@pytest.fixture
def features_file(tmp_path, tiny_dump):
    path = tmp_path / "features.safetensors"
    save_features(path, tiny_dump)  # D = 8, C = 4, OOD set "blobs"
    return path


@pytest.fixture
def features(tmp_path) -> Path:
    """A features file of a noisy 4-class dump with OOD sets ``near`` and ``far``
    (test_misleading_results has a ``features`` of its own)."""
    path = tmp_path / "features.safetensors"
    save_features(path, noisy_dump(num_classes=4, dim=8, seed=1))  # OOD sets near, far
    return path


@pytest.fixture
def run_copy(demo_run, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(demo_run.root, run)
    return run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("small") / "run"
    result = train("--epochs", "2", "--checkpoint-every", "1", "--out", str(run))
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained run whose OOD sets are ``noise`` and a folder of 8 plain images."""
    root = tmp_path_factory.mktemp("trained")
    for index in range(FOLDER_IMAGES):
        write_image(root / "textures" / f"{index}.png", (30 * index, 255 - 30 * index, 90))
    out = root / "run"
    result = train("--epochs", "1", "--ood", f"noise,folder:{root / 'textures'}", "--out", str(out))
    assert result.exit_code == 0, result.output
    return RunDir.open(out)


@pytest.fixture
def light_sections(monkeypatch):
    """Only the cheap built-in sections: these tests are about the build, not the content."""
    keep = {"introduction", "training", "appendix"}

    class Host:
        def report_sections(self):
            sections = Registry("report section")
            for name, section in host().report_sections().items():
                if name in keep:
                    sections.add(name, section)
            return sections

    monkeypatch.setattr(build_module, "host", Host)
