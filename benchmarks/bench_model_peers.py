"""The four model-based scorers (odin, mcd, gram, rankfeat) against their pytorch-ood 0.4.0
detectors, through the same network on the same images, in one process, on the CPU.

    .venv/bin/python benchmarks/bench_model_peers.py [--width 16] [--train 2000] [--scored 1000]

A CIFAR ResNet-18 (ncood's, random weights; timings do not depend on training) at ``--width``,
CIFAR-shaped synthetic images (``ncood.datasets.synthetic_set``): ``--train`` ID train images
(gram's fit), ``--scored`` ID test and as many uniform-noise OOD images. Each side's fit +
score in exact fp32 on ``torch.get_num_threads()`` threads, then the AUROC of both and the
ratio ncood / pytorch-ood. The scorers' parameters are the same on both sides; mcd differs in
what it computes on a network without dropout (ncood: dropout of rate p on the head's input,
so it samples the head only; pytorch-ood: the whole network in train mode but BatchNorm, which
without dropout is 30 identical forwards): its line times each side's own method.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")  # built-ins only

import torch  # noqa: E402
from pytorch_ood import detector as peers  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from ncood.datasets import normalize, ood_set, synthetic_set  # noqa: E402
from ncood.engine.accel import exact_fp32  # noqa: E402
from ncood.engine.resnet import ResNet18  # noqa: E402
from ncood.extraction.rerun import find_stages  # noqa: E402
from ncood.host.loading import host  # noqa: E402
from ncood.host.network import Batches, Network  # noqa: E402

BATCH = 128
SETTINGS = {"odin": {"eps": 0.0014, "T": 1000.0}, "mcd": {"samples": 30}, "gram": {}}


def batches(name, images, labels, mean, std) -> Batches:
    def produce():
        for start in range(0, len(labels), BATCH):
            x = normalize(images[start : start + BATCH], mean, std)
            yield x, labels[start : start + BATCH]

    return Batches(name, len(labels), labels.numpy(), produce)


def auroc(ind: np.ndarray, ood: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.ones(len(ind)), np.zeros(len(ood))], np.r_[ind, ood]))


def peer_detectors(model: ResNet18, std: tuple[float, ...], classes: int) -> dict:
    stem = torch.nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1)
    stages = [stem, model.layer2, model.layer3, model.layer4]

    def backbone(x):
        for stage in stages:
            x = stage(x)
        return x

    def head(maps):
        return model.fc(maps.mean((2, 3)))

    return {
        "odin": peers.ODIN(model, eps=0.0014, temperature=1000.0, norm_std=list(std)),
        "mcd": peers.MCD(model, samples=30, mode="mean"),
        "gram": peers.Gram(head, stages, num_classes=classes),
        "rankfeat": peers.RankFeat(backbone=backbone, head=head),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--scored", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()

    data = synthetic_set(args.train, args.scored, num_classes=args.classes)
    noise = ood_set(torch.randint(0, 256, (args.scored, 3, 32, 32), dtype=torch.uint8))
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    splits = {
        "train": batches("train", data.train.images, data.train.labels, mean, std),
        "test": batches("test", data.test.images, data.test.labels, mean, std),
        "ood": batches("ood", noise.images, noise.labels, mean, std),
    }
    torch.manual_seed(0)
    model = ResNet18(args.classes, width=args.width).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    sample = next(iter(splits["test"]))[0][:2]
    network = Network(model, torch.device("cpu"), "fc", find_stages(model, "fc", sample), data.std)
    print(
        f"ResNet-18 width {args.width}, {args.train} train, {args.scored} test + {args.scored} "
        f"OOD images 3×32×32, {torch.get_num_threads()} threads; load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'scorer':10} {'ncood s':>9} {'peer s':>9} {'AUROC ncood':>12} {'AUROC peer':>11}")
    registry = host().scorers()
    detectors = peer_detectors(model, data.std, args.classes)
    totals = [0.0, 0.0]
    for name, detector in detectors.items():
        scorer = registry.get(name).create(**SETTINGS.get(name, {}))
        with exact_fp32():
            started = time.perf_counter()
            scorer.fit(network, splits["train"])
            ours = [np.asarray(scorer.score(network, splits[s])) for s in ("test", "ood")]
            ours_s = time.perf_counter() - started
            torch.manual_seed(0)
            started = time.perf_counter()
            if name == "gram":
                detector.fit(list(splits["train"]))
            theirs = [
                -torch.cat([detector.predict(x) for x, _ in splits[s]]).double().numpy()
                for s in ("test", "ood")
            ]
            theirs_s = time.perf_counter() - started
        totals[0] += ours_s
        totals[1] += theirs_s
        print(
            f"{name:10} {ours_s:9.2f} {theirs_s:9.2f} {auroc(*ours):12.4f} {auroc(*theirs):11.4f}"
        )
    print(
        f"{'all four':10} {totals[0]:9.2f} {totals[1]:9.2f}   ratio ncood / pytorch-ood "
        f"{totals[0] / totals[1]:.2f}; load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
