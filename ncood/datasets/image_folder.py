"""A folder of images as an OOD set (``--ood folder:PATH``), and the image-file reader DTD shares.

Images of any size and mode become 32×32 RGB the way OOD benchmarks prepare them: shorter side
resized to 32 (bilinear, antialiased), then centre-cropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ncood.datasets.base import IMAGE_SIZE, ImageFiles, ImageSet, ood_set
from ncood.errors import NcoodError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")


def read_image(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """One image file → size×size×3 uint8; an unreadable file is a one-line error naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            scale = size / min(width, height)
            resized = (max(size, round(width * scale)), max(size, round(height * scale)))
            image = image.resize(resized, Image.Resampling.BILINEAR)
            left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
            return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise NcoodError(f"could not read image {path} ({' '.join(str(exc).split())})") from None


def load_image_files(paths: list[Path], *, show_progress: bool = False) -> ImageSet:
    from ncood.progress import progress_bar  # rich loads only when images are read

    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    with progress_bar(show_progress and len(paths) > 500) as progress:
        task = progress.add_task("read images", total=len(paths), status="")
        for index, path in enumerate(paths):
            images[index] = read_image(Path(path))
            progress.advance(task)
    return ood_set(torch.from_numpy(images).permute(0, 3, 1, 2))


def read_image_files(images: ImageSet | ImageFiles, *, show_progress: bool = False) -> ImageSet:
    """A set left on disk read into memory at 32 px, with its labels (an in-memory set as is)."""
    if isinstance(images, ImageSet):
        return images
    read = load_image_files(images.paths, show_progress=show_progress)
    return ImageSet(read.images, images.labels.clone())


def load_folder(folder: Path, *, show_progress: bool = False) -> ImageSet:
    """Every image under ``folder`` (recursively, in sorted path order)."""
    if not folder.is_dir():
        raise NcoodError(f"OOD image folder not found: {folder}")
    paths = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise NcoodError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return load_image_files(paths, show_progress=show_progress)
