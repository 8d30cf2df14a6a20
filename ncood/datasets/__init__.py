"""Datasets: every image set as one uint8 tensor, named in two registries.

``base`` holds the types and conversions; ``embedded`` the sets that need no download (digits,
photos, noise, synthetic); ``torchvision_sets`` CIFAR, SVHN, MNIST, Fashion-MNIST, DTD;
``image_folder`` any folder of images (``folder:PATH``); ``loading`` turns names into data.
It may import :mod:`ncood.host` (the registries), :mod:`ncood.progress` and :mod:`ncood.errors`.
"""

from ncood.datasets.base import (
    IMAGE_SIZE,
    IN_DISTRIBUTION,
    OUT_OF_DISTRIBUTION,
    DataContext,
    ImageSet,
    InDistribution,
    channel_stats,
    normalise,
    ood_set,
    resize_gray,
    to_image_set,
)
from ncood.datasets.embedded import synthetic_set
from ncood.datasets.loading import (
    FOLDER_PREFIX,
    check_names,
    default_data_dir,
    folder_path,
    load_data,
    ood_name,
)

__all__ = [
    "FOLDER_PREFIX",
    "IMAGE_SIZE",
    "IN_DISTRIBUTION",
    "OUT_OF_DISTRIBUTION",
    "DataContext",
    "ImageSet",
    "InDistribution",
    "channel_stats",
    "check_names",
    "default_data_dir",
    "folder_path",
    "load_data",
    "normalise",
    "ood_name",
    "ood_set",
    "resize_gray",
    "synthetic_set",
    "to_image_set",
]
