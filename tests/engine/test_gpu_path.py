"""The GPU path, tested on the CPU: every decision and property a CPU can see.

Device choice and precision with ``torch.cuda`` faked; no host wait inside the step loop (a
dispatch mode sees every ``.item()``); static-shape compile (two graphs, no break); bf16
autocast + channels_last training and resume; the fp32 classifier head; DDP's buffer keyword;
the CUDA RNG of the local GPU only. What needs a real GPU is in benchmarks/gpu_check.py.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from host_sync import HostSyncs
from safetensors.numpy import load_file

import ncood.engine.accel as accel_module
import ncood.engine.syncbn as syncbn
from ncood.datasets import normalize, synthetic_set
from ncood.engine.accel import Accel, compile_model, pick_device, setup_accel
from ncood.engine.batches import epoch_batches, plan_epoch
from ncood.engine.loop import PROGRESS_EVERY, train_epoch, train_steps
from ncood.engine.monitor import TrainingMonitor
from ncood.engine.presets import resolve_preset
from ncood.engine.resnet import ResNet18
from ncood.engine.session import ddp_buffer_option
from ncood.engine.state import SavedState, cuda_rng_key, restore, snapshot
from ncood.engine.syncbn import convert_batchnorm
from ncood.errors import NcoodError

CPU = torch.device("cpu")
FP32 = Accel(CPU, None, False, False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


BACKEND_FLAGS = (
    (torch.backends.cudnn, "benchmark"),
    (torch.backends.cudnn, "deterministic"),
    (torch.backends.cuda.matmul, "fp32_precision"),
    (torch.backends.cudnn.conv, "fp32_precision"),
)


@pytest.fixture(autouse=True)
def backend_flags():
    """The global flags setup_accel sets, as they were before each test."""
    saved = [getattr(module, name) for module, name in BACKEND_FLAGS]
    yield
    for (module, name), value in zip(BACKEND_FLAGS, saved, strict=True):
        setattr(module, name, value)


# --- setup_accel with torch.cuda faked. ---------------------------------------------------------


class FakeCuda:
    """Enough of torch.cuda for the engine's decisions, recording which GPUs are touched."""

    def __init__(self, monkeypatch, capabilities, initialized=False):
        self.capabilities = capabilities
        self.initialized = initialized
        self.touched: list[int] = []
        self.current: int | None = None
        for name in (
            "is_available",
            "device_count",
            "get_device_capability",
            "set_device",
            "is_initialized",
        ):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        self.deterministic: list[tuple] = []
        monkeypatch.setattr(
            torch,
            "use_deterministic_algorithms",
            lambda mode, **kw: self.deterministic.append((mode, kw)),
        )

    def is_available(self):
        return bool(self.capabilities)

    def device_count(self):
        return len(self.capabilities)

    def is_initialized(self):
        return self.initialized

    def _index(self, device):
        device = torch.device("cuda", device) if isinstance(device, int) else device
        return self.current if device is None or device.index is None else device.index

    def get_device_capability(self, device=None):
        index = self._index(device)
        self.touched.append(index)
        return self.capabilities[index]

    def set_device(self, device):
        self.current = self._index(device)
        self.touched.append(self.current)
        self.initialized = True


def config(**overrides):
    return resolve_preset("demo-standard", **overrides)


def test_bf16_on_a_gpu_that_computes_it_natively(monkeypatch):
    cuda = FakeCuda(monkeypatch, [(9, 0)])
    accel = setup_accel(config(), pick_device("auto"))
    assert accel.device == torch.device("cuda", 0)
    assert accel.autocast_dtype == torch.bfloat16 and accel.channels_last
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert cuda.deterministic == []


def test_fp32_on_a_gpu_that_only_emulates_bf16(monkeypatch):
    FakeCuda(monkeypatch, [(7, 5)])  # Turing: is_bf16_supported() says yes, by emulation
    assert setup_accel(config(), pick_device("auto")).autocast_dtype is None
    with pytest.raises(NcoodError, match=r"compute capability 7\.5\) only emulates bfloat16"):
        setup_accel(config(precision="bf16"), pick_device("auto"))


def test_cpu_when_no_gpu(monkeypatch):
    FakeCuda(monkeypatch, [])
    assert pick_device("auto") == CPU
    with pytest.raises(NcoodError, match="no CUDA device is available"):
        pick_device("cuda:1")
    accel = setup_accel(config(), CPU)
    assert accel.autocast_dtype is None and not accel.channels_last
    cpu_bf16 = setup_accel(config(precision="bf16", channels_last=True), CPU)
    assert cpu_bf16.autocast_dtype == torch.bfloat16 and cpu_bf16.channels_last  # CPU autocast


def test_cuda_1_touches_gpu_1_only(monkeypatch):
    cuda = FakeCuda(monkeypatch, [(8, 0), (9, 0)])
    device = pick_device("cuda:1")
    accel = setup_accel(config(), device)
    assert accel.device == torch.device("cuda", 1) and accel.autocast_dtype == torch.bfloat16
    assert cuda.touched and set(cuda.touched) == {1} and cuda.touched[0] == 1  # set_device first
    with pytest.raises(NcoodError, match="has 2 CUDA device"):
        pick_device("cuda:2")


def test_deterministic_sets_cublas_before_cuda_starts(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cuda = FakeCuda(monkeypatch, [(9, 0)])
    setup_accel(config(deterministic=True), pick_device("cuda"))
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert cuda.deterministic == [(True, {})]  # strict: no warn_only
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"


def test_deterministic_refuses_when_cuda_started_without_cublas_config(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    FakeCuda(monkeypatch, [(9, 0)], initialized=True)
    with pytest.raises(NcoodError, match="CUBLAS_WORKSPACE_CONFIG=:4096:8"):
        setup_accel(config(deterministic=True), pick_device("cuda"))


# --- The step loop makes no host sync. ----------------------------------------------------------


def _tiny_epoch(count=40, batch=16, channels_last=False, seed=0):
    data = synthetic_set(count, 4, num_classes=3, seed=seed)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    plan = plan_epoch(count, 0, 1, 4, True, CPU)
    built = epoch_batches(
        data.train.images,
        data.train.labels,
        plan,
        batch,
        4,
        mean,
        std,
        channels_last=channels_last,
    )
    return data, built


def test_the_detector_sees_host_syncs():
    with HostSyncs() as syncs:
        x = torch.randn(8)
        x.sum().item()
        _ = x[x > 0]  # boolean-mask indexing (PyTorch's SyncBatchNorm does this on CUDA)
        x.nonzero()
        float(x.max())
    assert syncs.seen == [
        "_local_scalar_dense",
        "boolean-mask indexing",
        "nonzero",
        "_local_scalar_dense",
    ]


@pytest.mark.parametrize("global_batchnorm", [False, True])
def test_no_host_sync_inside_an_epoch(monkeypatch, global_batchnorm):
    """The whole epoch (its input built, every step, the optimizer) waits for the host
    nowhere; the epoch's totals are read once, after the last step."""
    torch.manual_seed(0)
    model = ResNet18(3, width=4)
    if global_batchnorm:  # the torchrun path, as one rank of a 2-process group
        model = convert_batchnorm(model)
        monkeypatch.setattr(syncbn.dist, "is_initialized", lambda: True)
        monkeypatch.setattr(syncbn.dist, "get_world_size", lambda: 2)
        monkeypatch.setattr(syncbn, "_all_reduce", lambda tensor: tensor)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    with HostSyncs() as syncs:
        _, batches = _tiny_epoch()
        loss_sum, correct = train_steps(model, optimizer, batches, FP32)
    assert syncs.seen == []
    assert loss_sum.dtype == torch.float64 and correct.dtype == torch.int64
    with HostSyncs() as syncs:
        _, batches = _tiny_epoch(seed=1)
        train_epoch(model, optimizer, batches, FP32)
    assert syncs.seen == ["_local_scalar_dense"] * 2  # the loss and the hit count, at the end


def test_global_batchnorm_of_one_rank_is_batchnorm():
    """With the all-reduce an identity, the one-pass shifted statistics equal BatchNorm's."""
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 5, 4, dtype=torch.float64) * 4 + 30).requires_grad_(True)
    reference = torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        reference.running_mean.fill_(29.0)
    ours = convert_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3).double()))[0]
    ours.load_state_dict(reference.state_dict())
    out_ref = reference(x)
    import unittest.mock as mock

    with (
        mock.patch.object(syncbn.dist, "is_initialized", lambda: True),
        mock.patch.object(syncbn.dist, "get_world_size", lambda: 2),
        mock.patch.object(syncbn, "_all_reduce", lambda tensor: tensor),
    ):
        x2 = x.detach().clone().requires_grad_(True)
        out = ours(x2)
        upstream = torch.randn_like(out)
        (out * upstream).sum().backward()
    (out_ref * upstream).sum().backward()
    assert torch.allclose(out, out_ref, atol=1e-10)
    assert torch.allclose(x2.grad, x.grad, atol=1e-10)
    assert torch.allclose(ours.running_mean, reference.running_mean, atol=1e-10)
    assert torch.allclose(ours.running_var, reference.running_var, atol=1e-10)


def test_progress_every_25_steps():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    _, batches = _tiny_epoch(count=60, batch=1)
    heard: list[int] = []
    train_steps(model, optimizer, batches, FP32, on_steps=heard.append)
    assert heard == [PROGRESS_EVERY, PROGRESS_EVERY, 60 - 2 * PROGRESS_EVERY]


def test_one_plain_line_per_epoch_off_a_terminal():
    stream = io.StringIO()  # not a terminal, like a batch scheduler's log
    record = {
        "epoch": 3,
        "lr": 0.1,
        "train_loss": 1.5,
        "train_acc": 0.5,
        "test_loss": 1.6,
        "test_acc": 0.45,
        "seconds": 2.0,
        "images_per_s": 1000.0,
    }
    with TrainingMonitor(True, "tp-200", 200, 2, 391, stream=stream) as monitor:
        assert not monitor.bars
        monitor.epoch_started(3)
        monitor.steps_done(25)
        with monitor.features(1000) as advance:
            assert advance is None
        monitor.epoch_done(record)
    assert stream.getvalue() == (
        "tp-200 epoch 3/200: loss 1.500 acc 0.500 test 0.450, lr 0.1, 2.0 s, 1000 images/s\n"
    )
    quiet = io.StringIO()
    with TrainingMonitor(False, "tp-200", 200, 2, 391, stream=quiet) as monitor:
        monitor.epoch_done(record)
    assert quiet.getvalue() == ""


# --- torch.compile: static shapes, two graphs. ------------------------------------------------


def test_compile_makes_two_graphs_and_no_break():
    """The full batch and the short last batch: two graphs, compiled once, reused in the next
    epoch; no graph break; the same training as eager (the counting backend runs the graph
    eagerly)."""
    from torch._dynamo.testing import CompileCounter
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    eager = ResNet18(3, width=4)
    compiled_model = ResNet18(3, width=4)
    compiled_model.load_state_dict(eager.state_dict())
    backend = CompileCounter()
    step_model = compile_model(compiled_model, FP32, backend=backend)
    optimizers = [
        torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (eager, compiled_model)
    ]
    for epoch_seed in (0, 1):  # 40 images in batches of 16: 16, 16, 8
        _, batches = _tiny_epoch(seed=epoch_seed)
        train_steps(eager, optimizers[0], batches, FP32)
        train_steps(step_model, optimizers[1], batches, FP32)
    assert backend.frame_count == 2
    assert sum(counters["graph_break"].values()) == 0
    for (name, a), b in zip(
        eager.state_dict().items(), compiled_model.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    torch._dynamo.reset()


# --- Mixed precision on the CPU: the fp32 head, training and resume. ---------------------------


def test_the_classifier_head_stays_fp32_under_autocast():
    torch.manual_seed(0)
    model = ResNet18(100, width=4).eval()
    data = synthetic_set(8, 1, num_classes=100)
    x = normalize(data.train.images, torch.tensor(data.mean), torch.tensor(data.std))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        features, _ = model.forward_features(x)
        bf16_head = model.fc(features)  # what the head gave before: bf16 logits
    assert features.dtype == torch.bfloat16 and logits.dtype == torch.float32
    exact = F.linear(features.float(), model.fc.weight, model.fc.bias)
    assert torch.equal(logits, exact)
    assert not torch.equal(bf16_head.float(), exact)


def test_momentum_buffers_keep_channels_last_through_snapshot_and_restore():
    torch.manual_seed(0)

    def build():
        model = ResNet18(3, width=4).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
        return model, optimizer, scheduler

    model, optimizer, scheduler = build()
    accel = Accel(CPU, torch.bfloat16, True, False)
    _, batches = _tiny_epoch(channels_last=True)
    train_steps(model, optimizer, batches, accel)
    scheduler.step()
    saved = snapshot(1, model, optimizer, scheduler, [])
    again, again_optimizer, again_scheduler = build()
    restore(SavedState(1, saved.payload, saved.tensors), again, again_optimizer, again_scheduler)
    convs = 0
    for param, param_again in zip(model.parameters(), again.parameters(), strict=True):
        buffer = again_optimizer.state[param_again]["momentum_buffer"]
        assert buffer.stride() == param_again.stride()
        assert torch.equal(buffer, optimizer.state[param]["momentum_buffer"])
        convs += param.dim() == 4
    assert convs > 10  # the 4-d conv weights, where channels_last changes the strides
    assert again_scheduler.last_epoch == 1


def _stop_at(epoch_to_stop):
    """A stand-in for the epoch runner that is killed when epoch ``epoch_to_stop`` starts."""
    import ncood.engine.train as engine

    real = engine._train_one_epoch

    def runner(session, epoch, monitor):
        if epoch == epoch_to_stop:
            raise KeyboardInterrupt
        return real(session, epoch, monitor)

    return runner


def test_bf16_channels_last_training_resumes_bit_for_bit(tmp_path, monkeypatch, capsys):
    """The whole mixed-precision path on the CPU (bf16 autocast, channels_last model and
    momentum buffers, fp32 extraction): killed after epoch 1 and resumed, it ends with the
    weights and features of the uninterrupted run, bit for bit."""
    import ncood.engine.train as engine

    settings = config(
        epochs=2,
        width=4,
        train_subset=96,
        checkpoint_every=2,
        precision="bf16",
        channels_last=True,
        device="cpu",
    )
    whole = engine.train(settings, tmp_path / "whole", show_progress=True)
    lines = capsys.readouterr().err.strip().splitlines()  # stderr is not a terminal here
    assert [line.split(":")[0] for line in lines] == [
        "whole epoch 1/2",
        "whole epoch 2/2",
    ]
    manifest = json.loads(whole.manifest_path.read_text())
    assert manifest["acceleration"]["precision"] == "bf16"
    assert manifest["acceleration"]["channels_last"] is True

    monkeypatch.setattr(engine, "_train_one_epoch", _stop_at(2))
    with pytest.raises(KeyboardInterrupt):
        engine.train(settings, tmp_path / "cut", show_progress=False)
    monkeypatch.undo()
    cut, resumed = engine.resume(tmp_path / "cut", show_progress=False)
    assert resumed
    for name in ("checkpoints/epoch-0002.safetensors", "features/epoch-0002.safetensors"):
        a, b = load_file(str(whole.root / name)), load_file(str(cut.root / name))
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]), (name, key)
    features = load_file(str(whole.root / "features/epoch-0002.safetensors"))
    assert features["train/features"].dtype == np.float32


# --- DDP's keyword, the local GPU's RNG. -------------------------------------------------------


def test_ddp_buffer_keyword_follows_the_installed_torch(monkeypatch):
    class Recent:
        def __init__(self, module, broadcast_buffers=True, forward_sync_buffers=True): ...

    class Older:
        def __init__(self, module, device_ids=None, broadcast_buffers=True): ...

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", Recent)
    assert ddp_buffer_option(False) == {"forward_sync_buffers": False}
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", Older)
    assert ddp_buffer_option(True) == {"broadcast_buffers": True}


def test_the_state_holds_the_local_gpus_rng_only(monkeypatch):
    asked: list[int] = []

    def get_rng_state(index):
        asked.append(index)
        return torch.full((16,), index, dtype=torch.uint8)

    def every_gpu():
        raise AssertionError("would create a context on every GPU")

    set_calls: list[tuple[int, int]] = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", get_rng_state)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", every_gpu)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", every_gpu)
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda state, index: set_calls.append((int(state[0]), index))
    )
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2)
    saved = snapshot(1, model, optimizer, scheduler, [], device=torch.device("cuda", 1))
    assert asked == [1] and [k for k in saved.tensors if k.startswith("rng/cuda")] == ["rng/cuda/1"]
    restore(
        SavedState(1, saved.payload, saved.tensors),
        model,
        optimizer,
        scheduler,
        torch.device("cuda", 1),
    )
    assert set_calls == [(1, 1)]
    # an old state with every GPU's RNG: the own one, else the lowest number (not "10" < "2")
    names = [f"rng/cuda/{i}" for i in (10, 2, 3)]
    assert cuda_rng_key(names, 3) == "rng/cuda/3"
    assert cuda_rng_key(names, 0) == "rng/cuda/2"
    assert cuda_rng_key(["rng/torch"], 0) is None


def test_accel_module_probes_the_tf32_api():
    """torch ≥ 2.9 refuses to mix the legacy TF32 flags with the new ones: the engine uses
    the new ones whenever they exist."""
    assert accel_module._precision_settings()  # this torch has them
