"""Data for the examples: scikit-learn's bundled 8x8 digits, or MNIST from a local file.

Nothing is downloaded. The digits (1797 images, 8x8, 16 grey levels) ship inside the
scikit-learn wheel. MNIST is read from what the user passes as --mnist:
  - Nielsen's mnist.pkl.gz (a pickle of (train, validation, test), 50000/10000/10000, pixels
    already scaled to [0, 1]); pickle can run code, so pass only a file you trust;
  - a directory holding the four IDX files of LeCun's distribution (train-images-idx3-ubyte,
    train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally
    .gz); the last 10000 training images become the validation set, as in Nielsen's split.

Splits are deterministic and do not depend on the training seed, so runs with different
seeds are scored on the same test images.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass

import numpy as np
import torch

SPLIT_SEED = 0  # the digits' train/validation/test permutation; fixed on purpose (see above)
DIGITS_VAL = DIGITS_TEST = 300  # of 1797 images; the remaining 1197 train
IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


@dataclass
class Splits:
    """Flattened images (float32 in [0, 1], shape (n, side*side)) and int64 labels."""

    name: str
    side: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def sizes(self) -> dict:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """(n, side*side) -> (n, 1, side, side) for the convolutional networks."""
        return x.view(-1, 1, self.side, self.side)


QUICK_MNIST_TRAIN = 10000  # --quick on MNIST trains on the first 10000 of its 50000 training images


def for_args(args) -> Splits:
    """The data an example's command line asks for (--mnist, --quick)."""
    return load(args.mnist, train_limit=QUICK_MNIST_TRAIN if (args.quick and args.mnist) else None)


def load(mnist: str | None = None, train_limit: int | None = None) -> Splits:
    """The digits when `mnist` is None, else MNIST from that path. train_limit keeps the first
    that many training images (quick runs on MNIST)."""
    s = _digits() if mnist is None else _mnist(mnist)
    if train_limit is not None and train_limit < len(s.y_train):
        s.x_train, s.y_train = s.x_train[:train_limit], s.y_train[:train_limit]
    return s


def _digits() -> Splits:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0  # 0..16 grey levels -> [0, 1]
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    test, val, train = perm[:DIGITS_TEST], perm[DIGITS_TEST:DIGITS_TEST + DIGITS_VAL], perm[DIGITS_TEST + DIGITS_VAL:]
    return Splits("digits", 8, x[train], y[train], x[val], y[val], x[test], y[test])


def _mnist(path: str) -> Splits:
    if os.path.isdir(path):
        return _mnist_idx(path)
    if os.path.isfile(path) and path.endswith((".pkl.gz", ".pkl")):
        return _mnist_pickle(path)
    raise FileNotFoundError(f"--mnist: {path!r} is neither Nielsen's mnist.pkl.gz nor a directory of the four MNIST "
                            f"IDX files ({', '.join(IDX_FILES.values())}, optionally .gz)")


def _mnist_pickle(path: str) -> Splits:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        train, val, test = pickle.load(f, encoding="latin1")  # written by Python 2
    parts = []
    for x, y in (train, val, test):
        parts += [torch.tensor(np.asarray(x, dtype=np.float32).reshape(len(y), -1)),
                  torch.tensor(np.asarray(y, dtype=np.int64))]
    return Splits("mnist", _side(parts[0], path), *parts)


def _mnist_idx(directory: str) -> Splits:
    arrays = {}
    for key, stem in IDX_FILES.items():
        for name in (stem, stem + ".gz"):
            full = os.path.join(directory, name)
            if os.path.isfile(full):
                arrays[key] = read_idx(full)
                break
        else:
            raise FileNotFoundError(f"--mnist: {directory!r} has no {stem} (or {stem}.gz)")
    x_all = torch.tensor(arrays["x_train"].reshape(len(arrays["x_train"]), -1), dtype=torch.float32) / 255.0
    y_all = torch.tensor(arrays["y_train"], dtype=torch.int64)
    n_val = 10000 if len(y_all) > 20000 else len(y_all) // 6  # Nielsen's 50000/10000; small files keep 1/6
    x_test = torch.tensor(arrays["x_test"].reshape(len(arrays["x_test"]), -1), dtype=torch.float32) / 255.0
    y_test = torch.tensor(arrays["y_test"], dtype=torch.int64)
    return Splits("mnist", _side(x_all, directory), x_all[:-n_val], y_all[:-n_val], x_all[-n_val:], y_all[-n_val:],
                  x_test, y_test)


def read_idx(path: str) -> np.ndarray:
    """An IDX file (unsigned-byte data only, as MNIST's): big-endian header, then the array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"--mnist: {path} is too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"--mnist: {path} is not an unsigned-byte IDX file (header {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"--mnist: {path} holds {body.size} values, its header says {dims}")
    return body.reshape(dims)


def _side(x: torch.Tensor, path: str) -> int:
    side = int(round(x.shape[1] ** 0.5))
    if side * side != x.shape[1]:
        raise ValueError(f"--mnist: images in {path} have {x.shape[1]} pixels, not a square")
    return side
