"""Training and extraction speed of ncood's engine, against a plain torchvision DataLoader loop.

    .venv/bin/python benchmarks/bench_training.py [--device auto] [--widths 8 64]
        [--train-images 2048] [--batch 128] [--workers 2] [--repeats 2]
        [--extract-images 50000] [--extract-width 8] [--fair-baseline]

Everything runs in one process, on synthetic CIFAR-shaped data (uint8 32×32×3, 100 classes):

1. Training images/s, for each ResNet-18 width: ncood's loop (the whole set as one uint8
   tensor on the device, crop + flip as tensor ops, bf16 autocast + channels_last on CUDA, no
   host sync inside the epoch) against the plain loop of the TP: torchvision's CIFAR-style
   Dataset (HWC uint8 → PIL → RandomCrop(32, 4) → RandomHorizontalFlip → ToTensor →
   Normalize), a DataLoader with ``--workers`` processes (pinned memory on CUDA), fp32, and
   ``loss.item()`` each step. Same model, same batch, same SGD. ``--fair-baseline`` gives the
   baseline ncood's autocast and channels_last too, so the ratio isolates the data path.
   Best of ``--repeats`` timed passes over ``--train-images`` images, after a warm-up.
2. Extraction images/s and peak memory over ``--extract-images`` images: ncood's streamed,
   preallocated dump (rows written to the features file as they come) against the
   straightforward way (a DataLoader pass, features collected in lists, concatenated, then
   saved). Peak memory is the growth of the process's resident-set high-water mark (VmHWM,
   reset before each method) over its resident size when the method starts; the dataset is
   already in memory for both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")

from ncood.datasets import ImageSet, synthetic_set  # noqa: E402
from ncood.engine.accel import pick_device, setup_accel  # noqa: E402
from ncood.engine.batches import epoch_batches, plan_epoch  # noqa: E402
from ncood.engine.dump import dump_features, forward_batch_size  # noqa: E402
from ncood.engine.loop import train_epoch  # noqa: E402
from ncood.engine.presets import resolve_preset  # noqa: E402
from ncood.engine.resnet import ResNet18  # noqa: E402
from ncood.store.features import FeatureDump, Head, Split, load_features, save_features  # noqa: E402

CLASSES = 100


def memory_kib() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmHWM", "VmRSS")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values


def reset_peak() -> int:
    """Reset VmHWM to the current RSS (Linux); returns that RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return memory_kib()["VmRSS"]


class CifarStyleDataset(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR100's __getitem__: an HWC uint8 array, PIL, transforms."""

    def __init__(self, data_hwc: np.ndarray, targets: list[int], transform) -> None:
        self.data, self.targets, self.transform = data_hwc, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def baseline_loader(images: ImageSet, mean, std, batch: int, workers: int, train: bool, cuda: bool):
    import torchvision.transforms as T

    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    transform = T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])
    data_hwc = images.images.permute(0, 2, 3, 1).contiguous().numpy()
    dataset = CifarStyleDataset(data_hwc, images.labels.tolist(), transform)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=train,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=workers > 0,
    )


def fresh_model(width: int, device, channels_last: bool) -> tuple[ResNet18, torch.optim.SGD]:
    torch.manual_seed(0)
    model = ResNet18(CLASSES, width=width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    return model, optimizer


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ncood_training(data, width, batch, accel, repeats) -> float:
    device = accel.device
    model, optimizer = fresh_model(width, device, accel.channels_last)
    step_model = torch.compile(model) if accel.compile else model
    train = ImageSet(data.train.images.to(device), data.train.labels.to(device))
    mean, std = torch.tensor(data.mean, device=device), torch.tensor(data.std, device=device)

    def epoch(number: int, count: int):
        plan = plan_epoch(count, 0, number, 4, True, device)
        return epoch_batches(
            train.images, train.labels, plan, batch, 4, mean, std, channels_last=accel.channels_last
        )

    train_epoch(step_model, optimizer, epoch(0, min(len(train), 3 * batch)), accel)
    best = 0.0
    for repeat in range(repeats):
        synchronize(device)
        started = time.perf_counter()  # the epoch's input build included, as in training
        train_epoch(step_model, optimizer, epoch(repeat + 1, len(train)), accel)
        synchronize(device)
        best = max(best, len(train) / (time.perf_counter() - started))
    return best


def time_baseline_training(data, width, batch, workers, accel, fair, repeats) -> float:
    device = accel.device
    cuda = device.type == "cuda"
    channels_last = accel.channels_last and fair
    model, optimizer = fresh_model(width, device, channels_last)
    loader = baseline_loader(data.train, data.mean, data.std, batch, workers, True, cuda)

    def one_pass(limit: int | None = None) -> int:
        seen, running_loss = 0, 0.0
        model.train()
        for step, (x, y) in enumerate(loader):
            if limit is not None and step >= limit:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with accel.autocast() if fair else torch.autocast(device.type, enabled=False):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # what the plain loop does each step
            seen += x.shape[0]
        return seen

    one_pass(limit=3)  # warm-up: workers started, kernels chosen
    best = 0.0
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        seen = one_pass()
        synchronize(device)
        best = max(best, seen / (time.perf_counter() - started))
    return best


def ncood_extraction(model, images: ImageSet, data, accel, path: Path) -> tuple[float, float]:
    mean = torch.tensor(data.mean, device=accel.device)
    std = torch.tensor(data.std, device=accel.device)
    base = reset_peak()
    started = time.perf_counter()
    dump_features(path, model, {"train": images, "test": data.test}, mean, std, accel)
    seconds = time.perf_counter() - started
    return (len(images) + len(data.test)) / seconds, (memory_kib()["VmHWM"] - base) / 1024


@torch.no_grad()
def baseline_extraction(model, images, data, workers, accel, path: Path) -> tuple[float, float]:
    """The straightforward way: collect every batch's outputs, concatenate, save."""
    cuda = accel.device.type == "cuda"
    base = reset_peak()
    started = time.perf_counter()
    model.eval()
    splits = {}
    for name, split in (("train", images), ("test", data.test)):
        features, logits, labels = [], [], []
        batch = forward_batch_size(accel.device)  # the same batch as ncood's
        for x, y in baseline_loader(split, data.mean, data.std, batch, workers, False, cuda):
            feats, _ = model.forward_features(x.to(accel.device))
            features.append(feats.float().cpu().numpy())
            logits.append(model.fc(feats).float().cpu().numpy())
            labels.append(y.numpy())
        splits[name] = Split(
            np.concatenate(features), np.concatenate(logits), np.concatenate(labels)
        )
    head = Head(
        model.fc.weight.detach().float().cpu().numpy(), model.fc.bias.detach().float().cpu().numpy()
    )
    save_features(path, FeatureDump(splits["train"], splits["test"], {}, head))
    seconds = time.perf_counter() - started
    return (len(images) + len(data.test)) / seconds, (memory_kib()["VmHWM"] - base) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--train-images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--extract-images", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--extract-width", type=int, default=8)
    parser.add_argument("--fair-baseline", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--probe", choices=["ncood", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        run_probe(args)
        return

    config = resolve_preset("tp-200", device=args.device, compile=args.compile)
    device = pick_device(config.device)
    accel = setup_accel(config, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device {device} ({name or platform.machine()}), {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, settings "
        f"{accel.describe()}, baseline {'with the same settings' if args.fair_baseline else 'fp32'}"
    )

    data = synthetic_set(args.train_images, 1000, num_classes=CLASSES)
    print(f"\n1. training, {args.train_images} images, batch {args.batch}, best of {args.repeats}")
    for width in args.widths:
        ours = time_ncood_training(data, width, args.batch, accel, args.repeats)
        theirs = time_baseline_training(
            data, width, args.batch, args.workers, accel, args.fair_baseline, args.repeats
        )
        print(
            f"   width {width:3d}: ncood {ours:8.1f} images/s   DataLoader({args.workers} workers) "
            f"{theirs:8.1f} images/s   ratio {ours / theirs:5.2f}×"
        )

    model, _ = fresh_model(args.extract_width, device, accel.channels_last)
    with tempfile.TemporaryDirectory() as folder:
        ours_path, theirs_path = (
            Path(folder) / "ncood.safetensors",
            Path(folder) / "plain.safetensors",
        )
        warm = synthetic_set(512, 256, num_classes=CLASSES)  # both methods' pools and caches
        ncood_extraction(model, warm.train, warm, accel, ours_path)
        baseline_extraction(model, warm.train, warm, args.workers, accel, theirs_path)
        for count in args.extract_images:
            big = synthetic_set(count, 1000, num_classes=CLASSES)
            print(f"\n2. extraction, {count} + 1000 images, width {args.extract_width}")
            speed, _ = ncood_extraction(model, big.train, big, accel, ours_path)
            base_speed, _ = baseline_extraction(
                model, big.train, big, args.workers, accel, theirs_path
            )
            ours_dump, theirs_dump = load_features(ours_path), load_features(theirs_path)
            gap = float(np.abs(ours_dump.train.features - theirs_dump.train.features).max())
            del big, ours_dump, theirs_dump
            peaks = {method: probe_memory(method, count, args) for method in ("ncood", "plain")}
            print(
                f"   ncood streamed      {speed:8.1f} images/s   peak memory "
                f"+{peaks['ncood']:7.1f} MiB"
            )
            print(
                f"   collect-then-save   {base_speed:8.1f} images/s   peak memory "
                f"+{peaks['plain']:7.1f} MiB   ratio {speed / base_speed:5.2f}×"
            )
            print(f"   same features: max |difference| {gap:.2e}")
    print(
        f"\n   output rows: {4 * (model.feature_dim + CLASSES)} bytes/image at width "
        f"{args.extract_width}; at width 64 (512-d features, 100 classes) the TP's 86,032 images "
        f"(50k train, 10k test, 26,032 SVHN) make {86_032 * 4 * (512 + CLASSES) / 2**20:.0f} MiB "
        f"of rows, which collect-then-save holds in memory and ncood streams to the file"
    )


def probe_memory(method: str, count: int, args) -> float:
    """Peak memory of one extraction, in a fresh process whose allocator returns freed buffers
    to the system at once (glibc's mmap threshold fixed at 128 KiB), so the high-water mark
    measures what the method keeps alive, not the allocator's slack."""
    command = [
        sys.executable,
        __file__,
        "--probe",
        method,
        "--extract-images",
        str(count),
        "--extract-width",
        str(args.extract_width),
        "--workers",
        str(args.workers),
        "--device",
        args.device,
    ]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"])


def run_probe(args) -> None:
    config = resolve_preset("tp-200", device=args.device)
    accel = setup_accel(config, pick_device(config.device))
    model, _ = fresh_model(args.extract_width, accel.device, accel.channels_last)
    big = synthetic_set(args.extract_images[0], 1000, num_classes=CLASSES)
    warm = synthetic_set(512, 256, num_classes=CLASSES)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "features.safetensors"
        if args.probe == "ncood":
            ncood_extraction(model, warm.train, warm, accel, path)
            _, peak = ncood_extraction(model, big.train, big, accel, path)
        else:
            baseline_extraction(model, warm.train, warm, args.workers, accel, path)
            _, peak = baseline_extraction(model, big.train, big, args.workers, accel, path)
    print(json.dumps({"peak_mib": peak}))


if __name__ == "__main__":
    main()
