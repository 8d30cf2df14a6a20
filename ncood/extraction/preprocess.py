"""What an image goes through before the model: resize, then normalize with a mean and std.

``--normalize`` takes ``dataset`` (the ID train set's per-channel statistics), ``imagenet``, or
explicit values ``MEAN/STD`` with one number or three per side (``0.5/0.5``,
``0.49,0.48,0.45/0.25,0.24,0.26``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ncood.errors import NcoodError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZE_NAMES = ("dataset", "imagenet")


@dataclass(frozen=True)
class Preprocessing:
    image_size: int | None  # None: the dataset's own size
    normalize: str  # how mean/std were chosen: dataset, imagenet or explicit
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def describe(self) -> dict:
        return {
            "image_size": self.image_size,
            "resize": "bilinear (antialiased when shrinking)" if self.image_size else None,
            "normalize": self.normalize,
            "mean": list(self.mean),
            "std": list(self.std),
        }

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
        return (images - mean) / std


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
