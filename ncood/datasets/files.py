"""Image sets left on disk (:class:`~ncood.datasets.base.ImageFiles`), read from the layouts
users have: an image list (OpenOOD's ``relative/path label`` lines), an ImageFolder tree (one
subfolder per class) and ILSVRC-2012 as its official archives extract (``train/nXXXXXXXX/``,
``val/`` flat with the devkit's ground truth, or in class folders as torchvision arranges it).

Only paths and labels are read here: the images are decoded batch by batch when a model runs
(ncood.extraction.inputs), so that memory does not grow with their number. Every missing list,
folder or image is one line naming it and where it was expected.
"""

from __future__ import annotations

import ast
import os
import tarfile
from array import array
from pathlib import Path

import torch

from ncood.datasets.base import ImageFiles, InDistribution
from ncood.datasets.normalization import IMAGENET_MEAN, IMAGENET_STD
from ncood.errors import NcoodError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
# the peers' default resize and centre crop of a set read from files
DEFAULT_RESIZE, DEFAULT_CROP = 256, 224
DEVKIT = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META = "data/meta.mat"


def _labels(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def list_images(folder: Path) -> list[Path]:
    """Every image under ``folder``, recursively, in sorted path order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p.name))


def read_image_list(
    list_file: str | Path, root: str | Path, *, ood: bool = False, hint: str = ""
) -> ImageFiles:
    """An image list in OpenOOD's format (its ``ImglistDataset``): one ``relative/path label``
    per line, split at the first space, the label an integer (or, as that reader also
    accepts, a dict literal with a ``label`` key), the path relative to ``root``. With
    ``ood`` every label is −1. A missing list, a bad line or a missing image folder is one
    line (``hint``: where the files come from); a single missing file is named when read.

    The paths are strings (``os.fspath``-able like a ``Path``) and the labels one int64 array:
    ImageNet-1K's 1.28M train images as ``Path`` objects would cost about 430 MiB and 17 s."""
    list_file = Path(list_file).expanduser()
    if not list_file.is_file():
        raise NcoodError(f"image list not found: {list_file}" + (f"; {hint}" if hint else ""))
    base = os.fspath(Path(root).expanduser()) + os.sep
    paths: list[str] = []
    labels = array("q")  # 8 bytes a label, not a Python int each
    first_in_folder: dict[str, tuple[str, int]] = {}
    with open(list_file, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip("\r\n")
            if not line.strip():
                continue
            name, space, extra = line.partition(" ")
            label = _list_label(extra) if space else None
            if label is None or not name or name.startswith("/"):
                raise NcoodError(
                    f"{list_file}, line {number}: expected 'relative/path label', got {line!r}"
                )
            path = base + name
            first_in_folder.setdefault(os.path.dirname(path), (path, number))
            paths.append(path)
            labels.append(-1 if ood else label)
    if not paths:
        raise NcoodError(f"image list {list_file} lists no image")
    for folder, (path, number) in first_in_folder.items():  # a set not downloaded: at once
        if not os.path.isdir(folder):
            raise NcoodError(
                f"{list_file}, line {number}: image {path} is missing (its folder {folder} is "
                f"not there)" + (f"; {hint}" if hint else "")
            )
    return ImageFiles(paths, torch.frombuffer(labels, dtype=torch.int64).clone())


def _list_label(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = ast.literal_eval(text.strip())
        value = value["label"] if isinstance(value, dict) else value
    except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def class_folders(folder: Path) -> list[str]:
    """The class names of an ImageFolder tree: its subfolders, sorted (their labels 0, 1, …)."""
    if not folder.is_dir():
        raise NcoodError(f"image folder not found: {folder}")
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def read_image_folder(folder: str | Path, classes: list[str] | None = None) -> ImageFiles:
    """An ImageFolder tree: ``folder/<class>/**/<image>``, in torchvision's ``ImageFolder``
    order (classes sorted, then each class's files as its sorted walk finds them). ``classes``
    gives the label of each class name (a test split takes its train split's)."""
    folder = Path(folder).expanduser()
    found = class_folders(folder)
    if not found:
        raise NcoodError(f"no class subfolders in {folder} (expected {folder}/<class>/<images>)")
    classes = found if classes is None else classes
    index = {name: label for label, name in enumerate(classes)}
    unknown = [name for name in found if name not in index]
    if unknown:
        raise NcoodError(
            f"{folder} has class folder {unknown[0]!r}, not among the {len(classes)} classes of "
            f"the training split"
        )
    paths: list[str] = []  # strings, as the list reader keeps them (a Path costs 0.3 KiB)
    labels: list[int] = []
    for name in found:
        for where, _, names in sorted(os.walk(folder / name, followlinks=True)):
            for file in sorted(names):
                if is_image(file):
                    paths.append(os.path.join(where, file))
                    labels.append(index[name])
    if not paths:
        raise NcoodError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return ImageFiles(paths, _labels(labels))


# --- ILSVRC-2012 ------------------------------------------------------------------------------


def _flat(folder: Path) -> bool:
    """A folder of images without class subfolders (ILSVRC-2012's val archive extracted)."""
    return folder.is_dir() and not class_folders(folder)


def read_ilsvrc_val(root: Path, classes: list[str]) -> ImageFiles:
    """The 50,000 flat ``val/ILSVRC2012_val_%08d.JPEG`` files labelled by the devkit's ground
    truth (ILSVRC2012_IDs, mapped to WordNet ids by its ``meta.mat``, then to ``classes``)."""
    ground_truth, meta = _devkit_files(root)
    ids_to_wnid = _ilsvrc_wnids(meta)
    index = {name: label for label, name in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for number, line in enumerate(ground_truth.split(), 1):
        wnid = ids_to_wnid.get(int(line))
        if wnid not in index:
            raise NcoodError(f"{DEVKIT}'s ground truth names class {wnid or line}, not in train/")
        path = root / "val" / f"ILSVRC2012_val_{number:08d}.JPEG"
        if not path.is_file():
            raise NcoodError(f"ILSVRC-2012 validation image {path.name} not found in {path.parent}")
        paths.append(path)
        labels.append(index[wnid])
    return ImageFiles(paths, _labels(labels))


def _devkit_files(root: Path) -> tuple[str, bytes]:
    """The devkit's ground truth and meta.mat: from its archive as distributed, or extracted."""
    archive = root / f"{DEVKIT}.tar.gz"
    folder = root / DEVKIT
    if (folder / GROUND_TRUTH).is_file() and (folder / META).is_file():
        return (folder / GROUND_TRUTH).read_text(), (folder / META).read_bytes()
    if archive.is_file():
        try:
            with tarfile.open(archive) as tar:
                members = {m.name.split("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
                if GROUND_TRUTH in members and META in members:
                    text = tar.extractfile(members[GROUND_TRUTH]).read().decode()
                    return text, tar.extractfile(members[META]).read()
        except (OSError, tarfile.TarError) as exc:
            raise NcoodError(f"could not read {archive} ({exc})") from None
        raise NcoodError(f"{archive} holds no {GROUND_TRUTH} and {META}")
    raise NcoodError(
        f"ILSVRC-2012's val/ is flat but its labels are missing: put {DEVKIT}.tar.gz (the "
        f"devkit, as distributed) in {root}, or val/ in one folder per class"
    )


def _ilsvrc_wnids(meta_mat: bytes) -> dict[int, str]:
    """ILSVRC2012_ID → WordNet id of the leaf synsets (the 1,000 classes) of ``meta.mat``."""
    import io

    from scipy.io import loadmat

    try:
        synsets = loadmat(io.BytesIO(meta_mat), squeeze_me=True)["synsets"]
        return {
            int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0
        }
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise NcoodError(f"could not read the devkit's {META} ({exc})") from None


def read_ilsvrc2012(root: str | Path) -> tuple[ImageFiles, ImageFiles, list[str]]:
    """ILSVRC-2012 (train and val) under ``root``, and its class names (WordNet ids, sorted:
    the label order of torchvision's ImageNet and of every ImageNet-trained checkpoint)."""
    root = Path(root).expanduser()
    train_dir = root / "train"
    if not train_dir.is_dir():
        archive = root / "ILSVRC2012_img_train.tar"
        extract = (
            f"extract {archive.name} into {train_dir} and each nXXXXXXXX.tar in it into its "
            f"own folder"
            if archive.is_file()
            else f"expected {train_dir}/nXXXXXXXX/*.JPEG"
        )
        raise NcoodError(f"ILSVRC-2012 train folder not found: {extract}")
    classes = class_folders(train_dir)
    train = read_image_folder(train_dir, classes)
    val_dir = root / "val"
    if not val_dir.is_dir():
        raise NcoodError(
            f"ILSVRC-2012 val folder not found: expected {val_dir} (ILSVRC2012_img_val.tar "
            f"extracted there)"
        )
    val = read_ilsvrc_val(root, classes) if _flat(val_dir) else read_image_folder(val_dir, classes)
    return train, val, classes


def read_split_folders(root: str | Path, name: str) -> InDistribution:
    """``folder:PATH`` as an in-distribution set: ``PATH/train`` and ``PATH/val`` (or ``test``),
    ImageFolder trees with the same classes, or ILSVRC-2012's layout (``val/`` flat, labelled by
    the devkit). Left on disk, with ImageNet's statistics and the peers' 256 → 224 crop."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise NcoodError(f"image folder not found: {root}")
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), root / "val")
    if not (root / "train").is_dir() or not test_dir.is_dir():
        raise NcoodError(
            f"folder:{root} as --dataset needs {root}/train/ and {root}/val/ (or test/), each "
            f"with one subfolder per class, or ILSVRC-2012's layout"
        )
    if _flat(test_dir) and test_dir.name == "val":
        train, test, classes = read_ilsvrc2012(root)
    else:
        classes = class_folders(root / "train")
        train = read_image_folder(root / "train", classes)
        test = read_image_folder(test_dir, classes)
    return InDistribution(
        name,
        train,
        test,
        len(classes),
        IMAGENET_MEAN,
        IMAGENET_STD,
        resize=DEFAULT_RESIZE,
        crop=DEFAULT_CROP,
    )


def folder_files(folder: Path) -> ImageFiles:
    """Every image under ``folder`` as an OOD set left on disk (label −1), in sorted order."""
    if not folder.is_dir():
        raise NcoodError(f"OOD image folder not found: {folder}")
    paths = list_images(folder)
    if not paths:
        raise NcoodError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return ImageFiles(paths, torch.full((len(paths),), -1, dtype=torch.int64))
