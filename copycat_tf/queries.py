"""Query sources: where the unlabeled images sent to the oracle come from.

Every source kind becomes the same stream through one entry point,
:func:`open_query_source`. A spec string names each source:

- a folder, read recursively (ImageNet class folders or flat; jpg, png, bmp, gif, webp,
  tiff), or a ``.txt`` file listing image paths (relative ones resolve against the list's
  folder);
- a ``.npy`` / ``.npz`` image array (``x`` or the only array), loaded with
  ``allow_pickle=False``;
- ``noise:uniform`` or ``noise:gaussian``: the paper's "random" baseline;
- ``photos``: real photographs shipped offline with scikit-image, scikit-learn, matplotlib
  and some Debian packages, turned into endless distinct queries by random crops, rescales
  and flips.

Any spec takes an optional ``:WEIGHT`` suffix to mix sources in proportion, e.g. the
paper's NPD+PD setting: ``["imagenet/", "pd_images/:0.2"]``.

A source is a deterministic stream of cheap item descriptors (a file path, an array
index, a noise index, a photo crop) plus a ``materialize`` step that decodes and fits one
item to the target's contract. Resuming skips descriptors without decoding them, and
:meth:`QuerySource.queries` materializes in a thread pool (Pillow releases the GIL) ahead of
the consumer, so the oracle does not wait on the disk.

Example:

>>> source = open_query_source(["imagenet/", "noise:uniform:0.1"], (64, 64, 3), seed=0)  # doctest: +SKIP
>>> for query in source.queries():                                     # doctest: +SKIP
...     query.image.shape if query.image is not None else query.rejection
(64, 64, 3)
"""

from __future__ import annotations

import bisect
import functools
import glob
import hashlib
import importlib.util
import itertools
import logging
import math
import os
import zipfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageOps

from copycat_tf.errors import CopycatError

log = logging.getLogger(__name__)

RESIZE_POLICIES = ("resize", "center-crop", "pad")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".webp",
                    ".tif", ".tiff")
#: Decoders Pillow may try on query files; anything else is rejected unopened.
PIL_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "WEBP", "TIFF")
#: Images declaring more pixels than this are rejected from their header, before decoding.
DEFAULT_MAX_PIXELS = 40_000_000
NOISE_KINDS = ("uniform", "gaussian")
ARRAY_EXTENSIONS = (".npy", ".npz")
_GAUSSIAN_MEAN, _GAUSSIAN_STD = 127.5, 50.0

# Seed-sequence tags keep the random streams of one seed independent of each other.
_TAG_SHUFFLE, _TAG_MIX, _TAG_ITEM, _TAG_TRANSFORM = 1, 2, 3, 4


class Rejection(NamedTuple):
    """Why an item was not sent to the oracle (a corrupt file, a non-image, ...)."""

    reason: str


@dataclass(frozen=True)
class Item:
    """One entry of a source's stream, before decoding.

    Attributes:
        source: index of the source in the mix (:attr:`QuerySource.specs`).
        key: what identifies the item in its source: a path relative to the folder, an
            array index, a noise index, a photo crop.
        ref: the source's private handle to materialize it.
    """

    source: int
    key: str
    ref: Any
    transform: TransformDraw | None = None


@dataclass(frozen=True)
class Query:
    """One materialized item: an image ready for the oracle, or the reason it is not.

    Attributes:
        position: the item's position in the whole stream (rejected items count).
        source: index of the source in the mix.
        key: see :class:`Item`.
        image: uint8 ``(H, W, C)`` fitted to the contract, or ``None`` when rejected.
        rejection: the reason, or ``None``.
    """

    position: int
    source: int
    key: str
    image: np.ndarray | None
    rejection: str | None


class ImageFitter:
    """Turns any decoded picture into the uint8 ``(H, W, C)`` image a contract accepts.

    Colour modes become RGB or grayscale as the contract's channel count requires
    (transparency is composited on black, 16-bit and float pixels are scaled to 8 bits),
    then the resize policy brings the picture to the contract's size.

    Args:
        image_shape: ``(height, width, channels)``, channels 1 or 3.
        resize: ``"resize"`` (stretch), ``"center-crop"`` (cover, then crop the centre) or
            ``"pad"`` (fit inside, black borders).
        max_pixels: files declaring more pixels are rejected before decoding.

    Example:

    >>> fitter = ImageFitter((32, 32, 3), resize="center-crop")
    >>> fitter.read("cat.jpg").shape                                  # doctest: +SKIP
    (32, 32, 3)
    """

    def __init__(self, image_shape, resize: str = "resize", max_pixels: int = DEFAULT_MAX_PIXELS):
        if resize not in RESIZE_POLICIES:
            raise CopycatError(f"resize must be one of {RESIZE_POLICIES}; received {resize!r}")
        height, width, channels = (int(v) for v in image_shape)
        if channels not in (1, 3) or height < 1 or width < 1:
            raise CopycatError(
                f"image_shape must be (height, width, 1 or 3); received {tuple(image_shape)}"
            )
        if int(max_pixels) < 1:
            raise CopycatError(f"max_pixels must be >= 1; received {max_pixels}")
        self.image_shape = (height, width, channels)
        self.resize = resize
        self.max_pixels = int(max_pixels)
        self.mode = "L" if channels == 1 else "RGB"

    def read(self, path: str) -> np.ndarray | Rejection:
        """Decode one image file and fit it; a :class:`Rejection` says why it cannot be."""
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            return Rejection(f"not an image file (extension {os.path.splitext(path)[1] or 'none'!r})")
        try:
            size = os.path.getsize(path)
            if not os.path.isfile(path):  # a FIFO would block the read, a device never end
                return Rejection("not a regular file (a pipe, device or socket)")
            if size == 0:
                return Rejection("empty file (0 bytes)")
            with open(path, "rb") as handle:
                return self._decode(handle)
        except OSError as exc:
            return Rejection(f"cannot read: {exc.strerror or exc}")

    def _decode(self, handle) -> np.ndarray | Rejection:
        try:
            image = Image.open(handle, formats=PIL_FORMATS)
        except Image.DecompressionBombError as exc:
            return Rejection(f"decompression bomb: {exc}")
        except Image.UnidentifiedImageError:
            return Rejection("not a recognised image (jpg, png, bmp, gif, webp, tiff)")
        except Exception as exc:  # noqa: BLE001 - hostile bytes make Pillow raise anything
            return Rejection(f"corrupt image header: {_brief(exc)}")
        width, height = image.size
        if width * height > self.max_pixels:
            return Rejection(
                f"decompression bomb guard: {width}x{height} = {width * height:,} pixels "
                f"> max_pixels {self.max_pixels:,}"
            )
        try:
            self._draft(image)
            image.load()
            image = ImageOps.exif_transpose(image)
            return self.fit(image)
        except Image.DecompressionBombError as exc:
            return Rejection(f"decompression bomb: {exc}")
        except Exception as exc:  # noqa: BLE001 - corrupt data fails deep inside decoders
            return Rejection(f"corrupt or truncated image: {_brief(exc)}")

    def _draft(self, image: Image.Image) -> None:
        """Let JPEG decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller."""
        if image.format not in ("JPEG", "MPO"):  # MPO: multi-picture JPEGs from cameras
            return
        height, width, _ = self.image_shape
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated 90 degrees by EXIF
            width, height = height, width
        image.draft(self.mode, (width, height))

    def fit(self, image: Image.Image) -> np.ndarray:
        """Convert a Pillow image to the contract's mode and size; uint8 ``(H, W, C)``."""
        image = _to_mode(image, self.mode)
        height, width, channels = self.image_shape
        if image.size != (width, height):
            if self.resize == "resize":
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            elif self.resize == "center-crop":
                image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
            else:
                image = ImageOps.pad(image, (width, height), Image.Resampling.BILINEAR, color=0)
        pixels = np.asarray(image, dtype=np.uint8)
        return pixels[..., None] if channels == 1 else pixels

    def fit_array(self, pixels: np.ndarray) -> np.ndarray:
        """Fit a uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` array."""
        if pixels.ndim == 3 and pixels.shape == self.image_shape:
            return np.ascontiguousarray(pixels)
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[..., 0]
        return self.fit(Image.fromarray(np.ascontiguousarray(pixels)))

    def describe(self) -> dict:
        return {"image_shape": list(self.image_shape), "resize": self.resize,
                "max_pixels": self.max_pixels}


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Transparent pixels carry no colour; black is the neutral choice a model sees.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image if image.mode == mode else image.convert(mode)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grayscale to 8 bits: full scale is 255, 65535 or the maximum."""
    pixels = np.clip(np.asarray(image, dtype=np.float64), 0, None)
    if image.mode.startswith("I;16"):
        full = 65535.0
    else:
        peak = float(pixels.max(initial=0.0))
        full = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
    return Image.fromarray(np.rint(pixels * (255.0 / full)).astype(np.uint8), "L")


def _brief(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _item_rng(seed: int, position: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _TAG_ITEM, position, index])


# --------------------------------------------------------------------------- sources


class _Source:
    """One source kind: a stream of ``(key, ref)`` descriptors and how to materialize one.

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


class _FileSource(_Source):
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


def _folder_source(root: Path, *, seed: int, position: int) -> _FileSource:
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
    if not any(key.lower().endswith(IMAGE_EXTENSIONS) for key, _ in unique):
        raise CopycatError(
            f"query folder {root} has {len(unique)} file(s) but no images "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    listing = hashlib.sha256("\0".join(key for key, _ in unique).encode("utf-8", "surrogateescape"))
    return _FileSource("folder", unique, listing.hexdigest(), seed=seed, position=position,
                       folder=root)


def _list_source(path: Path, *, seed: int, position: int) -> _FileSource:
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


class _ArraySource(_Source):
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
        from copycat_tf.oracle import file_sha256

        return file_sha256(self.path)


def _load_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            # A memory map keeps a big array on disk; only the items sent are read.
            pixels = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            from copycat_tf.datasets import read_npz

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
            f"query array {path}: cannot load it with allow_pickle=False ({_brief(exc)})"
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


class _NoiseSource(_Source):
    """Endless random images, one generator per item so any item can be made alone."""

    def __init__(self, kind: str, *, seed: int, position: int):
        self.kind = f"noise:{kind}"
        self.noise = kind
        self.seed, self.position = seed, position

    def items(self):
        return ((str(i), i) for i in itertools.count())

    def materialize(self, ref, fitter):
        rng = _item_rng(self.seed, self.position, ref)
        if self.noise == "uniform":
            return rng.integers(0, 256, fitter.image_shape, dtype=np.uint8)
        values = rng.normal(_GAUSSIAN_MEAN, _GAUSSIAN_STD, fitter.image_shape)
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)

    def fingerprint(self):
        if self.noise == "gaussian":
            return f"gaussian mean={_GAUSSIAN_MEAN} std={_GAUSSIAN_STD}"
        return self.noise


@dataclass(frozen=True)
class PhotoView:
    """One query made from a pool photo: a crop box and a flip.

    A later transform (brightness, blur, ...) adds a field here and a line in :meth:`render`.
    """

    photo: int
    box: tuple[int, int, int, int]
    flip: bool

    @classmethod
    def draw(cls, rng: np.random.Generator, sizes: list[tuple[int, int]], aspect: float) -> PhotoView:
        """A random crop: 10%-100% of the short side, aspect within 3:4..4:3 of ``aspect``."""
        photo = int(rng.integers(len(sizes)))
        width, height = sizes[photo]
        side = rng.uniform(0.1, 1.0) * min(width, height)
        ratio = aspect * math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        crop_w = max(1, min(width, round(side * math.sqrt(ratio))))
        crop_h = max(1, min(height, round(side / math.sqrt(ratio))))
        left = int(rng.integers(width - crop_w + 1))
        top = int(rng.integers(height - crop_h + 1))
        return cls(photo, (left, top, left + crop_w, top + crop_h), bool(rng.random() < 0.5))

    def render(self, photo: Image.Image) -> Image.Image:
        view = photo.crop(self.box)
        return view.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if self.flip else view

    def key(self, names: list[str]) -> str:
        left, top, right, bottom = self.box
        flip = "+flip" if self.flip else ""
        return f"{names[self.photo]}@{left},{top},{right - left}x{bottom - top}{flip}"


class _PhotoSource(_Source):
    """Endless crops of the offline photo pool (see :func:`photo_pool`)."""

    kind = "photos"

    def __init__(self, image_shape, *, seed: int, position: int):
        self.pool = photo_pool()
        self.names = [name for name, _ in self.pool]
        self.sizes = [image.size for _, image in self.pool]
        height, width, _ = image_shape
        self.aspect = width / height
        self.seed, self.position = seed, position

    def items(self):
        for index in itertools.count():
            view = PhotoView.draw(_item_rng(self.seed, self.position, index), self.sizes, self.aspect)
            yield view.key(self.names), view

    def materialize(self, ref, fitter):
        return fitter.fit(ref.render(self.pool[ref.photo][1]))

    def fingerprint(self):
        text = "\n".join(f"{name} {w}x{h}" for name, (w, h) in zip(self.names, self.sizes))
        return hashlib.sha256(text.encode()).hexdigest()


_SKIMAGE_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "moon", "grass",
                   "gravel", "brick", "hubble_deep_field", "motorcycle_left", "motorcycle_right",
                   "retina", "immunohistochemistry", "page", "text")
_DEBIAN_PHOTOS = ("/usr/share/backgrounds/mate/nature/*.jpg",
                  "/usr/share/doc/opencv-doc/examples/data/*.jpg",
                  "/usr/share/doc/opencv-doc/examples/data/*.png",
                  "/usr/share/wallpapers/*/contents/images/*")


@functools.lru_cache(maxsize=1)
def photo_pool() -> tuple[tuple[str, Image.Image], ...]:
    """The offline photographs behind the ``photos`` source, decoded once per process.

    Returns:
        ``(name, Pillow image)`` pairs in a fixed order; images are RGB or L.

    Raises:
        CopycatError: none of the photos could be loaded.
    """
    pool = []
    for name, load in _photo_loaders():
        try:
            pixels = np.asarray(load())
        except Exception as exc:  # noqa: BLE001 - an optional photo that fails is just left out
            log.debug("photo pool: skipping %s (%s)", name, _brief(exc))
            continue
        image = Image.fromarray(pixels.astype(np.uint8)).convert("RGB" if pixels.ndim == 3 else "L")
        image.load()
        pool.append((name, image))
    if not pool:
        raise CopycatError(
            "the 'photos' query source found no photographs (scikit-image, scikit-learn, matplotlib "
            "sample images or Debian wallpapers); install scikit-image or use a folder"
        )
    log.info("photo pool: %d photographs", len(pool))
    return tuple(pool)


def _photo_loaders():
    def skimage_photo(name):
        from skimage import data

        if name.startswith("motorcycle_"):
            left, right, _ = data.stereo_motorcycle()
            return left if name.endswith("left") else right
        return getattr(data, name)()

    def read_file(path):
        with Image.open(path, formats=PIL_FORMATS) as image:
            return np.asarray(image.convert("RGB"))

    for name in _SKIMAGE_PHOTOS:
        yield f"skimage/{name}", functools.partial(skimage_photo, name)
    # Read the bundled files directly: importing scikit-learn or matplotlib costs seconds.
    for package, pattern in (("sklearn", "datasets/images/*.jpg"),
                             ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg")):
        spec = importlib.util.find_spec(package)
        roots = list(spec.submodule_search_locations or []) if spec else []
        for path in sorted(p for root in roots for p in glob.glob(os.path.join(root, pattern))):
            yield f"{package}/{os.path.basename(path)}", functools.partial(read_file, path)
    for pattern in _DEBIAN_PHOTOS:
        for path in sorted(glob.glob(pattern)):
            yield path, functools.partial(read_file, path)


# ------------------------------------------------------------------------ transforms


@dataclass(frozen=True)
class TransformDraw:
    """The random changes drawn for one query (see :class:`QueryTransforms`)."""

    edges: bool
    autocontrast: bool
    gamma: float | None
    threshold: tuple[float, float] | None  # (level, steepness) of a soft threshold
    blur: float | None  # radius as a share of the image's short side
    invert: bool
    place: tuple[float, float, float, int] | None  # (scale, x, y, background level)

    @property
    def code(self) -> str:
        """A short text for record keys, e.g. ``ac,g0.61,inv``."""
        parts = []
        if self.edges:
            parts.append("edges")
        if self.autocontrast:
            parts.append("ac")
        if self.gamma is not None:
            parts.append(f"g{self.gamma:.2f}")
        if self.threshold is not None:
            parts.append(f"thr{self.threshold[0]:.2f}")
        if self.blur is not None:
            parts.append(f"blur{self.blur:.3f}")
        if self.invert:
            parts.append("inv")
        if self.place is not None:
            parts.append(f"place{self.place[0]:.2f}")
        return ",".join(parts) or "none"

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The changed copy of a fitted uint8 ``(H, W, C)`` image, same shape and dtype."""
        pixels = image.astype(np.float32) / 255.0
        if self.edges:
            pixels = _sobel(pixels)
        if self.autocontrast:
            low, high = pixels.min(), pixels.max()
            if high > low:
                pixels = (pixels - low) / (high - low)
        if self.gamma is not None:
            pixels = pixels ** self.gamma
        if self.threshold is not None:
            level, steepness = self.threshold
            pixels = 1.0 / (1.0 + np.exp(-steepness * (pixels - level)))
        if self.blur is not None:
            pixels = _blur(pixels, self.blur * min(pixels.shape[:2]))
        if self.invert:
            pixels = 1.0 - pixels
        if self.place is not None:
            pixels = _place(pixels, *self.place)
        return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class QueryTransforms:
    """Random photometric and geometric changes to queries, drawn per stream position.

    A narrow-domain target (digits, clothing, faces) sends most natural photos to one or
    two of its classes; edges, contrast and gamma changes, soft thresholds, inversion and
    placing a shrunken copy on a flat background move queries towards the simple shapes
    on flat backgrounds that such targets were trained on, so the oracle's answers cover
    more of its classes. Each change is applied with its probability; none looks at the
    target.

    Args:
        share: the share of queries changed at all (0 keeps the paper's plain queries).
        edges, autocontrast, gamma, threshold, blur, invert, place: the probability of
            each change in a changed query.

    Example:

    >>> source = open_query_source("photos", (28, 28, 1), transforms=QueryTransforms(share=0.8))  # doctest: +SKIP
    """

    share: float = 0.8
    edges: float = 0.2
    autocontrast: float = 0.5
    gamma: float = 0.5
    threshold: float = 0.2
    blur: float = 0.2
    invert: float = 0.5
    place: float = 0.4

    def __post_init__(self):
        for name, value in self.describe().items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise CopycatError(f"query transform probability {name} must lie in [0, 1]; received {value!r}")

    def draw(self, rng: np.random.Generator) -> TransformDraw | None:
        """The changes for one query, or ``None`` when it stays as it is."""
        if rng.random() >= self.share:
            return None
        coin = lambda p: bool(rng.random() < p)  # noqa: E731 - one draw per change, in a fixed order
        edges, autocontrast, gamma, threshold = coin(self.edges), coin(self.autocontrast), coin(self.gamma), coin(self.threshold)
        blur, invert, place = coin(self.blur), coin(self.invert), coin(self.place)
        return TransformDraw(
            edges=edges,
            autocontrast=autocontrast,
            gamma=float(math.exp(rng.uniform(math.log(0.4), math.log(2.5)))) if gamma else None,
            threshold=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(8, 40))) if threshold else None,
            blur=float(rng.uniform(0.01, 0.04)) if blur else None,
            invert=invert,
            place=(float(rng.uniform(0.4, 0.9)), float(rng.random()), float(rng.random()),
                   int(rng.choice([0, 255, int(rng.integers(256))]))) if place else None,
        )

    def describe(self) -> dict:
        return {name: getattr(self, name) for name in
                ("share", "edges", "autocontrast", "gamma", "threshold", "blur", "invert", "place")}


def _sobel(pixels: np.ndarray) -> np.ndarray:
    padded = np.pad(pixels, ((1, 1), (1, 1), (0, 0)), mode="edge")
    dx = (padded[:-2, 2:] + 2 * padded[1:-1, 2:] + padded[2:, 2:]
          - padded[:-2, :-2] - 2 * padded[1:-1, :-2] - padded[2:, :-2])
    dy = (padded[2:, :-2] + 2 * padded[2:, 1:-1] + padded[2:, 2:]
          - padded[:-2, :-2] - 2 * padded[:-2, 1:-1] - padded[:-2, 2:])
    magnitude = np.hypot(dx, dy)
    peak = magnitude.max()
    # Below a third of a grey level a side is rounding noise of a flat image, not an edge.
    return magnitude / peak if peak > 1e-3 else np.zeros_like(magnitude)


def _blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (Pillow blurs 8-bit images only)."""
    half = max(1, math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2).astype(np.float32)
    kernel /= kernel.sum()
    padded = np.pad(pixels, ((half, half), (half, half), (0, 0)), mode="edge")
    rows = sum(w * padded[i:i + pixels.shape[0]] for i, w in enumerate(kernel))
    return sum(w * rows[:, i:i + pixels.shape[1]] for i, w in enumerate(kernel))


def _place(pixels: np.ndarray, scale: float, x: float, y: float, background: int) -> np.ndarray:
    height, width, channels = pixels.shape
    small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
    small = np.stack(
        [np.asarray(Image.fromarray(pixels[..., c]).resize((small_w, small_h), Image.BILINEAR))
         for c in range(channels)], axis=-1)
    canvas = np.full_like(pixels, background / 255.0)
    top, left = round(y * (height - small_h)), round(x * (width - small_w))
    canvas[top:top + small_h, left:left + small_w] = small
    return canvas


# ----------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--queries`` value: the source text and its optional mixing weight."""

    text: str
    weight: float | None

    @classmethod
    def parse(cls, spec: str) -> SourceSpec:
        """Split ``SRC[:WEIGHT]``; an existing path is always taken whole."""
        spec = str(spec)
        if not spec:
            raise CopycatError("query source is empty; pass a folder, a list, an array, noise:uniform, "
                               "noise:gaussian or photos")
        head, sep, tail = spec.rpartition(":")
        if not sep or not head or os.path.exists(spec):
            return cls(spec, None)
        try:
            weight = float(tail)
        except ValueError:
            return cls(spec, None)
        if not math.isfinite(weight) or weight <= 0:
            raise CopycatError(f"query source {spec!r}: the weight after ':' must be > 0; received {tail!r}")
        return cls(head, weight)


class QuerySource:
    """A seeded, deterministic stream of query images from one source or a mix of them.

    Build it with :func:`open_query_source`. Finite sources (folders, lists, arrays) run out;
    in a mix, one that runs out leaves and the others share its slots.

    Attributes:
        specs: the spec strings as given.
        seed: the seed of every random choice (shuffles, mix, noise, crops, transforms).
        fitter: the :class:`ImageFitter` bringing items to the contract.
        weights: each source's share of the stream.
        transforms: the :class:`QueryTransforms` applied, or ``None``.
        selection: a :meth:`select` view's name and stream positions, or ``None`` for the
            whole stream.
    """

    def __init__(self, specs: list[str], sources: list[_Source], weights: list[float], seed: int,
                 fitter: ImageFitter, transforms: QueryTransforms | None = None,
                 selection: tuple[str, np.ndarray | None] | None = None):
        self.specs = specs
        self.sources = sources
        self.weights = weights
        self.seed = seed
        self.fitter = fitter
        self.transforms = transforms
        self.selection = selection

    def select(self, name: str, positions=None) -> QuerySource:
        """A view of this stream that yields only ``positions`` (sorted), or all of it.

        An adaptive strategy scores a stretch of the stream and sends only some of it; the
        view's :meth:`config` names the strategy (not the positions, which grow round after
        round), so a fake dataset written through views resumes only through views.

        Args:
            name: the selecting strategy, recorded in :meth:`config`.
            positions: stream positions to keep, or ``None`` for every one.
        """
        kept = None if positions is None else np.unique(np.asarray(positions, np.int64))
        return QuerySource(self.specs, self.sources, self.weights, self.seed, self.fitter,
                           self.transforms, (name, kept))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.fitter.image_shape

    @property
    def size(self) -> int | None:
        """Total items when every source is finite, else ``None``."""
        sizes = [s.size for s in self.sources]
        return None if None in sizes else sum(sizes)

    @property
    def folders(self) -> list[Path]:
        """Folders read by this source (an output must not be written inside them)."""
        return [s.folder for s in self.sources if s.folder is not None]

    def config(self) -> dict:
        """Everything that decides the stream, for a fake dataset's manifest."""
        return {
            "sources": [
                {"spec": spec, "kind": s.kind, "weight": w, "size": s.size,
                 "fingerprint": s.fingerprint()}
                for spec, s, w in zip(self.specs, self.sources, self.weights)
            ],
            "seed": self.seed,
            **self.fitter.describe(),
            **({"transforms": self.transforms.describe()} if self.transforms else {}),
            **({"selection": self.selection[0]} if self.selection else {}),
        }

    def items(self, start: int = 0) -> Iterator[tuple[int, Item]]:
        """``(position, item)`` from ``start`` on; earlier items are skipped undecoded."""
        kept = None if self.selection is None else self.selection[1]
        if kept is not None:
            if not len(kept) or kept[-1] < start:
                return
            start = max(start, int(kept[0]))
        iterators = [source.items() for source in self.sources]
        active = list(range(len(self.sources)))
        rng = np.random.default_rng([self.seed, _TAG_MIX])
        for position in itertools.count():
            while active:
                index = active[0] if len(active) == 1 else self._pick(rng, active)
                entry = next(iterators[index], None)
                if entry is not None:
                    break
                active.remove(index)
                if len(self.sources) > 1:
                    log.info("query source %s is used up after %d items; the mix goes on without it",
                             self.specs[index], self.sources[index].size)
            else:
                return
            if position < start:
                continue
            if kept is not None:
                slot = bisect.bisect_left(kept, position)
                if slot == len(kept):
                    return
                if kept[slot] != position:
                    continue
            yield position, self._item(position, index, *entry)

    def _item(self, position: int, source: int, key: str, ref) -> Item:
        if self.transforms is None:
            return Item(source, key, ref)
        draw = self.transforms.draw(np.random.default_rng([self.seed, _TAG_TRANSFORM, position]))
        return Item(source, key if draw is None else f"{key}~{draw.code}", ref, draw)

    def _pick(self, rng: np.random.Generator, active: list[int]) -> int:
        cumulative = list(itertools.accumulate(self.weights[i] for i in active))
        return active[min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(active) - 1)]

    def materialize(self, item: Item) -> np.ndarray | Rejection:
        """Decode, fit and transform one item (thread-safe)."""
        image = self.sources[item.source].materialize(item.ref, self.fitter)
        if item.transform is None or isinstance(image, Rejection):
            return image
        return item.transform.apply(image)

    def queries(self, start: int = 0, *, workers: int | None = None,
                window: int | None = None) -> Iterator[Query]:
        """Materialized items in stream order, decoded ``window`` items ahead by ``workers`` threads.

        Args:
            start: first stream position to yield.
            workers: decoding threads; default :func:`default_workers`.
            window: items decoded ahead of the consumer; default ``64 * workers``.
        """
        workers = workers or default_workers()
        window = max(1, window or 64 * workers)
        for (position, item), result in _prefetch(self.items(start), self.materialize, workers, window):
            if isinstance(result, Rejection):
                yield Query(position, item.source, item.key, None, result.reason)
            else:
                yield Query(position, item.source, item.key, result, None)


def default_workers() -> int:
    """Decoding threads: one per core, at most 8 (more only contend with the oracle)."""
    return max(1, min(8, os.cpu_count() or 1))


def _prefetch(items, work, workers: int, window: int):
    """``(item, work(item))`` in order, with up to ``window`` items in flight in a thread pool."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="copycat-decode")
    pending: deque = deque()
    try:
        for entry in items:
            pending.append((entry, pool.submit(work, entry[1])))
            if len(pending) >= window:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def open_query_source(
    specs: str | Sequence[str],
    image_shape,
    *,
    seed: int = 0,
    resize: str = "resize",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    transforms: QueryTransforms | None = None,
) -> QuerySource:
    """Open one or several query sources as one seeded stream of images for a target.

    Args:
        specs: one spec or a list; each is a folder, a ``.txt`` list of image paths, a
            ``.npy``/``.npz`` array, ``noise:uniform``, ``noise:gaussian`` or ``photos``,
            with an optional ``:WEIGHT`` suffix. Sources without a weight share what the
            weighted ones leave of 1 (all equal when none has one).
        image_shape: the target's ``(height, width, channels)``.
        seed: seeds the file order, the mix, the noise and the photo crops.
        resize: ``"resize"``, ``"center-crop"`` or ``"pad"``.
        max_pixels: larger image files are rejected before decoding.
        transforms: random changes to queries (:class:`QueryTransforms`), or ``None``.

    Returns:
        A :class:`QuerySource`.

    Raises:
        CopycatError: a source is missing, unreadable, empty or of an unknown kind.

    Example:

    >>> source = open_query_source(["noise:uniform"], (28, 28, 1), seed=7)
    >>> next(source.queries()).image.shape
    (28, 28, 1)
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    specs = [str(s) for s in specs]
    if not specs:
        raise CopycatError("no query source given; pass at least one --queries")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CopycatError(f"seed must be an integer >= 0; received {seed!r}")
    fitter = ImageFitter(image_shape, resize, max_pixels)
    parsed = [SourceSpec.parse(s) for s in specs]
    sources = [_open_one(p.text, fitter, seed=int(seed), position=i) for i, p in enumerate(parsed)]
    return QuerySource(specs, sources, _weights(parsed), int(seed), fitter, transforms)


def _open_one(text: str, fitter: ImageFitter, *, seed: int, position: int) -> _Source:
    if text == "photos" or text.startswith("noise:"):
        if os.path.exists(text):
            log.warning("%r names the built-in source; write ./%s for the path", text, text)
        if text == "photos":
            return _PhotoSource(fitter.image_shape, seed=seed, position=position)
        kind = text.split(":", 1)[1]
        if kind not in NOISE_KINDS:
            raise CopycatError(f"unknown noise {text!r}; use noise:uniform or noise:gaussian")
        return _NoiseSource(kind, seed=seed, position=position)
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder_source(path, seed=seed, position=position)
    if path.is_file() and path.suffix.lower() == ".txt":
        return _list_source(path, seed=seed, position=position)
    if path.is_file() and path.suffix.lower() in ARRAY_EXTENSIONS:
        return _ArraySource(path, seed=seed, position=position)
    what = "is not a folder, .txt list, .npy or .npz" if path.exists() else "does not exist"
    raise CopycatError(
        f"query source {text!r} {what}; expected a folder of images, a .txt list of image paths, "
        "a .npy/.npz array, noise:uniform, noise:gaussian or photos"
    )


def _weights(parsed: list[SourceSpec]) -> list[float]:
    given = [p.weight for p in parsed if p.weight is not None]
    if not given:
        return [1.0 / len(parsed)] * len(parsed)
    if len(given) == len(parsed):
        total = sum(given)
        return [p.weight / total for p in parsed]
    total = sum(given)
    if total >= 1:
        raise CopycatError(
            f"query weights add up to {total:g}, leaving nothing for the sources without one; "
            "give every source a weight or keep the weights below 1 in total"
        )
    rest = (1.0 - total) / (len(parsed) - len(given))
    return [p.weight if p.weight is not None else rest for p in parsed]
