"""t-SNE of test features (openTSNE): PCA to 50 dimensions first, a fixed seed, a subsample.

The report shows the test features of two epochs coloured by class (the TP's Figures 5 and 6).
An embedding costs seconds, so it is cached next to the analysis, in
``analysis/epoch-NNNN/tsne.safetensors``, written atomically and keyed by the features file's
checksum and every parameter: a changed file or setting recomputes it, nothing else does.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from ncood.errors import NcoodError
from ncood.store.atomic import atomic_path
from ncood.store.mapped import MappedFile, MappedFileError
from ncood.store.run import RunDir

CACHE_NAME = "tsne.safetensors"
CACHE_FORMAT = "ncood-tsne"


@dataclass(frozen=True)
class TsneSettings:
    """What an embedding depends on (besides the features)."""

    max_points: int = 2000  # stratified subsample of the test set
    max_classes: int = 10  # the first classes only: 100 colours cannot be told apart
    pca_dim: int = 50
    perplexity: float = 30.0
    seed: int = 0
    n_jobs: int = 1  # one thread: reproducible, and polite on a shared machine


def pca(features: np.ndarray, dim: int) -> np.ndarray:
    """Project centred features on their top ``dim`` principal axes (exact SVD, float64)."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0)
    if x.shape[1] <= dim:
        return x
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:dim].T


def subsample(labels: np.ndarray, max_points: int, max_classes: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_points`` samples of the first ``max_classes`` classes,
    drawn per class in proportion to its size (a fixed seed: the same points every time)."""
    classes = np.unique(labels)[:max_classes]
    pool = np.flatnonzero(np.isin(labels, classes))
    if pool.size <= max_points:
        return pool
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in classes:
        members = pool[labels[pool] == cls]
        take = max(1, max_points * members.size // pool.size)  # floor: never above the cap
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def embed(
    features: np.ndarray,
    *,
    pca_dim: int = 50,
    perplexity: float = 30.0,
    seed: int = 0,
    n_jobs: int = 1,
) -> np.ndarray:
    """2-D openTSNE embedding (PCA initialisation, openTSNE's default schedule), N×2 float32."""
    from openTSNE import TSNE

    n = features.shape[0]
    if n < 5:
        raise NcoodError(f"t-SNE needs at least 5 points, got {n}")
    points = pca(features, pca_dim)
    perplexity = min(perplexity, (n - 1) / 3)  # openTSNE needs 3·perplexity neighbours
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        initialization="pca",
        random_state=seed,
        n_jobs=n_jobs,
        verbose=False,
    )
    return np.asarray(tsne.fit(points), dtype=np.float32)


def read_test_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``test/features`` (a view on the mapped file: only the rows used are read) and
    ``test/labels`` of a features file, nothing else of the dump."""
    try:
        mapped = MappedFile(path)
        return mapped.array("test/features"), mapped.read("test/labels")
    except (MappedFileError, OSError, KeyError) as exc:
        raise NcoodError(f"{path}: cannot read the test features ({exc})") from None


def split_digest(path: Path) -> str:
    """sha256 of the test split's bytes (what the embedding depends on): at ImageNet size a
    few hundred MB instead of the whole 17 GB file."""
    try:
        mapped = MappedFile(path)
        digest = hashlib.sha256()
        for name in ("test/features", "test/labels"):
            info = mapped.tensors[name]
            digest.update(f"{name}:{info.dtype.str}:{list(info.shape)};".encode())
            step = max(1, (16 << 20) // max(info.row_bytes, 1))
            for start in range(0, info.shape[0], step):
                digest.update(mapped.read_rows(name, start, start + step).tobytes())
        return digest.hexdigest()
    except (MappedFileError, OSError, KeyError) as exc:
        raise NcoodError(f"{path}: cannot read the test features ({exc})") from None


def _fingerprint(run: RunDir, epoch: int, settings: TsneSettings) -> dict[str, str]:
    return {
        "format": CACHE_FORMAT,
        "test_split_sha256": split_digest(run.features(epoch)),  # the data, not the manifest
        **{key: str(value) for key, value in asdict(settings).items()},
    }


def cached_embedding(
    run: RunDir, epoch: int, settings: TsneSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(embedding N×2, labels N) of epoch ``epoch``'s test features, computed once then cached."""
    settings = settings or TsneSettings()
    cache = run.analysis_dir(epoch) / CACHE_NAME
    wanted = _fingerprint(run, epoch, settings)
    if cache.is_file():
        try:
            with safe_open(str(cache), framework="numpy") as handle:
                stored = dict(handle.metadata() or {})
            if stored == wanted:
                tensors = load_file(str(cache))
                return tensors["embedding"], tensors["labels"]
        except (SafetensorError, OSError, KeyError):
            pass  # an unreadable cache is recomputed
    features, labels = read_test_split(run.features(epoch))
    chosen = subsample(labels, settings.max_points, settings.max_classes, settings.seed)
    embedding = embed(
        features[chosen],
        pca_dim=settings.pca_dim,
        perplexity=settings.perplexity,
        seed=settings.seed,
        n_jobs=settings.n_jobs,
    )
    tensors = {"embedding": embedding, "labels": labels[chosen], "indices": chosen}
    try:
        with atomic_path(cache) as tmp:
            save_file(tensors, str(tmp), metadata=wanted)
    except OSError:
        pass  # a read-only run still gets its figure; only the cache is lost
    return embedding, labels[chosen]
