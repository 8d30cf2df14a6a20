"""``ncood extract``'s pass over the data against a plain ``torch.no_grad()`` loop, same loader.

    .venv/bin/python benchmarks/bench_extract.py [--device auto] [--images 2048]
        [--batch 128] [--repeats 6] [--models torchvision:resnet18@32 resnet18-cifar@32]

Both methods iterate the very same batches (ncood's source over a synthetic uint8 CIFAR-shaped
set, resized and normalized on the device) through the same model in eval mode:

* baseline: ``with torch.no_grad(): for x, y in batches: logits.append(model(x).cpu())``;
* ncood: :func:`ncood.extraction.stream.extract_features`, the function ``ncood extract`` runs
  per checkpoint: forward pre-hook on the head, the affine check on the first batch, features
  and logits copied to the host and streamed into a features file (page cache; no fsync
  difference matters at this size, the file is renamed into place like every ncood write).

A model is ``NAME`` or ``NAME@SIZE`` (input size in pixels). Each method runs once to warm up,
then ``--repeats`` timed pairs (baseline and ncood back to back, alternating which goes first).
On a shared machine the load drifts between passes, so the figure of merit is the **median of
the per-pair ratios** (ncood time / baseline time: both passes of a pair see about the same
load); the ratio of the best passes is printed too. The target is ncood ≤ 1.10× the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")

from ncood.datasets import synthetic_set  # noqa: E402
from ncood.engine.accel import pick_device  # noqa: E402
from ncood.extraction.inputs import from_image_set  # noqa: E402
from ncood.extraction.preprocess import Preprocessing  # noqa: E402
from ncood.extraction.stream import extract_features  # noqa: E402
from ncood.models.capture import choose_head  # noqa: E402
from ncood.models.registry import create_model  # noqa: E402

CLASSES = 10
TARGET = 1.10


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline_pass(model, source, device) -> float:
    start = time.perf_counter()
    outputs = []
    with torch.no_grad():
        for inputs, _labels in source.batches(device):
            outputs.append(model(inputs).cpu())
    synchronize(device)
    torch.cat(outputs)
    return time.perf_counter() - start


def ncood_pass(model, source, device, folder: Path) -> float:
    choice = choose_head(model)
    start = time.perf_counter()
    extract_features(folder / "features.safetensors", model, choice, {"train": source}, device)
    synchronize(device)
    return time.perf_counter() - start


def measure(spec: str, images: int, batch: int, repeats: int, device) -> dict:
    name, _, size = spec.partition("@")
    size = int(size) if size else None
    torch.manual_seed(0)
    model = create_model(name, CLASSES).to(device).eval()
    data = synthetic_set(images, 1, num_classes=CLASSES)
    preprocess = Preprocessing(size, "dataset", data.mean, data.std)
    source = from_image_set(data.train.to(device), preprocess, batch)
    times: dict[str, list[float]] = {"baseline": [], "ncood": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        baseline_pass(model, source, device)  # warm-up (allocator, cudnn, page cache)
        ncood_pass(model, source, device, folder)
        for repeat in range(repeats):
            order = ("baseline", "ncood") if repeat % 2 == 0 else ("ncood", "baseline")
            for method in order:
                if method == "baseline":
                    times[method].append(baseline_pass(model, source, device))
                else:
                    times[method].append(ncood_pass(model, source, device, folder))
    best = {method: min(values) for method, values in times.items()}
    pairs = sorted(n / b for n, b in zip(times["ncood"], times["baseline"], strict=True))
    ratio = statistics.median(pairs)
    return {
        "model": name,
        "image_size": size or 32,
        "images": images,
        "batch": batch,
        "baseline_s": round(best["baseline"], 3),
        "ncood_s": round(best["ncood"], 3),
        "baseline_images_per_s": round(images / best["baseline"], 1),
        "ncood_images_per_s": round(images / best["ncood"], 1),
        "ratio": round(ratio, 3),
        "pair_ratios": [round(r, 3) for r in pairs],
        "best_ratio": round(best["ncood"] / best["baseline"], 3),
        "within_target": ratio <= TARGET,
        "all_times_s": {m: [round(t, 3) for t in v] for m, v in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument(
        "--models", nargs="+", default=["torchvision:resnet18@32", "resnet18-cifar@32"]
    )
    args = parser.parse_args()
    device = pick_device(args.device)
    print(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "device": str(device),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "load_average": os.getloadavg(),
            }
        )
    )
    for spec in args.models:
        print(json.dumps(measure(spec, args.images, args.batch, args.repeats, device)), flush=True)


if __name__ == "__main__":
    main()
