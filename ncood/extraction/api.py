"""``ncood.extract``: a model you hold and its data, straight into an ncood run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ncood.errors import NcoodError


def extract(
    model,
    *,
    train,
    test,
    ood: dict[str, Any] | None = None,
    out: str | Path,
    dataset: str = "custom",
    arch: str | None = None,
    epoch: int = 1,
    feature_layer: str | None = None,
    batch_size: int = 256,
    device: str | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> Path:
    """Write the run ``out`` from ``model`` (a ``torch.nn.Module`` returning logits).

    ``train``, ``test`` and each ``ood`` value are a ``DataLoader`` over a sized dataset, a
    tensor of model-ready images, or an ``(images, labels)`` pair; inputs go to the model as
    given (preprocess them yourself). ``ood`` labels are ignored. Returns the run's path, ready
    for ``ncood analyze``.
    """
    import torch

    from ncood.extraction.imported import ImportPlan, write_imported_run
    from ncood.extraction.inputs import as_source
    from ncood.progress import progress_bar

    if not isinstance(model, torch.nn.Module):
        raise NcoodError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if batch_size < 1:
        raise NcoodError("batch_size must be at least 1")
    ood = dict(ood or {})
    sources = {"train": as_source(train, "train", batch_size)}
    sources["test"] = as_source(test, "test", batch_size)
    for name, value in ood.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise NcoodError(f"OOD set names must be non-empty and free of '/', got {name!r}")
        sources[f"ood/{name}"] = as_source(value, f"ood {name!r}", batch_size)
    if device is None:
        first = next(model.parameters(), None)
        target = first.device if first is not None else torch.device("cpu")
    else:
        from ncood.engine.accel import pick_device

        target = pick_device(device)
    from ncood.models.capture import choose_head

    head = choose_head(model, feature_layer)
    plan = ImportPlan(
        arch=arch or f"{type(model).__module__}.{type(model).__qualname__}",
        dataset={
            "name": dataset,
            "num_classes": int(head.head.out_features),
            "train_size": sources["train"].count,
            "test_size": sources["test"].count,
            "ood": {name: sources[f"ood/{name}"].count for name in ood},
        },
        preprocessing={"by": "caller (ncood.extract received model-ready inputs)"},
        config={"batch_size": batch_size, "feature_layer": feature_layer, "api": True},
        feature_layer=feature_layer,
    )
    total = sum(s.count for s in sources.values())
    with progress_bar(show_progress) as progress:
        task = progress.add_task("extract", total=total, status=f"epoch {epoch}")
        run = write_imported_run(
            out,
            model,
            plan,
            sources,
            target,
            epoch=epoch,
            force=force,
            on_batch=lambda n: progress.advance(task, n),
        )
    return run.root
