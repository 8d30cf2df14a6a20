"""The features dump at a checkpoint: the file equals what the network computes, block by block."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ncood.datasets import normalize, synthetic_set
from ncood.engine.accel import Accel
from ncood.engine.dump import dump_features, splits_of
from ncood.engine.resnet import STAGES, ResNet18
from ncood.store.features import load_features

CPU_ACCEL = Accel(torch.device("cpu"), None, False, False)


@pytest.mark.parametrize("with_stages", [False, True])
def test_dump_matches_the_network(tmp_path, with_stages):
    torch.manual_seed(0)
    data = synthetic_set(23, 9, num_classes=4)
    model = ResNet18(4, width=4).eval()
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    ood = {"noise": synthetic_set(11, 1, num_classes=2, seed=5).train}
    ood["noise"].labels[:] = -1
    path = tmp_path / "features.safetensors"
    seen = []
    dump_features(
        path,
        model,
        splits_of(data.train, data.test, ood),
        mean,
        std,
        CPU_ACCEL,
        with_stages=with_stages,
        metadata={"epoch": "3"},
        batch_size=5,  # blocks of 5, with a short last block
        on_batch=seen.append,
    )
    assert sum(seen) == 23 + 9 + 11
    dump = load_features(path)
    assert dump.metadata["epoch"] == "3" and dump.metadata["format"] == "ncood-features"
    with torch.no_grad():
        for name, images in (
            ("train", data.train),
            ("test", data.test),
            ("ood/noise", ood["noise"]),
        ):
            features, pooled = model.forward_features(normalize(images.images, mean, std), True)
            split = dump.splits()[name]
            assert np.allclose(split.features, features.numpy(), atol=1e-5), name
            assert np.allclose(split.logits, model.fc(features).numpy(), atol=1e-5), name
            assert np.array_equal(split.labels, images.labels.numpy())
            if with_stages:
                assert set(split.layers) == set(STAGES)
                for stage in STAGES:
                    assert np.allclose(split.layers[stage], pooled[stage].numpy(), atol=1e-5)
            else:
                assert split.layers == {}
    assert np.array_equal(dump.head.weight, model.fc.weight.detach().numpy())
    assert np.array_equal(dump.head.bias, model.fc.bias.detach().numpy())


def _max_relative_error(found: np.ndarray, expected: np.ndarray) -> float:
    """max |found − expected| over max |expected|: float32 rounding is ~6e-8 of the largest
    value, whatever the kernel's summation order (channels_last or not), while bf16 is ~4e-3."""
    return float(np.abs(found - expected).max() / np.abs(expected).max())


def test_extraction_is_fp32_exact_under_a_bf16_channels_last_accel(tmp_path):
    """The training settings (bf16 autocast, channels_last) do not reach the features: they
    equal an eager fp32 forward to 1e-6 (bf16 would be ~1e-2), TF32 is off during extraction
    and the previous settings are back after."""
    torch.manual_seed(0)
    data = synthetic_set(40, 8, num_classes=5)
    model = ResNet18(5, width=8).eval()
    with torch.no_grad():  # running statistics that are not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    model = model.to(memory_format=torch.channels_last)
    training_accel = Accel(torch.device("cpu"), torch.bfloat16, True, False)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    seen = {}
    forward = model.forward_features

    def spy(x, with_stages=False):
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        seen["matmul"] = torch.get_float32_matmul_precision()
        seen["cuda_matmul"] = torch.backends.cuda.matmul.fp32_precision
        seen["cudnn_conv"] = torch.backends.cudnn.conv.fp32_precision
        return forward(x, with_stages)

    model.forward_features = spy
    before = (
        torch.get_float32_matmul_precision(),
        torch.backends.cuda.matmul.fp32_precision,
        torch.backends.cudnn.conv.fp32_precision,
    )
    path = tmp_path / "features.safetensors"
    with training_accel.autocast():  # even called from inside a training autocast region
        splits = {"train": data.train, "test": data.test}
        dump_features(path, model, splits, mean, std, training_accel)
    assert seen == {
        "autocast": False,
        "matmul": "highest",
        "cuda_matmul": "ieee",
        "cudnn_conv": "ieee",
    }
    after = (
        torch.get_float32_matmul_precision(),
        torch.backends.cuda.matmul.fp32_precision,
        torch.backends.cudnn.conv.fp32_precision,
    )
    assert after == before
    del model.forward_features
    reference = ResNet18(5, width=8).eval()
    reference.load_state_dict(model.state_dict())  # contiguous copy, plain fp32 forward
    with torch.no_grad():
        features, _ = reference.forward_features(normalize(data.train.images, mean, std))
        logits = reference.fc(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_features, _ = reference.forward_features(normalize(data.train.images, mean, std))
    split = load_features(path).train
    assert _max_relative_error(split.features, features.numpy()) <= 1e-6
    assert _max_relative_error(split.logits, logits.numpy()) <= 1e-6
    # and the measure can fail: the bf16 forward the old extraction ran is far off
    assert _max_relative_error(bf16_features.float().numpy(), features.numpy()) > 1e-3
