"""Decoding and fitting pictures to a contract's image shape, safely (the ground floor).

:class:`ImageFitter` turns any decoded picture, or an image file read under a
decompression-bomb guard, into the uint8 ``(H, W, C)`` array a target takes. Query
sources and labelled datasets both use it.

Example:

>>> fitter = ImageFitter((32, 32, 3), resize="center-crop")
>>> from PIL import Image
>>> fitter.fit(Image.new("RGB", (64, 48))).shape
(32, 32, 3)
>>> fitter.read("notes.txt")
Rejection(reason="not an image file (extension '.txt')")
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from copycat_tf.errors import CopycatError, first_line

RESIZE_POLICIES = ("resize", "center-crop", "pad")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".webp",
                    ".tif", ".tiff")
#: Decoders Pillow may try on query files; anything else is rejected unopened.
PIL_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "WEBP", "TIFF")
#: Images declaring more pixels than this are rejected from their header, before decoding.
DEFAULT_MAX_PIXELS = 40_000_000


class Rejection(NamedTuple):
    """Why an item was not sent to the oracle (a corrupt file, a non-image, ...)."""

    reason: str


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

        def decode(image):
            self._draft(image)
            image.load()
            return self.fit(ImageOps.exif_transpose(image))

        return self._open(path, decode)

    def picture_size(self, path: str) -> tuple[int, int] | Rejection:
        """``(width, height)`` of an image file as :meth:`picture` turns it (EXIF rotation
        applied), read from its header alone under the same guards as :meth:`read`."""
        return self._open(path, _upright_size)

    def picture(self, path: str, short_side: int | None = None) -> Image.Image | Rejection:
        """Decode an image file in the contract's colour mode, upright but not fitted, to crop.

        Args:
            path: the image file.
            short_side: when given, a larger picture is reduced to this short side (JPEGs
                decoded at 1/2..1/8 scale first, much faster than decoding them whole).
        """

        def decode(image):
            if short_side is not None and image.format in ("JPEG", "MPO"):
                scale = short_side / min(image.size)
                if scale < 1:
                    image.draft(self.mode, tuple(math.ceil(side * scale) for side in image.size))
            image.load()
            image = _to_mode(ImageOps.exif_transpose(image), self.mode)
            if short_side is not None and min(image.size) > short_side:
                scale = short_side / min(image.size)
                image = image.resize(tuple(max(1, round(side * scale)) for side in image.size),
                                     Image.Resampling.BILINEAR)
            return image

        return self._open(path, decode)

    def _open(self, path: str, use):
        """``use(image)`` on the lazily opened image file at ``path``, or why it cannot be."""
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            return Rejection(f"not an image file (extension {os.path.splitext(path)[1] or 'none'!r})")
        try:
            size = os.path.getsize(path)
            if not os.path.isfile(path):  # a FIFO would block the read, a device never end
                return Rejection("not a regular file (a pipe, device or socket)")
            if size == 0:
                return Rejection("empty file (0 bytes)")
            with open(path, "rb") as handle:
                return self._decode(handle, use)
        except OSError as exc:
            return Rejection(f"cannot read: {exc.strerror or exc}")

    def _decode(self, handle, use):
        try:
            image = Image.open(handle, formats=PIL_FORMATS)
        except Image.DecompressionBombError as exc:
            return Rejection(f"decompression bomb: {exc}")
        except Image.UnidentifiedImageError:
            return Rejection("not a recognised image (jpg, png, bmp, gif, webp, tiff)")
        except Exception as exc:  # noqa: BLE001 - hostile bytes make Pillow raise anything
            return Rejection(f"corrupt image header: {first_line(exc)}")
        width, height = image.size
        if width * height > self.max_pixels:
            return Rejection(
                f"decompression bomb guard: {width}x{height} = {width * height:,} pixels "
                f"> max_pixels {self.max_pixels:,}"
            )
        try:
            return use(image)
        except Image.DecompressionBombError as exc:
            return Rejection(f"decompression bomb: {exc}")
        except Exception as exc:  # noqa: BLE001 - corrupt data fails deep inside decoders
            return Rejection(f"corrupt or truncated image: {first_line(exc)}")

    def _draft(self, image: Image.Image) -> None:
        """Let JPEG decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller."""
        if image.format not in ("JPEG", "MPO"):  # MPO: multi-picture JPEGs from cameras
            return
        height, width, _ = self.image_shape
        if _turned(image):
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


def _turned(image: Image.Image) -> bool:
    """Whether EXIF says the picture is shown rotated by 90 degrees."""
    return image.getexif().get(0x0112, 1) in (5, 6, 7, 8)


def _upright_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    return (height, width) if _turned(image) else (width, height)


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
