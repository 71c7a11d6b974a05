"""Random query transforms: edges, contrast, gamma, threshold, blur, inversion, placement.

A :class:`QueryTransforms` draws a :class:`TransformDraw` per stream position (seeded), so
the balanced strategy can send many different views of one picture reproducibly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from copycat_tf.errors import CopycatError


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

    Usage::

        source = open_query_source("photos", (28, 28, 1), transforms=QueryTransforms(share=0.8))
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
