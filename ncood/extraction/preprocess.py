"""What an image goes through before the model: resize, then normalize with a mean and std.

An in-memory set (32-px uint8) is resized to ``--image-size`` on the model's device; a set left
on disk is decoded in the loader's workers as torchvision's transforms do (PIL: shorter side
resized to ``resize``, antialiased, then a centre crop of ``crop``), then normalized the same
way. :func:`file_preprocessing` is the one constructor of the latter, from the numbers that
named weights (``weights.transforms()``) or a set's defaults give.

``--normalize`` takes ``dataset`` (the ID train set's per-channel statistics), ``imagenet``, or
explicit values ``MEAN/STD`` with one number or three per side (``0.5/0.5``,
``0.49,0.48,0.45/0.25,0.24,0.26``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ncood.datasets.normalization import IMAGENET_MEAN, IMAGENET_STD
from ncood.errors import NcoodError

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
NORMALIZE_NAMES = ("dataset", "imagenet")


@dataclass(frozen=True)
class Preprocessing:
    image_size: int | None  # None: the dataset's own size
    normalize: str  # how mean/std were chosen: dataset, imagenet or explicit
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # sets read from files: shorter side → ``resize`` (PIL, antialiased), centre crop ``crop``
    resize: int | None = None
    crop: int | None = None
    interpolation: str = "bilinear"

    def describe(self) -> dict:
        return {
            "image_size": self.image_size,
            "resize": self.resize,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "antialias": True,
            "normalize": self.normalize,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def file_transform(self):
        """The per-image transform of a file-backed set, run in the loader's workers: a PIL
        image → crop×crop uint8 CHW tensor (normalized later, batched, by :meth:`apply`)."""
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        if self.resize is None or self.crop is None:
            raise NcoodError("no resize/crop for the sets read from files")
        return transforms.Compose(
            [
                transforms.Resize(
                    self.resize, interpolation=InterpolationMode(self.interpolation), antialias=True
                ),
                transforms.CenterCrop(self.crop),
                transforms.PILToTensor(),
            ]
        )

    def apply(self, batch_uint8):
        """N×3×H×W uint8 → float32, resized and normalized (on the batch's device)."""
        import torch
        import torch.nn.functional as F

        images = batch_uint8.float().div_(255)
        size = self.image_size
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            shrinking = size < images.shape[-1] or size < images.shape[-2]
            images = F.interpolate(
                images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
            )
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return images.sub_(mean).div_(std)  # in place: the batch is a fresh float copy


def file_preprocessing(
    resize: int,
    crop: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bilinear",
    normalize: str = "explicit",
    image_size: int | None = None,
) -> Preprocessing:
    """The preprocessing of a file-backed set, as torchvision's ``weights.transforms()`` and
    timm's pretrained configs state it: resize the shorter side, centre-crop, normalize."""
    check_resize_crop(resize, crop)
    if interpolation not in INTERPOLATIONS:
        raise NcoodError(
            f"interpolation {interpolation!r}: give one of {', '.join(INTERPOLATIONS)}"
        )
    return Preprocessing(
        image_size, normalize, tuple(mean), tuple(std), int(resize), int(crop), interpolation
    )


def check_resize_crop(resize: int | None, crop: int | None) -> None:
    for name, value in (("--resize", resize), ("--crop", crop)):
        if value is not None and not 8 <= value <= 4096:
            raise NcoodError(f"{name} {value}: give a size between 8 and 4096 pixels")
    if resize is not None and crop is not None and crop > resize:
        raise NcoodError(f"--crop {crop} is larger than --resize {resize}: the crop would pad")


def parse_normalize(
    spec: str, dataset_mean: tuple[float, ...], dataset_std: tuple[float, ...]
) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """``(kind, mean, std)`` from a ``--normalize`` value; a bad value is one line."""
    spec = spec.strip()
    if spec == "dataset":
        return "dataset", tuple(dataset_mean), tuple(dataset_std)
    if spec == "imagenet":
        return "imagenet", IMAGENET_MEAN, IMAGENET_STD
    mean_text, slash, std_text = spec.partition("/")
    try:
        mean = tuple(float(v) for v in mean_text.split(","))
        std = tuple(float(v) for v in std_text.split(","))
    except ValueError:
        mean = std = ()
    channels = len(dataset_mean)
    if not slash or len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise NcoodError(
            f"--normalize {spec!r}: give dataset, imagenet or MEAN/STD "
            f"(e.g. 0.5/0.5 or 0.49,0.48,0.45/0.25,0.24,0.26)"
        )
    if min(std) <= 0:
        raise NcoodError(f"--normalize {spec!r}: every std must be positive")
    return "explicit", _per_channel(mean, channels), _per_channel(std, channels)


def _per_channel(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    return values * channels if len(values) == 1 else values


def check_image_size(size: int | None) -> int | None:
    if size is not None and not 8 <= size <= 1024:
        raise NcoodError(f"--image-size {size}: give a size between 8 and 1024 pixels")
    return size
