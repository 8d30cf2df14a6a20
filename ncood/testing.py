"""The scorer contract's own test (scikit-learn's ``check_estimator``): every rule of
:class:`ncood.Scorer`, run on one scorer, built-in or a plugin's.

    from ncood.testing import check_scorer

    def test_my_scorer_keeps_the_contract():
        check_scorer(MyScorer)               # a factory, or a registered name
        check_scorer("vim", dim=4)           # keyword arguments are the scorer's parameters

A broken rule raises :class:`ScorerCheckFailed` (an ``AssertionError``) that names it:

* ``output``: ``score`` returns N finite float64 values for a split of N samples;
* ``orientation``: on a constructed case that separates them, ID scores above OOD (AUROC);
* ``determinism``: two scorers fitted on the same data give the same scores;
* ``streamed``: a split scored in pieces scores as it does whole (a feature scorer: a sample's
  score depends on the fitted state and that sample only; a network scorer: the same split in
  batches of another size scores the same);
* ``bad_input``: degenerate input (an ID train that lacks a class, constant features) is
  scored, or refused with one line (:class:`~ncood.errors.NcoodError`), never a traceback;
* ``memory``: a scorer that estimates its memory (``memory_bytes``) returns a number of bytes
  ≥ 0 for CIFAR-100's shape and ImageNet-1K's (not necessarily more for the larger: knn's
  default bank is all of CIFAR's train, 1 % of ImageNet's).

A feature scorer runs on a collapsed features dump built here; a network scorer
(``needs_network``) on a tiny CNN, briefly trained on images built here (torch is imported
then only).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ncood.errors import NcoodError
from ncood.host.scoring import Contribution, DumpShape, memory_estimate
from ncood.ood.conventions import ood_metrics
from ncood.store.features import FeatureDump, Head, Split

if TYPE_CHECKING:
    import torch

    from ncood.host.network import Batches, Network

RULES = ("output", "orientation", "determinism", "streamed", "bad_input", "memory")
# The memory rule's two shapes: CIFAR-100 (ResNet-18) and ImageNet-1K (ResNet-50).
SMALL_SHAPE = DumpShape(train=50_000, dim=512, classes=100, scored=10_000)
LARGE_SHAPE = DumpShape(train=1_281_167, dim=2048, classes=1000, scored=50_000)
# The orientation case separates ID from OOD for any sensible scorer; a sign error gives
# 1 − AUROC, near 0. The weakest built-in here (GradNorm) stays above 0.7.
MIN_AUROC = 0.7
# Pieces and whole: the same float64 arithmetic agrees to rounding; a float32 product (a gemv
# for one row, a gemm for many) or a convolution over another batch size differs in the last
# float32 bits, so the rule allows 1e-5 relative.
STREAMED_RTOL = 1e-5
# Two fits of the same data: the same operations in the same order.
DETERMINISM_RTOL = 1e-12


class ScorerCheckFailed(AssertionError):
    """A scorer broke a rule of the contract: ``rule`` names it, the message says how."""

    def __init__(self, scorer: str, rule: str, why: str) -> None:
        super().__init__(f"scorer {scorer!r} breaks rule {rule!r}: {why}")
        self.rule = rule


def check_scorer(
    scorer: str | Callable[..., Any],
    *,
    rules: tuple[str, ...] = RULES,
    min_auroc: float = MIN_AUROC,
    **params: Any,
) -> None:
    """Run ``rules`` on a registered scorer's name or a factory (a class or a function whose
    keyword arguments are the parameters), built with ``params``; raise
    :class:`ScorerCheckFailed` at the first rule broken."""
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown rules {unknown}; the rules are {list(RULES)}")
    contribution = _contribution(scorer)
    if contribution.needs_network:
        case = network_case()
    elif contribution.needs_members:
        case = members_case()
    else:
        case = feature_case()
    checks = {
        "output": _check_output,
        "orientation": lambda c, p, k: _check_orientation(c, p, k, min_auroc),
        "determinism": _check_determinism,
        "streamed": _check_streamed,
        "bad_input": _check_bad_input,
        "memory": _check_memory,
    }
    for rule in RULES:
        if rule in rules:
            checks[rule](contribution, params, case)


def _contribution(scorer: str | Callable[..., Any]) -> Contribution:
    if isinstance(scorer, str):
        from ncood.host.loading import host

        return host().scorers().get(scorer)
    if not callable(scorer):
        raise TypeError(f"check_scorer takes a scorer's name or factory, got {scorer!r}")
    name = getattr(scorer, "__name__", type(scorer).__name__)
    return Contribution(name, scorer, "", "check_scorer", "scorer")


@dataclass
class Case:
    """One constructed problem: how to fit a scorer and score a split of it, whole or in pieces.
    Splits are named "test" (ID) and "ood"."""

    fit: Callable[[Any], None]
    score: Callable[[Any, str], Any]
    # the split streamed n rows at a time: [(rows, what score returned)], one item per call
    pieces: Callable[[Any, str, int], list[tuple[int, Any]]]
    sizes: dict[str, int]
    degenerate: dict[str, Case]  # what is wrong with it → a case to fit and score


# ---- the rules


def _scores(contribution: Contribution, rule: str, returned: Any, count: int) -> np.ndarray:
    """What ``score`` returned, checked as N finite float64 values."""
    if hasattr(returned, "detach"):  # a torch tensor: read as it is, on the CPU
        returned = returned.detach().cpu().numpy()
    values = np.asarray(returned)
    if values.dtype != np.float64:
        _fail(contribution, rule, f"score() returned {values.dtype} values, not float64")
    if values.shape != (count,):
        _fail(contribution, rule, f"score() returned shape {values.shape}, expected ({count},)")
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        _fail(contribution, rule, f"score() returned {bad} non-finite values of {count}")
    return values


def _fitted(contribution: Contribution, params: dict[str, Any], case: Case, rule: str) -> Any:
    built = contribution.create(**params)
    declared = getattr(built, "needs_network", False) is True
    if declared != contribution.needs_network:
        _fail(
            contribution,
            rule,
            f"the scorer says needs_network = {declared}, its factory "
            f"{contribution.needs_network}: give the factory the same attribute",
        )
    case.fit(built)
    return built


def _scored(contribution, params, case: Case, rule: str) -> dict[str, np.ndarray]:
    scorer = _fitted(contribution, params, case, rule)
    return {
        name: _scores(contribution, rule, case.score(scorer, name), count)
        for name, count in case.sizes.items()
    }


def _check_output(contribution, params, case: Case) -> None:
    _scored(contribution, params, case, "output")


def _check_orientation(contribution, params, case: Case, min_auroc: float) -> None:
    scores = _scored(contribution, params, case, "orientation")
    auroc = ood_metrics(scores["test"], scores["ood"])["auroc"]
    if not auroc >= min_auroc:
        hint = (
            " (higher must mean more in-distribution: is the sign flipped?)" if auroc < 0.5 else ""
        )
        _fail(
            contribution,
            "orientation",
            f"AUROC {auroc:.3f} < {min_auroc} on a case that separates ID from OOD{hint}",
        )


def _check_determinism(contribution, params, case: Case) -> None:
    first = _scored(contribution, params, case, "determinism")
    second = _scored(contribution, params, case, "determinism")
    for name, values in first.items():
        if not np.allclose(second[name], values, rtol=DETERMINISM_RTOL, atol=0.0):
            worst = float(np.max(np.abs(second[name] - values)))
            _fail(
                contribution,
                "determinism",
                f"two fits on the same data gave different scores on split {name!r} (up to "
                f"{worst:.3g} apart): seed every random draw from a parameter",
            )


def _check_streamed(contribution, params, case: Case) -> None:
    scorer = _fitted(contribution, params, case, "streamed")
    for name, count in case.sizes.items():
        whole = _scores(contribution, "streamed", case.score(scorer, name), count)
        for rows in (1, 7):
            streamed = np.concatenate(
                [
                    _scores(contribution, "streamed", returned, size)
                    for size, returned in case.pieces(scorer, name, rows)
                ]
            )
            scale = float(np.max(np.abs(whole))) or 1.0
            if not np.allclose(streamed, whole, rtol=STREAMED_RTOL, atol=STREAMED_RTOL * scale):
                _fail(
                    contribution,
                    "streamed",
                    f"split {name!r} scored in pieces of {rows} differs from it scored whole: "
                    f"a sample's score may depend only on the fitted state and that sample",
                )


def _check_bad_input(contribution, params, case: Case) -> None:
    for what, degenerate in case.degenerate.items():
        try:
            _scored(contribution, params, degenerate, "bad_input")
        except ScorerCheckFailed:
            raise
        except NcoodError as exc:
            if "\n" in str(exc) or not str(exc).strip():
                _fail(contribution, "bad_input", f"{what}: its error is not one line: {exc!r}")
        except Exception as exc:
            _fail(
                contribution,
                "bad_input",
                f"{what}: raised {type(exc).__name__}: {exc}; score it, or raise NcoodError "
                f"saying what is wrong with the input",
            )


def _check_memory(contribution, params, case: Case) -> None:
    built = contribution.create(**params)
    for shape in (SMALL_SHAPE, LARGE_SHAPE):
        try:
            memory_estimate(built, shape)
        except NcoodError as exc:
            _fail(contribution, "memory", f"for {shape.describe()}: {exc}")
        except Exception as exc:
            _fail(contribution, "memory", f"memory_bytes() raised {type(exc).__name__}: {exc}")


def _fail(contribution: Contribution, rule: str, why: str) -> None:
    raise ScorerCheckFailed(contribution.name, rule, why)


# ---- the feature case


def collapsed_dump(
    num_classes: int = 5,
    dim: int = 64,
    per_class: int = 80,
    ood_count: int = 200,
    seed: int = 0,
    ood_scale: float = 1.0,
) -> FeatureDump:
    """Non-negative (post-ReLU) features: each ID class a dense random pattern μ_c plus small
    noise, the head aligned with the centred means (as neural collapse makes it); each OOD
    sample a fresh random pattern from the same distribution, close to no class, times
    ``ood_scale`` (below 1: weaker activations, as a trained network gives OOD inputs)."""
    rng = np.random.default_rng(seed)

    def pattern(n: int) -> np.ndarray:
        return np.maximum(rng.normal(1.0, 1.5, (n, dim)), 0.0)

    means = pattern(num_classes)
    weight = (means - means.mean(axis=0)).astype(np.float32) / 3
    bias = np.zeros(num_classes, np.float32)

    def make(centres: np.ndarray, labels: np.ndarray) -> Split:
        features = np.maximum(centres + rng.normal(0, 0.3, centres.shape), 0).astype(np.float32)
        return Split(features, features @ weight.T + bias, labels)

    def in_distribution(n: int) -> Split:
        labels = np.repeat(np.arange(num_classes), n)
        return make(means[labels], labels)

    return FeatureDump(
        in_distribution(per_class),
        in_distribution(per_class // 2),
        {"far": make(ood_scale * pattern(ood_count), np.full(ood_count, -1))},
        Head(weight, bias),
    )


def _rows(split: Split, start: int, stop: int) -> Split:
    return Split(
        split.features[start:stop],
        split.logits[start:stop],
        split.labels[start:stop],
        {name: values[start:stop] for name, values in split.layers.items()},
        members=tuple(_rows(member, start, stop) for member in split.members),
    )


def _dump_case(dump: FeatureDump, degenerate: dict[str, Case] | None = None) -> Case:
    splits = {"test": dump.test, "ood": next(iter(dump.ood.values()))}
    return Case(
        fit=lambda scorer: scorer.fit(dump.train, dump.head),
        score=lambda scorer, name: scorer.score(splits[name]),
        pieces=lambda scorer, name, rows: [  # each piece scored on its own
            (
                min(rows, len(splits[name]) - start),
                scorer.score(_rows(splits[name], start, start + rows)),
            )
            for start in range(0, len(splits[name]), rows)
        ],
        sizes={name: len(split) for name, split in splits.items()},
        degenerate=degenerate or {},
    )


def feature_case() -> Case:
    """The collapsed dump, OOD features at half strength (so that scorers of the class
    structure and scorers of the activations' strength both see ID first); degenerate: an ID
    train without its last class, and an ID train whose samples all have the same features."""
    dump = collapsed_dump(ood_scale=0.5)
    kept = dump.train.labels != dump.num_classes - 1
    missing = FeatureDump(
        Split(dump.train.features[kept], dump.train.logits[kept], dump.train.labels[kept]),
        dump.test,
        dump.ood,
        dump.head,
    )
    same = np.repeat(dump.train.features[:1], len(dump.train), axis=0)
    constant = FeatureDump(
        Split(same, same @ dump.head.weight.T + dump.head.bias, dump.train.labels),
        dump.test,
        dump.ood,
        dump.head,
    )
    return _dump_case(
        dump,
        {
            "an ID train without one of the classes": _dump_case(missing),
            "an ID train whose features are all the same": _dump_case(constant),
        },
    )


def members_case() -> Case:
    """An ensemble scorer's case: three collapsed dumps of the same images (other class
    patterns and noise per member, as three seeds give), joined as ``ncood analyze`` joins a
    seeds folder's runs; degenerate: members whose logits are all the same."""
    from ncood.store.members import join_members

    members = [collapsed_dump(seed=seed, ood_scale=0.5) for seed in (0, 1, 2)]
    constant = [
        replace(
            dump,
            **{
                name: replace(split, logits=np.zeros_like(split.logits))
                for name, split in (("train", dump.train), ("test", dump.test))
            },
            ood={k: replace(v, logits=np.zeros_like(v.logits)) for k, v in dump.ood.items()},
        )
        for dump in members
    ]
    return _dump_case(
        join_members(members),
        {"members whose logits are all zero": _dump_case(join_members(constant))},
    )


# ---- the network case

CLASSES, SIDE, BATCH = 3, 16, 25
INPUT_STD = (0.25, 0.5, 0.3)


def tiny_cnn(dropout: bool = True) -> torch.nn.Module:
    """Three conv stages (containers, so they are found as the stage maps), pooling, a dropout,
    a linear head ``fc``."""
    from torch import nn

    torch_seed(3)
    return nn.Sequential(
        OrderedDict(
            stage1=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            stage2=nn.Sequential(nn.Conv2d(8, 12, 3, 2, 1), nn.BatchNorm2d(12), nn.ReLU()),
            stage3=nn.Sequential(nn.Conv2d(12, 16, 3, 2, 1), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            drop=nn.Dropout(0.3) if dropout else nn.Identity(),
            fc=nn.Linear(16, CLASSES),
        )
    )


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def network_images() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """ID: a class pattern plus noise; OOD: smooth blobs of another scale, labelled −1."""
    import torch

    generator = torch.Generator().manual_seed(0)
    patterns = torch.randn(CLASSES, 3, SIDE, SIDE, generator=generator)

    def in_distribution(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % CLASSES
        return patterns[labels] + 0.6 * torch.randn(n, 3, SIDE, SIDE, generator=generator), labels

    ood = torch.randn(40, 3, SIDE // 4, SIDE // 4, generator=generator)
    ood = 1.5 * ood.repeat_interleave(4, 2).repeat_interleave(4, 3)
    return {
        "train": in_distribution(90),
        "test": in_distribution(60),
        "ood": (ood, torch.full((40,), -1)),
    }


def tiny_network(images: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Network:
    """The tiny CNN, trained a few steps on the ID train images, then frozen in eval mode."""
    import torch
    import torch.nn.functional as F

    from ncood.extraction.rerun import find_stages
    from ncood.host.network import Network

    module = tiny_cnn()
    optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
    inputs, labels = images["train"]
    for _ in range(30):
        optimiser.zero_grad()
        F.cross_entropy(module(inputs), labels).backward()
        optimiser.step()
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    stages = find_stages(module, "fc", inputs[:2])
    return Network(module, torch.device("cpu"), "fc", stages, INPUT_STD, arch="tiny-cnn")


def batches(name: str, images: torch.Tensor, labels: torch.Tensor, size: int = BATCH) -> Batches:
    """``Batches`` of ``size`` images over tensors in memory."""
    from ncood.host.network import Batches

    def produce() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(images), size):
            yield images[start : start + size], labels[start : start + size]

    return Batches(name, len(images), labels.numpy(), produce)


def _network_case(network: Network, images, degenerate: dict[str, Case] | None = None) -> Case:
    def split(name: str, size: int = BATCH) -> Batches:
        return batches("ood/blobs" if name == "ood" else name, *images[name], size=size)

    return Case(
        fit=lambda scorer: scorer.fit(network, split("train")),
        score=lambda scorer, name: scorer.score(network, split(name)),
        # the whole split in batches of n images (what --batch-size changes): a network
        # scorer sees a split as one stream of batches, and may draw per fixed run of images
        pieces=lambda scorer, name, rows: [
            (len(images[name][1]), scorer.score(network, split(name, rows)))
        ],
        sizes={name: len(images[name][1]) for name in ("test", "ood")},
        degenerate=degenerate or {},
    )


def network_case() -> Case:
    """The tiny trained CNN; degenerate: an ID train without its last class."""
    images = network_images()
    network = tiny_network(images)
    inputs, labels = images["train"]
    kept = labels != CLASSES - 1
    missing = {**images, "train": (inputs[kept], labels[kept])}
    return _network_case(
        network,
        images,
        {"an ID train without one of the classes": _network_case(network, missing)},
    )


__all__ = ["RULES", "Case", "ScorerCheckFailed", "check_scorer", "collapsed_dump"]
