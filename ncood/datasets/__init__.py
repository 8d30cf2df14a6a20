"""Datasets: every CIFAR-sized image set as one uint8 tensor, larger ones left on disk, named by
the plugins that register them.

``base`` holds the types and conversions; ``synthetic`` generated CIFAR-shaped images;
``sources`` a published dataset's files (torchvision's formats, one-line errors); ``idx`` the
IDX files of (Fashion-)MNIST; ``files`` sets left on disk (image lists, ImageFolder trees,
ILSVRC-2012); ``image_folder`` any folder of images at 32 px (``folder:PATH``); ``openood``
OpenOOD v1.5's benchmarks and image lists (``--benchmark openood:cifar100``); ``loading`` turns
names into data through the host's registry. The named sets themselves are plugins
(``register_datasets``: plugins/datasets/embedded.py, plugins/datasets/torchvision.py,
plugins/datasets/openood.py).
It may import :mod:`ncood.host` (the registries), :mod:`ncood.progress` and :mod:`ncood.errors`.
"""

from ncood.datasets.base import (
    IMAGE_SIZE,
    DataContext,
    ImageFiles,
    ImageSet,
    InDistribution,
    channel_stats,
    normalize,
    ood_set,
    resize_gray,
    to_image_set,
)
from ncood.datasets.loading import (
    FOLDER_PREFIX,
    check_names,
    default_data_dir,
    folder_path,
    in_distribution,
    load_data,
    ood_name,
    out_of_distribution,
)
from ncood.datasets.synthetic import synthetic_set

__all__ = [
    "FOLDER_PREFIX",
    "IMAGE_SIZE",
    "DataContext",
    "ImageFiles",
    "ImageSet",
    "InDistribution",
    "channel_stats",
    "check_names",
    "default_data_dir",
    "folder_path",
    "in_distribution",
    "load_data",
    "normalize",
    "ood_name",
    "ood_set",
    "out_of_distribution",
    "resize_gray",
    "synthetic_set",
    "to_image_set",
]
