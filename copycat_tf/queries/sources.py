"""The finite and endless query sources: folders, list files, arrays and noise.

Each source is a deterministic stream of cheap ``(key, ref)`` descriptors plus a
``materialize`` step that decodes one of them; :class:`~copycat_tf.queries.QuerySource`
mixes them. The ``photos`` source lives in :mod:`copycat_tf.queries.photos`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from copycat_tf.errors import CopycatError, first_line
from copycat_tf.files import file_sha256
from copycat_tf.images import IMAGE_EXTENSIONS, ImageFitter, Rejection
from copycat_tf.npz import read_npz

log = logging.getLogger(__name__)


NOISE_KINDS = ("uniform", "gaussian")
ARRAY_EXTENSIONS = (".npy", ".npz")
_GAUSSIAN_MEAN, _GAUSSIAN_STD = 127.5, 50.0

# Seed-sequence tags keep the random streams of one seed independent of each other, so all
# of them live here; the mix and the transforms are drawn by the stream (stream.py).
_TAG_SHUFFLE, SEED_TAG_MIX, _TAG_ITEM, SEED_TAG_TRANSFORM = 1, 2, 3, 4


def item_rng(seed: int, position: int, index: int) -> np.random.Generator:
    """The generator of item ``index`` of the source at ``position`` in the mix: any item of
    an endless source (noise, crops) can be made alone, in any order, on any worker."""
    return np.random.default_rng([seed, _TAG_ITEM, position, index])


class ItemSource:
    """One source of a :class:`~copycat_tf.queries.QuerySource`'s mix: a stream of
    ``(key, ref)`` descriptors and how to materialize one.

    Attributes:
        kind: ``"folder"``, ``"list"``, ``"array"``, ``"noise:uniform"``, ... .
        size: number of items when finite, else ``None``.
        folder: the folder read, for sources that read one (else ``None``).
    """

    kind: str
    size: int | None = None
    folder: Path | None = None

    def items(self) -> Iterator[tuple[str, Any]]:
        raise NotImplementedError

    def materialize(self, ref, fitter: ImageFitter) -> np.ndarray | Rejection:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """What must not change for a resumed stream to equal the first run's."""
        raise NotImplementedError


class _FileSource(ItemSource):
    """Image files in a seeded shuffle of their sorted order (a folder or a list file)."""

    def __init__(self, kind: str, entries: list[tuple[str, str]], fingerprint: str, *,
                 seed: int, position: int, folder: Path | None = None):
        order = np.random.default_rng([seed, _TAG_SHUFFLE, position]).permutation(len(entries))
        self.kind = kind
        self.entries = [entries[i] for i in order]
        self.size = len(entries)
        self.folder = folder
        self._fingerprint = fingerprint

    def items(self):
        return iter(self.entries)

    def materialize(self, ref, fitter):
        return fitter.read(ref)

    def fingerprint(self):
        return self._fingerprint


def folder_source(root: Path, *, seed: int, position: int) -> _FileSource:
    """Every file under ``root`` (see :func:`list_folder`), keyed by its relative path; a folder
    that holds no image is a one-line error."""
    unique = list_folder(root)
    if not any(key.lower().endswith(IMAGE_EXTENSIONS) for key, _ in unique):
        raise CopycatError(
            f"query folder {root} has {len(unique)} file(s) but no images "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    listing = hashlib.sha256("\0".join(key for key, _ in unique).encode("utf-8", "surrogateescape"))
    return _FileSource("folder", unique, listing.hexdigest(), seed=seed, position=position,
                       folder=root)


def list_folder(root: Path) -> list[tuple[str, str]]:
    """``(relative path, path)`` of every file under ``root`` in sorted order: symlinked folders
    not entered, each real file once. A folder that is unreadable or empty is a one-line error."""
    errors: list[OSError] = []
    entries, seen, duplicates, linked_dirs = [], set(), 0, 0
    # followlinks=False: a symlinked folder (possibly a loop) is listed but never entered.
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append, followlinks=False):
        linked_dirs += sum(os.path.islink(os.path.join(dirpath, d)) for d in dirnames)
        for name in filenames:
            path = os.path.join(dirpath, name)
            entries.append((Path(os.path.relpath(path, root)).as_posix(), path))
    if any(Path(e.filename or "") == root for e in errors) or not os.access(root, os.R_OK | os.X_OK):
        raise CopycatError(f"query folder {root}: cannot read it; check its permissions")
    for error in errors:
        log.warning("query folder %s: skipping unreadable %s (%s)", root, error.filename, error.strerror)
    if linked_dirs:
        log.info("query folder %s: not following %d symlinked folder(s)", root, linked_dirs)
    entries.sort()
    unique = []
    for key, path in entries:
        real = os.path.realpath(path)
        if real in seen:
            duplicates += 1
            continue
        seen.add(real)
        unique.append((key, path))
    if duplicates:
        log.info("query folder %s: %d symlink(s) point at files already listed; each is sent once",
                 root, duplicates)
    if not unique:
        raise CopycatError(f"query folder {root} has no files; point --queries at a folder of images")
    return unique


def list_source(path: Path, *, seed: int, position: int) -> _FileSource:
    """The image paths listed in the UTF-8 text file ``path``, one a line (``#`` comments and
    blank lines skipped, relative paths resolved against the list's folder)."""
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except OSError as exc:
        raise CopycatError(f"query list {path}: cannot read it ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise CopycatError(f"query list {path}: not UTF-8 text; expected one image path per line") from exc
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise CopycatError(f"query list {path} lists no image paths; expected one path per line")
    entries = [(line, str(path.parent / line)) for line in lines]
    return _FileSource("list", entries, hashlib.sha256(data).hexdigest(), seed=seed,
                       position=position)


class ArraySource(ItemSource):
    """Images from a ``.npy`` / ``.npz`` array, in a seeded shuffle."""

    kind = "array"

    def __init__(self, path: Path, *, seed: int, position: int):
        self.path = path
        self.pixels = _load_array(path)
        self.scale = _pixel_scale(self.pixels, path)
        self.size = len(self.pixels)
        self.order = np.random.default_rng([seed, _TAG_SHUFFLE, position]).permutation(self.size)

    def items(self):
        return ((str(int(i)), int(i)) for i in self.order)

    def materialize(self, ref, fitter):
        pixels = np.asarray(self.pixels[ref])
        if pixels.dtype != np.uint8:
            pixels = np.rint(pixels.astype(np.float64) * self.scale).astype(np.uint8)
        return fitter.fit_array(pixels)

    def fingerprint(self):

        return file_sha256(self.path)


def _load_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            # A memory map keeps a big array on disk; only the items sent are read.
            pixels = np.load(path, mmap_mode="r", allow_pickle=False)
        else:

            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
            if "x" in names:
                name = "x"
            elif len(names) == 1:
                name = names[0]
            else:
                raise CopycatError(
                    f"query array {path} holds arrays {names}; name the images 'x' or keep "
                    "only one array in the file"
                )
            # Headers checked before any data is read: no pickles, no forged sizes.
            pixels = read_npz(path, [name], what=f"query array {path}")[name]
    except CopycatError:
        raise
    except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile) as exc:
        raise CopycatError(
            f"query array {path}: cannot load it with allow_pickle=False ({first_line(exc)})"
        ) from exc
    if pixels.ndim == 4 and pixels.shape[3] not in (1, 3) or pixels.ndim not in (3, 4) or 0 in pixels.shape[1:3]:
        raise CopycatError(
            f"query array {path} has shape {pixels.shape}; expected images (N, H, W), "
            "(N, H, W, 1) or (N, H, W, 3)"
        )
    if len(pixels) == 0:
        raise CopycatError(f"query array {path} holds no images (shape {pixels.shape})")
    return pixels


def _pixel_scale(pixels: np.ndarray, path: Path) -> float:
    """Factor to 0..255: uint8 as is; other numbers in [0, 1] times 255, in [0, 255] as is."""
    if pixels.dtype == np.uint8:
        return 1.0
    if not (np.issubdtype(pixels.dtype, np.floating) or np.issubdtype(pixels.dtype, np.integer)):
        raise CopycatError(f"query array {path} holds {pixels.dtype}; expected uint8 or float pixels")
    low, high = float(np.min(pixels)), float(np.max(pixels))
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high > 255:
        raise CopycatError(
            f"query array {path} holds values in [{low:g}, {high:g}]; expected pixels in "
            "[0, 1] or [0, 255] (rescale it, or save it as uint8)"
        )
    if np.issubdtype(pixels.dtype, np.floating) and high <= 1.0:
        log.info("query array %s: float values in [0, 1], scaled by 255", path)
        return 255.0
    return 1.0


class NoiseSource(ItemSource):
    """Endless random images, one generator per item so any item can be made alone."""

    def __init__(self, kind: str, *, seed: int, position: int):
        self.kind = f"noise:{kind}"
        self.noise = kind
        self.seed, self.position = seed, position

    def items(self):
        return ((str(i), i) for i in itertools.count())

    def materialize(self, ref, fitter):
        rng = item_rng(self.seed, self.position, ref)
        if self.noise == "uniform":
            return rng.integers(0, 256, fitter.image_shape, dtype=np.uint8)
        values = rng.normal(_GAUSSIAN_MEAN, _GAUSSIAN_STD, fitter.image_shape)
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)

    def fingerprint(self):
        if self.noise == "gaussian":
            return f"gaussian mean={_GAUSSIAN_MEAN} std={_GAUSSIAN_STD}"
        return self.noise
