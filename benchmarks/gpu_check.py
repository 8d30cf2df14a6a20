"""The GPU check: one command that proves on a GPU what the CPU suite cannot see.

    python3 benchmarks/gpu_check.py [--out gpu_check.json] [--budget 290]   # on a GPU machine
    python3 benchmarks/gpu_check.py --dry-run                              # CPU, tiny sizes (CI)

No network, synthetic CIFAR-shaped uint8 data (50,000 train / 10,000 test / 26,032 OOD, 100
classes), whatever torch the machine has; only torch, numpy and ncood's source tree are needed
(pluggy and safetensors are stood in for when absent: gpu_check_shims.py). Every figure goes
into the JSON as soon as it is measured, so a run cut short still reports. Phases, in order:

 1. versions            python, torch, CUDA, cuDNN, the card and its compute capability
 2. pipeline_parity     the epoch's input built on the GPU equals the CPU's, bit for bit
 3. precision_steps     4 steps CPU fp32 vs GPU fp32 vs GPU bf16: losses and weight differences
 4. host_waits          synchronising calls over 16 steps (torch.cuda.set_sync_debug_mode)
 5. loop                ncood's loop, width 64, 50k images: warm-up + 2 timed epochs (CUDA
                        events), evaluation time, peak GPU memory
 6. profile             kernels per step and GPU busy fraction over 20 steps (profiler)
 7. extraction          86,032 images in fp32: images/s, and the error against an eager forward
 7b. extract_command    `ncood extract` (run_extract) of a torchvision ResNet-18 by weights name
                        (torchvision:ResNet18_Weights.IMAGENET1K_V1, random weights pre-placed
                        in a private torch hub cache) on generated 1000-class images at 224 px:
                        images/s of the whole command, features against an eager forward
 8. baselines           the TP's DataLoader loop and a strong DataLoader loop (8 workers, bf16,
                        channels_last), in the same run: images/s and ncood's ratio to them
 9. sharing             two training processes on one GPU: combined images/s
10. end_to_end          train() for 3 epochs --deterministic; a second run killed after epoch
                        2 and resumed: weights and features compared bit for bit
11. compile             torch.compile static and reduce-overhead: compile time, graphs, graph
                        breaks, images/s
12. model_scorers       odin, mcd, gram, rankfeat through the network on the device: images/s
                        in fp32 and bf16, scores against the same scorer on the CPU, mcd's
                        CUDA RNG state untouched

``--dry-run`` runs every phase on the CPU at tiny sizes (what needs CUDA says so in the JSON),
in well under two minutes, so that CI keeps the script working where no GPU is lent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")

from gpu_check_shims import install_missing, read_safetensors  # noqa: E402

SHIMMED = install_missing()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ncood.datasets import normalize, ood_set, synthetic_set  # noqa: E402
from ncood.engine.accel import Accel, compile_model, exact_fp32, set_tf32  # noqa: E402
from ncood.engine.batches import epoch_batches, plan_epoch  # noqa: E402
from ncood.engine.dump import dump_features  # noqa: E402
from ncood.engine.loop import evaluate, train_steps  # noqa: E402
from ncood.engine.resnet import ResNet18  # noqa: E402

SIZES = {
    "gpu": {
        "train": 50_000,
        "test": 10_000,
        "ood": 26_032,
        "classes": 100,
        "width": 64,
        "batch": 128,
        "baseline_steps": 100,
        "tp_workers": 2,
        "strong_workers": 8,
        "e2e_epochs": 3,
        "extract_limit": 4096,  # images per split of the extract_command phase
        "extract_size": 224,
    },
    "dry": {  # 200 = 3 × 64 + 8: a short last batch, like CIFAR's 50,000 = 390 × 128 + 80
        "train": 200,
        "test": 32,
        "ood": 48,
        "classes": 10,
        "width": 4,
        "batch": 64,
        "baseline_steps": 3,
        "tp_workers": 1,
        "strong_workers": 1,
        "e2e_epochs": 3,
        "extract_limit": 24,
        "extract_size": 32,
    },
}
DATASET, OOD = "gpu-check", "gpu-check-ood"
IMAGENET_SHAPED = "gpu-check-1k"  # 1000 classes: what ImageNet weights need


class Report:
    """The JSON of every figure, rewritten (atomically) after each one."""

    def __init__(self, path: Path, budget_s: float) -> None:
        self.path, self.budget_s, self.started = path, budget_s, time.monotonic()
        self.data: dict = {"phases": {}, "shimmed": SHIMMED, "complete": False}
        self.write()

    def put(self, phase: str, **figures) -> None:
        self.data["phases"].setdefault(phase, {}).update(figures)
        for key, value in figures.items():
            print(f"[{phase}] {key}: {value}", flush=True)
        self.write()

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path)

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    @contextlib.contextmanager
    def phase(self, name: str, needs_s: float = 0.0):
        if self.left_s() < needs_s:
            self.put(name, status=f"skipped: {self.left_s():.0f} s left of the budget")
            yield False
            return
        started = time.monotonic()
        self.put(name, status="running")
        try:
            yield True
            self.put(name, status="ok")
        except Exception as exc:  # one broken phase must not hide the others' figures
            self.put(
                name,
                status="error",
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc()[-2000:],
            )
        finally:
            self.put(name, seconds=round(time.monotonic() - started, 2))


# --- Shared helpers. ----------------------------------------------------------------------------


def ood_images(sizes: dict, context=None, ind=None):
    """The synthetic OOD set: uniform uint8 noise."""
    generator = torch.Generator().manual_seed(9)
    images = torch.randint(
        0, 256, (sizes["ood"], 3, 32, 32), dtype=torch.uint8, generator=generator
    )
    return ood_set(images)


def register_data(sizes: dict) -> None:
    """The synthetic sets, by name, so train() can load them like any dataset. They stand in
    for the registries the dataset plugins fill: where pluggy is stood in for, no plugin runs."""
    from ncood.datasets import loading
    from ncood.host.registry import Registry

    in_distribution: Registry = Registry("dataset")
    in_distribution.add(
        DATASET,
        lambda context: synthetic_set(sizes["train"], sizes["test"], num_classes=sizes["classes"]),
    )
    in_distribution.add(
        IMAGENET_SHAPED,
        lambda context: synthetic_set(sizes["train"], sizes["test"], num_classes=1000),
    )
    out_of_distribution: Registry = Registry("OOD dataset")
    out_of_distribution.add(OOD, lambda context, ind: ood_images(sizes))
    loading.in_distribution = lambda: in_distribution
    loading.out_of_distribution = lambda: out_of_distribution


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """CUDA events on a GPU (no host wait inside), perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self):
        sync(self.device)
        if self.device.type == "cuda":
            self.start = torch.cuda.Event(enable_timing=True)
            self.stop = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.stop.record()
            self.stop.synchronize()
            self.seconds = self.start.elapsed_time(self.stop) / 1000
        else:
            self.seconds = time.perf_counter() - self.t0


class Setup:
    """One model, optimizer and data on the device, as ncood's engine builds them."""

    def __init__(self, sizes, device, bf16: bool, channels_last: bool, seed: int = 0) -> None:
        self.device, self.sizes = device, sizes
        self.accel = Accel(device, torch.bfloat16 if bf16 else None, channels_last, False)
        self.data = synthetic_set(sizes["train"], sizes["test"], num_classes=sizes["classes"])
        self.train = self.data.train.to(device)
        self.test = self.data.test.to(device)
        self.mean = torch.tensor(self.data.mean, device=device)
        self.std = torch.tensor(self.data.std, device=device)
        torch.manual_seed(seed)
        self.model = ResNet18(sizes["classes"], width=sizes["width"]).to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        fused = {"fused": True} if device.type == "cuda" else {}
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, **fused
        )

    def epoch(self, epoch: int, count: int | None = None):
        plan = plan_epoch(len(self.train), 0, epoch, 4, True, self.device)
        if count is not None:
            plan = plan.head(count)
        return epoch_batches(
            self.train.images,
            self.train.labels,
            plan,
            self.sizes["batch"],
            4,
            self.mean,
            self.std,
            channels_last=self.accel.channels_last,
        )


def cuda_device(dry: bool) -> torch.device:
    if dry or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", 0)


def native_bf16(device: torch.device) -> bool:
    if device.type != "cuda":
        return True  # CPU autocast, for the dry run
    return torch.cuda.get_device_capability(device) >= (8, 0)


# --- The phases. --------------------------------------------------------------------------------


def phase_versions(report: Report, device: torch.device) -> None:
    figures = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "cuda_available": torch.cuda.is_available(),
    }
    if device.type == "cuda":
        figures |= {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "card": torch.cuda.get_device_name(device),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "gpu_count": torch.cuda.device_count(),
        }
    report.put("versions", **figures)


def phase_pipeline_parity(report: Report, sizes, device) -> None:
    data = synthetic_set(sizes["train"], 8, num_classes=sizes["classes"])
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    plan = plan_epoch(len(data.train), 0, 1, 4, True, torch.device("cpu"))
    on_cpu = epoch_batches(
        data.train.images, data.train.labels, plan, sizes["batch"], 4, mean, std, channels_last=True
    )
    moved = type(plan)(*(t.to(device) for t in (plan.order, plan.dy, plan.dx, plan.flips)))
    on_device = epoch_batches(
        data.train.images.to(device),
        data.train.labels.to(device),
        moved,
        sizes["batch"],
        4,
        mean.to(device),
        std.to(device),
        channels_last=True,
    )
    same = torch.equal(on_cpu.inputs, on_device.inputs.cpu())
    report.put(
        "pipeline_parity",
        compared=f"cpu vs {device}",
        bitwise_equal=same,
        max_abs_difference=float((on_cpu.inputs - on_device.inputs.cpu()).abs().max()),
        labels_equal=torch.equal(on_cpu.labels, on_device.labels.cpu()),
    )


def phase_precision_steps(report: Report, sizes, device) -> None:
    small = dict(sizes, train=4 * sizes["batch"])
    runs = {"cpu_fp32": (torch.device("cpu"), False), f"{device.type}_fp32": (device, False)}
    if native_bf16(device):
        runs[f"{device.type}_bf16"] = (device, True)
    weights, losses = {}, {}
    for name, (where, bf16) in runs.items():
        setup = Setup(small, where, bf16, channels_last=where.type == "cuda")
        per_step = []
        for inputs, labels, _ in setup.epoch(1):
            with setup.accel.autocast():
                logits = setup.model(inputs)
            loss = F.cross_entropy(logits.float(), labels)
            setup.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            setup.optimizer.step()
            per_step.append(round(float(loss.detach()), 6))
        losses[name] = per_step
        weights[name] = torch.cat(
            [p.detach().float().cpu().flatten() for p in setup.model.parameters()]
        )
    reference = weights["cpu_fp32"]
    report.put(
        "precision_steps",
        losses=losses,
        max_weight_difference_vs_cpu_fp32={
            name: float((w - reference).abs().max()) for name, w in weights.items()
        },
    )


def _loop_setup(sizes, device) -> Setup:
    return Setup(
        sizes,
        device,
        bf16=native_bf16(device) and device.type == "cuda",
        channels_last=device.type == "cuda",
    )


def phase_host_waits(report: Report, sizes, device) -> None:
    setup = _loop_setup(sizes, device)
    train_steps(setup.model, setup.optimizer, setup.epoch(0, 2 * sizes["batch"]), setup.accel)
    batches = setup.epoch(1, 16 * sizes["batch"])
    if device.type == "cuda":
        sync(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                batches = setup.epoch(2, 16 * sizes["batch"])
                train_steps(setup.model, setup.optimizer, batches, setup.accel)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        waits = [str(w.message)[:200] for w in caught if "synchroniz" in str(w.message)]
        report.put(
            "host_waits",
            method="torch.cuda.set_sync_debug_mode",
            steps=len(batches),
            synchronising_calls=len(waits),
            first=waits[:3],
        )
    else:
        from torch.utils._python_dispatch import TorchDispatchMode

        class Reads(TorchDispatchMode):
            seen: list = []

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func.overloadpacket.__name__ in ("_local_scalar_dense", "nonzero", "item"):
                    self.seen.append(func.overloadpacket.__name__)
                return func(*args, **(kwargs or {}))

        with Reads() as reads:
            train_steps(setup.model, setup.optimizer, batches, setup.accel)
        report.put(
            "host_waits",
            method="dispatch mode (CPU: no CUDA sync debug)",
            steps=len(batches),
            synchronising_calls=len(reads.seen),
        )


def phase_loop(report: Report, sizes, device) -> float:
    setup = _loop_setup(sizes, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_steps(setup.model, setup.optimizer, setup.epoch(0), setup.accel)  # warm-up epoch
    epochs = []
    for epoch in (1, 2):
        with Timer(device) as timer:  # the epoch's input build included, as in training
            train_steps(setup.model, setup.optimizer, setup.epoch(epoch), setup.accel)
        epochs.append(timer.seconds)
    with Timer(device) as eval_timer:
        evaluate(setup.model, setup.test, setup.mean, setup.std, setup.accel)
    images_per_s = sizes["train"] / min(epochs)
    figures = {
        "width": sizes["width"],
        "images": sizes["train"],
        "batch": sizes["batch"],
        "precision": "bf16" if setup.accel.autocast_dtype else "fp32",
        "epoch_seconds": [round(s, 4) for s in epochs],
        "images_per_s": round(images_per_s),
        "eval_seconds": round(eval_timer.seconds, 4),
    }
    if device.type == "cuda":
        figures["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    report.put("loop", **figures)
    return images_per_s


def phase_profile(report: Report, sizes, device) -> None:
    from torch.profiler import ProfilerActivity, profile

    setup = _loop_setup(sizes, device)
    train_steps(setup.model, setup.optimizer, setup.epoch(0, 3 * sizes["batch"]), setup.accel)
    batches = setup.epoch(1, 20 * sizes["batch"])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=activities) as prof:
        train_steps(setup.model, setup.optimizer, batches, setup.accel)
        sync(device)
    events = list(prof.events())
    if device.type == "cuda":
        kernels = [e for e in events if str(getattr(e, "device_type", "")).endswith("CUDA")]
        starts = [e.time_range.start for e in kernels]
        ends = [e.time_range.end for e in kernels]
        busy = sum(e.time_range.elapsed_us() for e in kernels)
        span = (max(ends) - min(starts)) if kernels else 0
        report.put(
            "profile",
            steps=len(batches),
            kernels_per_step=len(kernels) / len(batches),
            gpu_busy_fraction=round(busy / span, 3) if span else None,
        )
    else:
        ops = [e for e in events if e.name.startswith("aten::")]
        report.put(
            "profile",
            steps=len(batches),
            aten_ops_per_step=len(ops) / len(batches),
            note="CPU dry run: operator count, no GPU kernels",
        )


def phase_extraction(report: Report, sizes, device, workdir: Path) -> None:
    setup = _loop_setup(sizes, device)
    setup.model.eval()
    ood = ood_images(sizes).to(device)
    splits = {"train": setup.train, "test": setup.test, "ood/synthetic": ood}
    total = sum(len(s) for s in splits.values())
    path = workdir / "features.safetensors"
    dump_features(
        path, setup.model, {"test": setup.test}, setup.mean, setup.std, setup.accel
    )  # warm-up: cuDNN picks its kernels
    with Timer(device) as timer:
        dump_features(path, setup.model, splits, setup.mean, setup.std, setup.accel)
    arrays, _ = read_safetensors(path)
    with torch.no_grad(), exact_fp32():
        check = setup.test.images[:256]
        expected, _ = setup.model.forward_features(normalize(check, setup.mean, setup.std))
    expected = expected.float().cpu().numpy()
    found = arrays["test/features"][: len(expected)]
    report.put(
        "extraction",
        images=total,
        seconds=round(timer.seconds, 3),
        images_per_s=round(total / timer.seconds),
        dtype=str(arrays["test/features"].dtype),
        max_rel_error_vs_eager_fp32=float(np.abs(found - expected).max() / np.abs(expected).max()),
    )


def phase_extract_command(report: Report, sizes, device, workdir: Path) -> None:
    """`ncood extract` as a user runs it, by weights name, timed whole (data, model, weights
    file, features, manifest). Needs torchvision (the phase says so where it is absent)."""
    try:
        import torchvision
    except ImportError:
        report.put("extract_command", note="torchvision absent: no torchvision:* weights here")
        return
    from unittest import mock

    from ncood.extraction.named import ExtractRequest, run_extract
    from ncood.host.model_registry import ModelRegistry
    from ncood.models import registry as models_registry

    cache = workdir / "torch-home"
    name = "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    with mock.patch.dict(os.environ, {"TORCH_HOME": str(cache)}):
        from ncood.models.named_weights import named_weights

        target = named_weights(name).files[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=1000).eval()
        torch.save(model.state_dict(), target)  # random weights where torch hub keeps them
        models = ModelRegistry()  # the built-in plugins' torchvision:* (no plugin runs here)
        models.register(
            "torchvision:*",
            lambda variant, num_classes: getattr(torchvision.models, variant)(
                num_classes=num_classes
            ),
        )

        def extract(limit: int, out: Path):
            request = ExtractRequest(
                weights=[Path(name)],
                dataset=IMAGENET_SHAPED,
                ood=[OOD],
                out=out,
                image_size=sizes["extract_size"],
                limit=limit,
                batch_size=sizes["batch"],
                device=str(device),
                download=False,
            )
            with mock.patch.object(models_registry, "model_registry", lambda: models):
                return run_extract(request, show_progress=False)

        extract(sizes["batch"], workdir / "extract-warmup")  # cuDNN picks its kernels
        sync(device)
        started = time.perf_counter()
        run = extract(sizes["extract_limit"], workdir / "extract")
        sync(device)
        seconds = time.perf_counter() - started
    manifest = run.manifest()
    images = manifest["dataset"]["train_size"] + manifest["dataset"]["test_size"]
    images += sum(manifest["dataset"]["ood"].values())
    arrays, _ = read_safetensors(run.features(1))
    from ncood.extraction.rerun import load_run_data

    data = load_run_data(run)  # the run's test images, in its order, preprocessed as it did
    count = min(8, len(data.splits["test"]))
    with torch.no_grad(), exact_fp32():
        expected = model(data.transform(data.splits["test"].images[:count])).numpy()
    found = arrays["test/logits"][:count]
    report.put(
        "extract_command",
        weights=name,
        images=images,
        image_size=sizes["extract_size"],
        seconds=round(seconds, 3),
        images_per_s=round(images / seconds),
        max_abs_logit_error_vs_eager_cpu=float(np.abs(found - expected).max()),
    )


def _model_scorer_classes() -> dict:
    """The built-in model-based scorers, loaded from their files (no install on the GPU box:
    the entry points that name them are absent there)."""
    import importlib.util

    found = {}

    class Collect:
        def __call__(self, name, factory, *args, **kwargs):
            found[name] = factory

    for name in ("odin", "mcd", "gram", "rankfeat"):
        path = ROOT / "plugins" / "scorers" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"gpu_check_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.register_scorers(register=Collect())
    return found


def _network_and_batches(model, device, images, mean, std, batch: int):
    from ncood.extraction.rerun import find_stages
    from ncood.host.network import Batches, Network

    def batches(name: str, data) -> Batches:
        def produce():
            for start in range(0, len(data), batch):
                chunk = data.images[start : start + batch].to(device)
                yield normalize(chunk, mean, std), data.labels[start : start + batch].to(device)

        return Batches(name, len(data), data.labels.cpu().numpy(), produce)

    sample = normalize(images["test"].images[:2].to(device), mean, std)
    network = Network(
        model, device, "fc", find_stages(model, "fc", sample), tuple(std.tolist()), "resnet18"
    )
    return network, {name: batches(name, data) for name, data in images.items()}


def phase_model_scorers(report: Report, sizes, device) -> None:
    setup = _loop_setup(sizes, device)
    model = setup.model.eval().to(memory_format=torch.contiguous_format)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    ood = ood_images(sizes)
    images = {"train": setup.data.train, "test": setup.data.test, "ood": ood}
    network, splits = _network_and_batches(
        model, device, images, setup.mean, setup.std, 512 if device.type == "cuda" else 64
    )
    classes = _model_scorer_classes()
    settings = {"mcd": {"samples": 8}}
    # 1,024 test images (about 10 a class): gram fits on them, on each device
    small = {"test": setup.data.test.subset(torch.arange(min(1024, len(setup.data.test))))}
    cpu_model = ResNet18(sizes["classes"], width=sizes["width"])
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    cpu_model.eval()
    for parameter in cpu_model.parameters():
        parameter.requires_grad_(False)
    cpu_net, cpu_splits = _network_and_batches(
        cpu_model, torch.device("cpu"), small, setup.mean.cpu(), setup.std.cpu(), 64
    )
    dev_net, dev_splits = _network_and_batches(model, device, small, setup.mean, setup.std, 64)
    for name, factory in classes.items():
        scorer = factory(**settings.get(name, {}))
        figures = {}
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and not native_bf16(device):
                figures["bf16"] = "skipped: no native bf16 here"
                continue
            context = (
                exact_fp32()
                if precision == "fp32"
                else torch.autocast(device.type, dtype=torch.bfloat16)
            )
            rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
            with context, Timer(device) as timer:
                scorer.fit(network, splits["train"])
                scores = [np.asarray(scorer.score(network, splits[s])) for s in ("test", "ood")]
            scored = len(splits["test"]) + len(splits["ood"])
            figures[precision] = {
                "seconds_fit_and_score": round(timer.seconds, 3),
                "scored_images_per_s": round(scored / timer.seconds),
                "finite": bool(all(np.isfinite(v).all() for v in scores)),
            }
            if rng is not None:
                figures[precision]["cuda_rng_untouched"] = bool(
                    torch.equal(rng, torch.cuda.get_rng_state(device))
                )
        with exact_fp32():
            scorer.fit(cpu_net, cpu_splits["test"])
            on_cpu = np.asarray(scorer.score(cpu_net, cpu_splits["test"]), dtype=np.float64)
            scorer.fit(dev_net, dev_splits["test"])
            on_device = np.asarray(scorer.score(dev_net, dev_splits["test"]), dtype=np.float64)
        scale = max(float(np.abs(on_cpu).max()), 1e-12)
        figures["max_rel_diff_device_vs_cpu_fp32"] = float(np.abs(on_device - on_cpu).max() / scale)
        report.put("model_scorers", **{name: figures})


def _tp_transform(mean, std):
    """The TP's per-image transforms (torchvision's when installed, the same ops otherwise)."""
    try:
        import torchvision.transforms as T

        return T.Compose(
            [
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(mean, std),
            ]
        ), "torchvision"
    except ImportError:
        mean_t, std_t = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

        def transform(image_hwc):
            x = torch.from_numpy(image_hwc).permute(2, 0, 1).float() / 255
            x = F.pad(x, (4, 4, 4, 4))
            dy, dx = np.random.randint(0, 9, size=2)
            x = x[:, dy : dy + 32, dx : dx + 32]
            if np.random.rand() < 0.5:
                x = x.flip(2)
            return (x - mean_t) / std_t

        return transform, "torch ops (no torchvision)"


class _HwcDataset(torch.utils.data.Dataset):
    def __init__(self, images_hwc, labels, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index]
        try:
            from PIL import Image

            image = Image.fromarray(image) if "Compose" in type(self.transform).__name__ else image
        except ImportError:
            pass
        return self.transform(image), self.labels[index]


def _dataloader_images_per_s(sizes, device, workers, strong: bool) -> tuple[float, str]:
    setup = Setup(
        sizes,
        device,
        bf16=strong and native_bf16(device) and device.type == "cuda",
        channels_last=strong and device.type == "cuda",
    )
    transform, how = _tp_transform(setup.data.mean, setup.data.std)
    images = setup.data.train.images.permute(0, 2, 3, 1).contiguous().numpy()
    dataset = _HwcDataset(images, setup.data.train.labels.tolist(), transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=sizes["batch"],
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        drop_last=True,
    )
    steps = sizes["baseline_steps"]

    def run(count):
        seen = 0
        for step, (x, y) in enumerate(loader):
            if step >= count:
                break
            x, y = x.to(device, non_blocking=strong), y.to(device, non_blocking=strong)
            if setup.accel.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with setup.accel.autocast():
                logits = setup.model(x)
            loss = F.cross_entropy(logits.float(), y)
            setup.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            setup.optimizer.step()
            if not strong:
                loss.item()  # the TP's running loss, every step
            seen += x.shape[0]
        return seen

    run(2)
    with Timer(device) as timer:
        seen = run(steps)
    return seen / timer.seconds, how


def phase_baselines(report: Report, sizes, device, ncood_images_per_s: float | None) -> None:
    tp, how = _dataloader_images_per_s(sizes, device, sizes["tp_workers"], strong=False)
    report.put(
        "baselines",
        tp_loop_images_per_s=round(tp),
        tp_workers=sizes["tp_workers"],
        tp_transforms=how,
    )
    strong, _ = _dataloader_images_per_s(sizes, device, sizes["strong_workers"], strong=True)
    report.put(
        "baselines", strong_loop_images_per_s=round(strong), strong_workers=sizes["strong_workers"]
    )
    if ncood_images_per_s:
        report.put(
            "baselines",
            ncood_vs_tp=round(ncood_images_per_s / tp, 2),
            ncood_vs_strong=round(ncood_images_per_s / strong, 2),
        )


def _worker(command: list[str], **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


def phase_sharing(report: Report, sizes, dry: bool) -> None:
    flag = ["--dry-run"] if dry else []
    workers = [_worker(["--worker", "share", *flag]) for _ in range(2)]
    results = []
    for process in workers:
        out, err = process.communicate(timeout=600)
        if process.returncode:
            raise RuntimeError(f"share worker failed: {err[-500:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    report.put(
        "sharing",
        processes=2,
        images_per_s_each=[round(r["images_per_s"]) for r in results],
        combined_images_per_s=round(sum(r["images_per_s"] for r in results)),
    )


def worker_share(sizes, device) -> None:
    setup = _loop_setup(sizes, device)
    train_steps(setup.model, setup.optimizer, setup.epoch(0, 4 * sizes["batch"]), setup.accel)
    with Timer(device) as timer:
        train_steps(setup.model, setup.optimizer, setup.epoch(1), setup.accel)
    print(json.dumps({"images_per_s": sizes["train"] / timer.seconds}))


def _state_epoch(run: Path) -> int:
    try:
        return json.loads((run / "state" / "state.json").read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def phase_end_to_end(report: Report, sizes, dry: bool, workdir: Path) -> None:
    flag = ["--dry-run"] if dry else []
    whole, cut = workdir / "whole", workdir / "cut"
    started = time.monotonic()
    done = _worker(["--worker", "train", "--run", str(whole), *flag])
    _, err = done.communicate(timeout=900)
    if done.returncode:
        raise RuntimeError(f"training failed: {err[-800:]}")
    report.put("end_to_end", uninterrupted_seconds=round(time.monotonic() - started, 1))
    victim = _worker(["--worker", "train", "--run", str(cut), "--kill-after", "2", *flag])
    victim.communicate(timeout=900)
    if victim.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the run to kill ended with status {victim.returncode}")
    killed_at = _state_epoch(cut)
    resumed = _worker(["--worker", "resume", "--run", str(cut), *flag])
    _, err = resumed.communicate(timeout=900)
    if resumed.returncode:
        raise RuntimeError(f"resume failed: {err[-800:]}")
    epoch = f"epoch-{sizes['e2e_epochs']:04d}.safetensors"
    compared = {}
    for folder in ("checkpoints", "features"):
        a, _ = read_safetensors(whole / folder / epoch)
        b, _ = read_safetensors(cut / folder / epoch)
        compared[folder] = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    manifest = json.loads((cut / "manifest.json").read_text())
    report.put(
        "end_to_end",
        killed_after_epoch=killed_at,
        run_status=manifest["status"],
        bitwise_equal=compared,
        acceleration=manifest["acceleration"],
    )


def worker_train(sizes, dry: bool, run: Path, resume: bool, kill_after: int | None) -> None:
    import ncood.engine.state as state
    from ncood.engine.train import resume as resume_run
    from ncood.engine.train import train
    from ncood.store.train_config import TrainConfig

    register_data(sizes)
    if kill_after is not None:  # SIGKILL, the moment epoch ``kill_after``'s state is on disk
        write = state.write_snapshot

        def write_then_die(run_dir, snapshot):
            write(run_dir, snapshot)
            if snapshot.epoch == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        state.write_snapshot = write_then_die
    if resume:
        resume_run(run, show_progress=False)
        return
    config = TrainConfig(
        preset="gpu-check",
        dataset=DATASET,
        ood=[OOD],
        epochs=sizes["e2e_epochs"],
        schedule="cosine",
        width=sizes["width"],
        batch_size=sizes["batch"],
        checkpoint_epochs=[sizes["e2e_epochs"]],
        deterministic=True,
        device="cpu" if dry else "auto",
    )
    train(config, run, show_progress=False)


def phase_compile(report: Report, sizes, device, dry: bool) -> None:
    from torch._dynamo.utils import counters

    modes = (
        ["counting backend (dry run)"]
        if dry or device.type != "cuda"
        else ["default", "reduce-overhead"]
    )
    for mode in modes:
        if report.left_s() < 60 and not dry:
            report.put("compile", **{mode: f"skipped: {report.left_s():.0f} s left"})
            continue
        torch._dynamo.reset()
        counters.clear()
        setup = _loop_setup(sizes, device)
        accel = Accel(
            setup.accel.device,
            setup.accel.autocast_dtype,
            setup.accel.channels_last,
            True,
            cuda_graphs=mode == "reduce-overhead",
        )
        backend = None
        if mode.startswith("counting"):
            from torch._dynamo.testing import CompileCounter

            backend = CompileCounter()
        step_model = compile_model(setup.model, accel, backend=backend)
        with Timer(device) as first:
            train_steps(step_model, setup.optimizer, setup.epoch(0), accel)
        with Timer(device) as steady:
            train_steps(step_model, setup.optimizer, setup.epoch(1), accel)
        graphs = (
            backend.frame_count if backend is not None else counters["stats"].get("unique_graphs")
        )
        report.put(
            "compile",
            **{
                mode: {
                    "compile_seconds": round(first.seconds - steady.seconds, 2),
                    "graphs": graphs,
                    "graph_breaks": sum(counters["graph_break"].values()),
                    "images_per_s": round(sizes["train"] / steady.seconds),
                }
            },
        )
    torch._dynamo.reset()


# --- Main. --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (CI)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the JSON (default: $OUT/gpu_check.json if OUT is set, else ./gpu_check.json)",
    )
    parser.add_argument("--budget", type=float, default=290.0, help="seconds for all phases")
    parser.add_argument("--worker", choices=["share", "train", "resume"], help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kill-after", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = SIZES["dry" if args.dry_run else "gpu"]
    device = cuda_device(args.dry_run)
    if args.dry_run:  # the CI machine is small; workers share it
        torch.set_num_threads(1)
    if device.type == "cuda":  # what ncood's setup_accel does for a training run
        torch.backends.cudnn.benchmark = True
        set_tf32(True)
    if args.worker == "share":
        worker_share(sizes, device)
        return 0
    if args.worker in ("train", "resume"):
        worker_train(sizes, args.dry_run, args.run, args.worker == "resume", args.kill_after)
        return 0
    if not args.dry_run and device.type != "cuda":
        print("gpu_check: no CUDA device here; use --dry-run for the CPU check", file=sys.stderr)
        return 1
    out = args.out or Path(os.environ.get("OUT", ".")) / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = Report(out, args.budget)
    report.data["mode"] = "dry-run (CPU, tiny sizes)" if args.dry_run else "gpu"
    register_data(sizes)
    loop_rate = None
    with tempfile.TemporaryDirectory(prefix="ncood-gpu-check-") as tmp:
        workdir = Path(tmp)
        with report.phase("versions") as go:
            if go:
                phase_versions(report, device)
        with report.phase("pipeline_parity") as go:
            if go:
                phase_pipeline_parity(report, sizes, device)
        with report.phase("precision_steps") as go:
            if go:
                phase_precision_steps(report, sizes, device)
        with report.phase("host_waits") as go:
            if go:
                phase_host_waits(report, sizes, device)
        with report.phase("loop", needs_s=20) as go:
            if go:
                loop_rate = phase_loop(report, sizes, device)
        with report.phase("profile", needs_s=10) as go:
            if go:
                phase_profile(report, sizes, device)
        with report.phase("extraction", needs_s=10) as go:
            if go:
                phase_extraction(report, sizes, device, workdir)
        with report.phase("extract_command", needs_s=15) as go:
            if go:
                phase_extract_command(report, sizes, device, workdir)
        with report.phase("baselines", needs_s=40) as go:
            if go:
                phase_baselines(report, sizes, device, loop_rate)
        with report.phase("sharing", needs_s=30) as go:
            if go:
                phase_sharing(report, sizes, args.dry_run)
        with report.phase("end_to_end", needs_s=60) as go:
            if go:
                phase_end_to_end(report, sizes, args.dry_run, workdir)
        with report.phase("compile", needs_s=30) as go:
            if go:
                phase_compile(report, sizes, device, args.dry_run)
        with report.phase("model_scorers", needs_s=30) as go:
            if go:
                phase_model_scorers(report, sizes, device)
    report.data["complete"] = True
    report.data["seconds"] = round(time.monotonic() - report.started, 1)
    report.write()
    failed = [
        name for name, phase in report.data["phases"].items() if phase.get("status") == "error"
    ]
    print(
        f"gpu_check: {len(report.data['phases'])} phases, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
        + f"; figures in {out}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
