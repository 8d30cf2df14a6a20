"""``ncood extract`` on a folder of JPEGs against a plain torchvision loop, and its peak memory.

    .venv/bin/python benchmarks/bench_extract_files.py [--images 10000] [--model
        bench_extract_files:tiny] [--batch 64] [--workers N] [--repeats 2] [--skip-rss]

1. A folder of ``--images`` JPEGs of random sizes (each side 256–500 px, smooth random content
   so that they compress and decode like photographs), in ten class folders, is generated once
   and cached under ``$TMPDIR/ncood-bench-files`` (a second folder of twice as many for the
   memory check holds the first one's files as links, plus as many new ones).
2. In one process, after a warm-up of each on 100 images, ``--repeats`` pairs in ABBA order:
   ncood's ``run_extract`` (``ncood extract --dataset folder:PATH``, everything it does:
   listing, digests, the features file) against
   torchvision's ``ImageFolder`` + ``DataLoader`` + ``torch.no_grad()`` model loop, with the
   same workers, batch size, model and transforms (Resize 256, CenterCrop 224, ToTensor,
   Normalize). Printed: images/s of both, from the sums of their passes, and the ratio
   ncood / torchvision (target ≥ 0.95).
3. Peak RSS of ``ncood extract`` in subprocesses at N and 2N images: the main process over
   its life and during the extraction alone (the high-water mark reset once the imports are
   done), and the largest loader worker (``ru_maxrss``); target: equal within 10 %.

The default model (:func:`tiny`: one strided convolution, a pooling and the head, given to
``ncood extract`` as ``package.module:callable``) costs next to nothing, so that the loader
(decode + resize + crop), the part this measures, dominates; ``--model torchvision:resnet18``
measures a real network (on a CPU, the network then dominates both loops alike).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")

import numpy as np  # noqa: E402
import torch  # noqa: E402

CLASSES = 10
VAL_PER_CLASS = 2
TARGET_RATIO, TARGET_RSS = 0.95, 0.10


def tiny(num_classes: int = CLASSES) -> torch.nn.Module:
    """A near-free classifier: the loader is what is measured."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 8, stride=8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, num_classes),
    )


def cache_root() -> Path:
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "ncood-bench-files"


def write_jpeg(job: tuple[Path, int]) -> None:
    path, seed = job
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = (int(v) for v in rng.integers(256, 501, 2))
    coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=88)


def make_folder(images: int) -> Path:
    """``train/c0..c9`` with ``images`` JPEGs and ``val/`` with 20, cached; a folder of twice
    as many links the first one's files."""
    root = cache_root() / f"n{images}"
    done = root / ".complete"
    if done.exists():
        return root
    jobs: list[tuple[Path, int]] = []
    half = cache_root() / f"n{images // 2}" if images % 2 == 0 else None
    reuse = half is not None and (half / ".complete").exists()
    for index in range(images):
        folder = root / "train" / f"c{index % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index:06d}.JPEG"
        if path.exists():
            continue
        source = half / "train" / f"c{index % CLASSES}" / f"{index:06d}.JPEG" if reuse else None
        if source is not None and source.exists():
            path.symlink_to(source)
        else:
            jobs.append((path, index))
    for index in range(CLASSES * VAL_PER_CLASS):
        folder = root / "val" / f"c{index % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"val{index:04d}.JPEG", 10**7 + index))
    start = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        pool.map(write_jpeg, jobs, chunksize=64)
    print(f"generated {len(jobs)} JPEGs in {root} ({time.perf_counter() - start:.0f} s)")
    done.touch()
    return root


def save_weights(model_name: str, where: Path) -> Path:
    from ncood.models.registry import create_model

    torch.manual_seed(0)
    path = where / "weights.pth"
    torch.save(create_model(model_name, CLASSES).state_dict(), path)
    return path


def ncood_pass(model_name: str, weights: Path, folder: Path, out: Path, args) -> float:
    from ncood.extraction.named import ExtractRequest, run_extract

    request = ExtractRequest(
        model=model_name,
        weights=[weights],
        dataset=f"folder:{folder}",
        out=out,
        batch_size=args.batch,
        workers=args.workers,
        device="cpu",
        force=True,
    )
    start = time.perf_counter()
    run_extract(request, show_progress=False)
    return time.perf_counter() - start


def torchvision_pass(model, folder: Path, args) -> float:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    transform = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    start = time.perf_counter()
    outputs = []
    for split in ("train", "val"):
        loader = torch.utils.data.DataLoader(
            ImageFolder(str(folder / split), transform=transform),
            batch_size=args.batch,
            num_workers=args.workers,
        )
        with torch.no_grad():
            for inputs, _labels in loader:
                outputs.append(model(inputs))
    torch.cat(outputs)
    return time.perf_counter() - start


def throughput(folder: Path, count: int, args) -> dict:
    from ncood.models.registry import create_model

    times: dict[str, list[float]] = {"ncood": [], "torchvision": []}
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_weights(args.model, Path(tmp))
        model = create_model(args.model, CLASSES)
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.eval()
        warm = make_folder(100)  # imports, first loads: outside the timed passes
        ncood_pass(args.model, weights, warm, Path(tmp) / "run", args)
        torchvision_pass(model, warm, args)
        for repeat in range(args.repeats):
            order = ("ncood", "torchvision") if repeat % 2 == 0 else ("torchvision", "ncood")
            for method in order:
                if method == "ncood":
                    seconds = ncood_pass(args.model, weights, folder, Path(tmp) / "run", args)
                else:
                    seconds = torchvision_pass(model, folder, args)
                times[method].append(seconds)
                print(f"  {method}: {seconds:.1f} s", flush=True)
    rates = {m: count * len(t) / sum(t) for m, t in times.items()}
    ratio = rates["ncood"] / rates["torchvision"]
    return {
        "images": count,
        "ncood_images_per_s": round(rates["ncood"], 1),
        "torchvision_images_per_s": round(rates["torchvision"], 1),
        "ratio": round(ratio, 3),
        "within_target": ratio >= TARGET_RATIO,
        "times_s": {m: [round(v, 1) for v in t] for m, t in times.items()},
    }


def status_mib(field: str) -> float | None:
    """A ``/proc/self/status`` figure (VmRSS, VmHWM) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def child_extract(folder: Path, args) -> None:
    """One ``ncood extract`` in this process; prints its peak RSS and its workers'.

    ``main_mib`` is the process's peak over its life (imports included); ``extract_peak_mib``
    the peak during the extraction alone (the high-water mark reset after the imports, through
    ``/proc/self/clear_refs``), against ``before_mib``, the RSS just before it."""
    import ncood.extraction.named  # noqa: F401  the imports, before the mark is reset
    from ncood.models.registry import create_model

    create_model(args.model, CLASSES)
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_weights(args.model, Path(tmp))
        before = status_mib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            reset = True
        except OSError:
            reset = False
        seconds = ncood_pass(args.model, weights, folder, Path(tmp) / "run", args)
        during = status_mib("VmHWM") if reset else None
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures = {"main_mib": own, "before_mib": before, "extract_peak_mib": during}
    figures = {k: round(v, 1) if v is not None else None for k, v in figures.items()}
    print(json.dumps({**figures, "worker_mib": round(workers, 1), "s": round(seconds, 1)}))


def peak_rss(folder: Path, args) -> dict:
    command = [sys.executable, __file__, "--child", str(folder), "--model", args.model]
    command += ["--batch", str(args.batch), "--workers", str(args.workers)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--model", default="bench_extract_files:tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child_extract(args.child, args)
        return
    print(
        json.dumps(
            {
                "machine": platform.platform(),
                "processor": platform.processor(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "workers": args.workers,
                "batch": args.batch,
                "model": args.model,
                "load_average": os.getloadavg(),
            }
        ),
        flush=True,
    )
    small = make_folder(args.images)
    count = args.images + CLASSES * VAL_PER_CLASS
    print(json.dumps({"throughput": throughput(small, count, args)}), flush=True)
    if not args.skip_rss:
        large = make_folder(2 * args.images)
        rss = {n: peak_rss(f, args) for n, f in ((args.images, small), (2 * args.images, large))}
        key = "extract_peak_mib" if all(r["extract_peak_mib"] for r in rss.values()) else "main_mib"
        first, second = (rss[n][key] for n in sorted(rss))
        growth = second / first - 1
        print(
            json.dumps(
                {
                    "peak_rss": {str(n): v for n, v in rss.items()},
                    "compared": key,
                    "growth": round(growth, 3),
                    "within_target": abs(growth) <= TARGET_RSS,
                }
            ),
            flush=True,
        )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
