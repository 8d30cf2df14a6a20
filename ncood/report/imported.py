"""What the report can say about a run ``ncood extract`` imported: no training history, but
where the model came from (architecture, weights files, preprocessing) and its accuracies.

Plain facts from the manifest, shared by the sections that mention imported runs (the
introduction, the training section); each section words them in its own template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHA_SHOWN = 12  # hex digits of a weights file's sha256 shown in the text
FILES_SHOWN = 3  # more files than this are shown as the first and the last


@dataclass(frozen=True)
class ImportedFacts:
    arch: str
    python_class: str
    parameters: int | None
    features: str  # "input of fc", "output of NAME"
    files: list[str]  # base names, in epoch order
    first_sha: str | None  # of the only file, when there is one
    epochs: list[int]
    image_size: int | None
    normalize: str | None  # dataset, imagenet, explicit, or None (the caller preprocessed)
    mean: list[float] | None
    std: list[float] | None
    train_acc: float | None  # at the last epoch
    test_acc: float | None
    first_test_acc: float | None  # at the first epoch, when there are several
    resize: int | None = None  # the ID set read from files: shorter side, then a centre crop
    crop: int | None = None


def imported_facts(manifest: dict[str, Any]) -> ImportedFacts:
    model = manifest.get("model", {})
    weights = manifest.get("weights", [])
    prep = manifest.get("preprocessing", {})
    evaluation = sorted(manifest.get("evaluation", []), key=lambda e: e["epoch"])
    last = evaluation[-1] if evaluation else {}
    return ImportedFacts(
        arch=str(model.get("name", "?")),
        python_class=str(model.get("class", "?")),
        parameters=model.get("parameters"),
        features=str(model.get("features", "?")),
        files=[w.get("name") or Path(w["file"]).name for w in weights],  # weights by name: it
        first_sha=weights[0]["sha256"][:SHA_SHOWN] if len(weights) == 1 else None,
        epochs=[e["epoch"] for e in evaluation],
        image_size=prep.get("image_size"),
        normalize=prep.get("normalize"),
        mean=prep.get("mean"),
        std=prep.get("std"),
        train_acc=last.get("train_acc"),
        test_acc=last.get("test_acc"),
        first_test_acc=evaluation[0].get("test_acc") if len(evaluation) > 1 else None,
        resize=prep.get("resize") if isinstance(prep.get("resize"), int) else None,
        crop=prep.get("crop") if isinstance(prep.get("crop"), int) else None,
    )


def shown_files(files: list[str]) -> list[str]:
    """The files a sentence names: all of a few, else the first and the last."""
    return files if len(files) <= FILES_SHOWN else [files[0], files[-1]]
