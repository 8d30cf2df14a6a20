"""One manifest builder: a trained and an imported run's manifests are built by it, pass the run
schema, and hold their sections in the schema's order."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import ncood
from ncood.errors import NcoodError
from ncood.store.manifest import IMPORTED, new_manifest
from ncood.store.run import RunDir
from ncood.store.run_schema import MANIFEST, check_manifest

COMMON = {
    "status": "running",
    "created": "2026-01-01T00:00:00+00:00",
    "config": {"dataset": "demo", "epochs": 2},
    "versions": {"ncood": "0.1"},
    "device": "cpu",
    "dataset": {"name": "demo", "num_classes": 4},
    "model": {"name": "resnet18-cifar", "feature_dim": 8},
    "files": {},
}


def in_schema_order(keys) -> bool:
    order = list(MANIFEST)
    positions = [order.index(key) for key in keys]
    return positions == sorted(positions)


def test_sections_are_written_in_the_schema_order_after_the_format():
    given = dict(reversed(list({**COMMON, "seed": 3, "source": IMPORTED}.items())))
    manifest = new_manifest(**given)
    assert list(manifest)[:3] == ["format", "format_version", "source"]
    assert manifest["format"] == "ncood-run" and manifest["format_version"] == 1
    assert in_schema_order(manifest)
    assert {k: v for k, v in manifest.items() if k not in ("format", "format_version")} == given
    assert "source" not in new_manifest(**COMMON)  # a trained run has none


def test_what_the_schema_refuses_is_not_built():
    with pytest.raises(TypeError):
        new_manifest(**COMMON, colour="blue")  # not a section of the schema
    with pytest.raises(TypeError):
        new_manifest(**COMMON, format="something-else")  # the format is the builder's
    with pytest.raises(NcoodError, match="seed"):
        new_manifest(**COMMON, seed="three")


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU())
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.body(x))


def test_a_trained_and_an_imported_run_have_manifests_of_one_builder(tmp_path, demo_run):
    images = torch.randn(6, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6) % 2
    out = ncood.extract(
        Tiny().eval(), train=(images, labels), test=(images, labels), out=tmp_path / "imported"
    )
    imported = json.loads((out / "manifest.json").read_text())
    trained = json.loads(demo_run.manifest_path.read_text())
    for manifest, path in ((imported, out), (trained, demo_run.root)):
        check_manifest(manifest, path)  # the schema, as every reader checks it
        assert RunDir.open(path).manifest() == manifest
        assert list(manifest)[:2] == ["format", "format_version"]
    assert imported["source"] == IMPORTED and "source" not in trained
    # the imported run is written as built: rebuilding it from its sections changes nothing
    sections = {k: v for k, v in imported.items() if k not in ("format", "format_version")}
    rebuilt = new_manifest(**sections)
    assert rebuilt == imported and list(rebuilt) == list(imported)
    # the trained one as built, then finished (the end of training adds these two)
    assert in_schema_order([k for k in trained if k not in ("finished", "file_stats")])
    assert list(trained)[-2:] == ["finished", "file_stats"]
