"""Pretrained weights by name: ``torchvision:ResNet50_Weights.IMAGENET1K_V2``, ``timm:NAME.TAG``.

A name fixes the architecture, its classes, where the file lives and how images are prepared.
The file is found where the library itself keeps it — torchvision's in torch.hub's checkpoint
folder (``torch.hub.get_dir()/checkpoints/<file of weights.url>``), timm's in the Hugging Face
hub cache (``$HF_HOME/hub/models--timm--NAME/snapshots/<revision>/``) — so a file cached once,
by ncood or by the library, serves offline. It is read like any weights file
(ncood.models.weights: safetensors, or ``torch.load(weights_only=True)``), never by the
library's own loader. Nothing here imports torchvision, timm or huggingface_hub before a name
asks for it.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ncood.errors import NcoodError

LIBRARIES = ("torchvision", "timm")
_NAME = re.compile(r"^(torchvision|timm):(\S+)$")
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's HASH_REGEX: resnet50-11ad3fa6.pth
HF_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's order: safetensors first


@dataclass(frozen=True)
class WeightsPreprocessing:
    """How the weights' publisher prepares an image: shorter side resized to ``resize``
    (``interpolation``), centre crop of ``crop``, then normalized by ``mean``/``std``."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str  # bilinear, bicubic, nearest …

    def describe(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class NamedWeights:
    """What a weights name stands for, found without touching the network or the file."""

    name: str  # canonical: torchvision:ResNet50_Weights.IMAGENET1K_V2, timm:resnet50.a1_in1k
    model: str  # the architecture they fit, as --model names it
    num_classes: int
    preprocessing: WeightsPreprocessing
    source: str  # the URL or Hugging Face repository the file comes from
    files: tuple[Path, ...]  # where the library's cache keeps it, in the order looked for
    hub_repo: str | None = None  # timm: the Hugging Face repository (downloads go through it)
    hub_revision: str | None = None

    def record(self) -> dict:
        """What a run's manifest keeps of them (beside the file's path and sha256)."""
        return {
            "name": self.name,
            "source": self.source,
            "published_preprocessing": self.preprocessing.describe(),
        }


def is_weights_name(text: str) -> bool:
    """``torchvision:…`` or ``timm:…`` that is not an existing file."""
    return bool(_NAME.match(text)) and not Path(text).exists()


def named_weights(name: str) -> NamedWeights:
    """The weights ``name`` stands for; an unknown name is one line."""
    found = _NAME.match(name.strip())
    if not found:
        raise NcoodError(
            f"--weights {name!r}: give a file, or a name torchvision:ENUM.VALUE "
            f"(torchvision:ResNet50_Weights.IMAGENET1K_V2) or timm:MODEL.TAG "
            f"(timm:resnet50.a1_in1k)"
        )
    library, rest = found.groups()
    return _torchvision(rest) if library == "torchvision" else _timm(rest)


def weights_preprocessing(name: str) -> WeightsPreprocessing:
    """The preprocessing the named weights were published with: resize, crop, mean, std and
    interpolation as plain numbers and a word (the default for the sets they run on)."""
    return named_weights(name).preprocessing


def cached_file(weights: NamedWeights, download: bool = False, progress: bool = False) -> Path:
    """The weights' file in the library's cache; fetched into it when missing and
    ``download``; otherwise one line saying which file to put where."""
    for path in weights.files:
        if path.is_file():
            return path
    hub = _hub_file(weights) if weights.hub_repo else None
    if hub is not None:
        return hub
    if download:
        return _download(weights, progress)
    raise NcoodError(f"{_where_to_put(weights)} (downloads are off)")


def published_hash_prefix(path: Path) -> str | None:
    """The sha256 prefix torch.hub file names carry (``resnet50-11ad3fa6.pth``)."""
    found = _HASH_IN_NAME.search(path.name)
    return found.group(1) if found else None


# --- torchvision ------------------------------------------------------------------------------


def _torchvision(text: str) -> NamedWeights:
    import torch.hub
    import torchvision

    try:
        weights = torchvision.models.get_weight(text)
    except (ValueError, KeyError, AttributeError):
        raise NcoodError(
            f"torchvision has no weights {text!r} (e.g. ResNet50_Weights.IMAGENET1K_V2; "
            f"torchvision.models.get_model_weights('resnet50') lists a model's)"
        ) from None
    model = next(
        (
            m
            for m in torchvision.models.list_models(module=torchvision.models)
            if torchvision.models.get_model_weights(m) is type(weights)
        ),
        None,
    )
    if model is None:
        raise NcoodError(f"torchvision:{text} are not the weights of a classification model")
    transform = weights.transforms()
    file_name = os.path.basename(weights.url.split("?")[0])
    return NamedWeights(
        name=f"torchvision:{type(weights).__name__}.{weights.name}",
        model=f"torchvision:{model}",
        num_classes=len(weights.meta["categories"]),
        preprocessing=WeightsPreprocessing(
            resize=int(transform.resize_size[0]),
            crop=int(transform.crop_size[0]),
            mean=tuple(float(v) for v in transform.mean),
            std=tuple(float(v) for v in transform.std),
            interpolation=str(transform.interpolation.value),
        ),
        source=weights.url,
        files=(Path(torch.hub.get_dir()) / "checkpoints" / file_name,),
    )


# --- timm -------------------------------------------------------------------------------------


def _timm(text: str) -> NamedWeights:
    try:
        import timm
        from timm.models import get_pretrained_cfg
    except ImportError:
        raise NcoodError(
            f"timm:{text} needs timm, which is not installed; install it with "
            f"`python -m pip install timm`"
        ) from None
    try:
        cfg = get_pretrained_cfg(text) if timm.is_model(text) else None
    except RuntimeError:  # a known architecture with an unknown tag
        cfg = None
    if cfg is None:
        raise NcoodError(
            f"timm has no pretrained weights {text!r} (timm.list_pretrained('*name*') lists them)"
        )
    size = int(cfg.input_size[-1])
    crop_pct = float(cfg.crop_pct or 0.875)  # timm's DEFAULT_CROP_PCT
    preprocessing = WeightsPreprocessing(
        resize=math.floor(size / crop_pct),  # as timm's transforms_imagenet_eval computes it
        crop=size,
        mean=tuple(float(v) for v in cfg.mean),
        std=tuple(float(v) for v in cfg.std),
        interpolation=str(cfg.interpolation or "bilinear"),
    )
    common = {
        "name": f"timm:{cfg.architecture}.{cfg.tag}" if cfg.tag else f"timm:{cfg.architecture}",
        "model": f"timm:{cfg.architecture}",
        "num_classes": int(cfg.num_classes),
        "preprocessing": preprocessing,
    }
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILES
        if cfg.hf_hub_filename and cfg.hf_hub_filename.endswith(".bin"):
            names = (cfg.hf_hub_filename[:-4] + ".safetensors", cfg.hf_hub_filename)
        snapshot = _hf_cache() / ("models--" + repo.replace("/", "--")) / "snapshots"
        return NamedWeights(
            **common,
            source=f"https://huggingface.co/{repo}",
            files=tuple(snapshot / (revision or "main") / n for n in names),
            hub_repo=repo,
            hub_revision=revision or None,
        )
    if cfg.url:  # older timm weights: torch.hub's checkpoint folder, as timm loads them
        import torch.hub

        file_name = os.path.basename(cfg.url.split("?")[0])
        return NamedWeights(
            **common, source=cfg.url, files=(Path(torch.hub.get_dir()) / "checkpoints" / file_name,)
        )
    raise NcoodError(f"timm:{text} has no published weights file ncood can read")


def _hf_cache() -> Path:
    """The Hugging Face hub cache as the environment names it now (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hub_file(weights: NamedWeights) -> Path | None:
    """The file at the revision the cache's ``refs/`` point to (how the hub client stores it)."""
    from huggingface_hub import try_to_load_from_cache

    for path in weights.files:
        found = try_to_load_from_cache(
            weights.hub_repo, path.name, cache_dir=_hf_cache(), revision=weights.hub_revision
        )
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def _download(weights: NamedWeights, progress: bool) -> Path:
    try:
        if weights.hub_repo:
            return _hub_download(weights)
        import torch.hub

        target = weights.files[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(
            weights.source, str(target), published_hash_prefix(target), progress=progress
        )
        return target
    except NcoodError:
        raise
    except Exception as exc:  # no network, a proxy, a full disk: say where the file goes
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise NcoodError(f"{_where_to_put(weights)} (download failed: {first})") from None


def _hub_download(weights: NamedWeights) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    for path in weights.files:
        try:
            return Path(
                hf_hub_download(
                    weights.hub_repo,
                    path.name,
                    revision=weights.hub_revision,
                    cache_dir=_hf_cache(),
                    library_name="ncood",
                )
            )
        except RemoteEntryNotFoundError:  # not on the hub: the next name
            continue
    raise NcoodError(f"{weights.source} has none of {', '.join(p.name for p in weights.files)}")


def _where_to_put(weights: NamedWeights) -> str:
    """One line: the file to get and the exact path to put it at."""
    target = weights.files[0]
    return (
        f"{weights.name}: {target.name} is not in the cache; put {weights.source}"
        + (f"'s {target.name}" if weights.hub_repo else "")
        + f" at {target}"
    )
