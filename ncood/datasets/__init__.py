"""Datasets: every CIFAR-sized image set as one uint8 tensor, larger ones left on disk, named by
the plugins that register them.

``base`` holds the types and conversions; ``synthetic`` generated CIFAR-shaped images;
``normalization`` ImageNet's statistics; ``sources`` a published dataset's files
(torchvision's formats, one-line errors); ``idx`` the IDX files of (Fashion-)MNIST; ``files``
sets left on disk (image lists, ImageFolder trees, ILSVRC-2012); ``image_folder`` any folder
of images at 32 px (``folder:PATH``); ``openood`` OpenOOD v1.5's benchmarks and image lists
(``--benchmark openood:cifar100``); ``loading`` turns names into data through the host's
registry. The named sets themselves are plugins (``register_datasets``:
plugins/datasets/embedded.py, plugins/datasets/torchvision.py, plugins/datasets/openood.py).
It may import :mod:`ncood.host` (the registries), :mod:`ncood.progress` and :mod:`ncood.errors`.
"""

from importlib import import_module

# name → the module that defines it. Names load on first use (PEP 562), so that importing a
# light submodule (ncood.datasets.openood's protocol tables, which ``ncood plugins`` reads)
# does not import torch through the package.
_HOMES = {
    **dict.fromkeys(
        (
            "IMAGE_SIZE",
            "DataContext",
            "ImageFiles",
            "ImageSet",
            "InDistribution",
            "channel_stats",
            "normalize",
            "ood_set",
            "resize_gray",
            "to_image_set",
        ),
        "ncood.datasets.base",
    ),
    **dict.fromkeys(
        (
            "FOLDER_PREFIX",
            "check_names",
            "default_data_dir",
            "folder_path",
            "in_distribution",
            "load_data",
            "ood_name",
            "out_of_distribution",
        ),
        "ncood.datasets.loading",
    ),
    "synthetic_set": "ncood.datasets.synthetic",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'ncood.datasets' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


__all__ = sorted(_HOMES)
