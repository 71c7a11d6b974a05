"""The ``procedural`` query source: pictures drawn by programs (dead leaves, 1/f noise, fractals).

Baradad et al. ("Learning to See by Looking at Noise", NeurIPS 2021) trained image
classifiers on images drawn by simple programs and found that what matters is natural-image
statistics (a ~1/f^2 power spectrum, occlusion, edges at every scale) and diversity;
FractalDB (Kataoka et al., ACCV 2020) did the same with iterated-function-system fractals.
The source crops a fixed bank of such pictures the way ``photos`` crops its photographs, so
it mixes with it by weight (``--queries photos --queries procedural:0.3``). It is not part
of ``photos`` by default: as queries, it did not copy colour, face or Fashion-MNIST targets
better than photo crops alone (BENCHMARKS.md, "Procedural queries and training levers").

Each generator is a pure function of a :class:`numpy.random.Generator` and a canvas size;
the bank's pictures are fixed (seeded by their index), and each query is a seeded crop, so
any query is made again on its own (resumable streams).

Example:

>>> rng = np.random.default_rng(0)
>>> image = dead_leaves(rng, (48, 64))
>>> image.shape, image.dtype
((48, 64, 3), dtype('uint8'))
>>> view = ProceduralView.draw(np.random.default_rng(1))
>>> view.render((32, 32)).shape
(32, 32, 3)
>>> bool((view.render((32, 32)) == view.render((32, 32))).all())
True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from copycat_tf.queries.photos import CropSource

#: Generators in the order a view's kind is drawn, with their shares of the bank.
KINDS = ("dead-leaves", "spectral", "fractal")
_SHARES = (0.5, 0.25, 0.25)
#: Bump when any generator draws differently: it is part of the source's fingerprint.
VERSION = 1


def dead_leaves(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Occluding shapes with power-law radii (the dead-leaves model of natural images).

    Disks, squares and triangles are stacked back to front, radii drawn from
    p(r) ~ r^-3 (scale invariance, as in Lee, Mumford & Huang 2001 and Baradad et al.),
    colours from a per-image palette or at random; some shapes carry a gradient or stripes,
    and a light blur or grain finishes the image so edges are not all perfectly sharp.

    Args:
        rng: the image's random stream.
        size: ``(height, width)``.

    Returns:
        uint8 ``(height, width, 3)``.

    Example:

    >>> dead_leaves(np.random.default_rng(3), (20, 30)).shape
    (20, 30, 3)
    """
    height, width = size
    scale = max(height, width)
    palette = _palette(rng)
    canvas = Image.new("RGB", (width, height), _colour(rng, palette))
    draw = ImageDraw.Draw(canvas)
    r_min, r_max = scale * rng.uniform(0.01, 0.04), scale * rng.uniform(0.3, 0.8)
    count = int(rng.integers(60, 400))
    # Inverse CDF of p(r) ~ r^-3 between r_min and r_max; every draw made at once (speed).
    radii = (r_min ** -2 - rng.random(count) * (r_min ** -2 - r_max ** -2)) ** -0.5
    centres = rng.uniform(-0.1, 1.1, (count, 2)) * (width, height)
    shapes = rng.integers(3, size=count)
    angles = rng.uniform(0, 2 * math.pi, count)
    colours = [_colour(rng, palette) for _ in range(count)]
    # Drawn in the drawn order, each shape as likely to land on top as the model wants.
    for (cx, cy), radius, shape, angle, colour in zip(centres, radii, shapes, angles, colours):
        if shape == 0:
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
        else:
            corners = 4 if shape == 1 else 3
            points = [(cx + radius * math.cos(angle + 2 * math.pi * k / corners),
                       cy + radius * math.sin(angle + 2 * math.pi * k / corners)) for k in range(corners)]
            draw.polygon(points, fill=colour)
    pixels = np.asarray(canvas, np.float32)
    if rng.random() < 0.5:  # texture: multiply by smooth noise so flat regions get shading
        shade = spectral_field(rng, size, alpha=rng.uniform(1.5, 2.5))
        pixels = pixels * (0.6 + 0.8 * shade[..., None])
    if rng.random() < 0.3:
        pixels = np.asarray(Image.fromarray(_to_uint8(pixels)).filter(
            ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * scale / 64)), np.float32)
    return _to_uint8(pixels)


def spectral_field(rng: np.random.Generator, size: tuple[int, int], alpha: float) -> np.ndarray:
    """A random field with a 1/f^alpha amplitude spectrum, scaled to [0, 1].

    Example:

    >>> field = spectral_field(np.random.default_rng(0), (16, 24), alpha=2.0)
    >>> field.shape, float(field.min()), float(field.max())
    ((16, 24), 0.0, 1.0)
    """
    height, width = size
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequency = np.sqrt(fx * fx + fy * fy)
    frequency[0, 0] = 1.0
    amplitude = frequency ** -alpha
    amplitude[0, 0] = 0.0
    phase = rng.uniform(0, 2 * math.pi, amplitude.shape)
    field = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(height, width))
    low, high = field.min(), field.max()
    return ((field - low) / (high - low) if high > low else np.zeros_like(field)).astype(np.float32)


def spectral(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Coloured 1/f^alpha noise: three correlated fields mixed by a random colour matrix.

    Baradad et al.'s "spectrum + colour" family: alpha in [1, 3] spans textures from grainy
    to cloud-like; the colour mixing gives the channel correlations of photographs.

    Example:

    >>> spectral(np.random.default_rng(0), (16, 16)).shape
    (16, 16, 3)
    """
    alpha = rng.uniform(1.0, 3.0)
    fields = np.stack([spectral_field(rng, size, alpha) for _ in range(3)], axis=-1)
    mix = rng.normal(0, 1, (3, 3)) * 0.4 + np.eye(3) * rng.uniform(0.2, 1.0)
    pixels = fields @ mix.T
    pixels -= pixels.min(axis=(0, 1))
    pixels /= np.maximum(pixels.max(axis=(0, 1)), 1e-6)
    base = rng.uniform(0, 255, 3)
    contrast = rng.uniform(0.3, 1.0, 3)
    return _to_uint8(base * (1 - contrast) + pixels * 255 * contrast)


def fractal(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """An iterated-function-system fractal (FractalDB-style), coloured, on a random ground.

    Two to four random affine maps; the chaos game runs many chains at once, and a fractal
    that collapses to a few pixels is redrawn (FractalDB's filling-rate filter).

    Example:

    >>> fractal(np.random.default_rng(0), (32, 32)).shape
    (32, 32, 3)
    """
    height, width = size
    for _ in range(8):
        points, which = _chaos_game(rng)
        low, high = points.min(axis=0), points.max(axis=0)
        span = np.maximum(high - low, 1e-9)
        margin = rng.uniform(0.02, 0.2)
        xy = (points - low) / span.max() * (1 - 2 * margin)
        xy += (1 - xy.max(axis=0)) / 2  # centred in the unit square
        cols = np.clip((xy[:, 0] * width).astype(np.int64), 0, width - 1)
        rows = np.clip((xy[:, 1] * height).astype(np.int64), 0, height - 1)
        filled = np.zeros((height, width), bool)
        filled[rows, cols] = True
        if filled.mean() > 0.08:
            break
    background = spectral(rng, size).astype(np.float32) * rng.uniform(0.2, 0.8)
    colours = np.stack([_colour(rng, None) for _ in range(4)]).astype(np.float32)
    canvas = background.copy()
    canvas[rows, cols] = colours[which]
    if rng.random() < 0.5:
        canvas = np.asarray(Image.fromarray(_to_uint8(canvas)).filter(
            ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8) * max(size) / 64)), np.float32)
    return _to_uint8(canvas)


def _chaos_game(rng: np.random.Generator, chains: int = 1024, steps: int = 48, burn_in: int = 8):
    maps = int(rng.integers(2, 5))
    while True:
        # FractalDB draws each map's 6 parameters in [-1, 1] and keeps contracting systems.
        params = rng.uniform(-1, 1, (maps, 6))
        linear = params[:, :4].reshape(maps, 2, 2)
        if np.all(np.linalg.norm(linear, ord=2, axis=(1, 2)) < 0.95):
            break
    weights = np.abs(np.linalg.det(linear)) + 1e-3
    weights /= weights.sum()
    state = rng.uniform(-1, 1, (chains, 2))
    out, out_which = [], []
    for step in range(steps):
        which = rng.choice(maps, chains, p=weights)
        state = np.einsum("nij,nj->ni", linear[which], state) + params[which, 4:]
        if step >= burn_in:
            out.append(state)
            out_which.append(which % 4)
    return np.concatenate(out), np.concatenate(out_which)


_GENERATORS = {"dead-leaves": dead_leaves, "spectral": spectral, "fractal": fractal}


def _palette(rng: np.random.Generator) -> np.ndarray | None:
    """A few related colours (natural scenes hold few hues), or ``None`` for free colours."""
    if rng.random() < 0.3:
        return None
    count = int(rng.integers(2, 7))
    hue = rng.uniform(0, 1) + rng.normal(0, 0.08, count)
    saturation = np.clip(rng.beta(2, 2.5, count), 0, 1)
    value = np.clip(rng.beta(2.5, 2, count), 0, 1)
    return np.array([_hsv_to_rgb(h % 1.0, s, v) for h, s, v in zip(hue, saturation, value)])


def _colour(rng: np.random.Generator, palette: np.ndarray | None) -> tuple[int, int, int]:
    if palette is None:
        rgb = rng.uniform(0, 255, 3)
    else:
        rgb = palette[rng.integers(len(palette))] * rng.uniform(0.6, 1.15) + rng.normal(0, 10, 3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return 255 * (v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1))


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ProceduralView:
    """One procedural picture: a generator and the seed of its image (a bank entry).

    Attributes:
        kind: one of :data:`KINDS`.
        seed: the picture's own seed.
    """

    kind: str
    seed: int

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ProceduralView:
        """A kind by :data:`KINDS` shares and a fresh 63-bit image seed."""
        kind = KINDS[int(rng.choice(len(KINDS), p=_SHARES))]
        return cls(kind, int(rng.integers(2 ** 63)))

    def render(self, size: tuple[int, int]) -> np.ndarray:
        """The image, uint8 ``(height, width, 3)``; the same for the same view and size."""
        return _GENERATORS[self.kind](np.random.default_rng(self.seed), size)


#: Pictures in the bank, and their size: crops of them become queries as the photos' crops
#: do (dead leaves and 1/f noise are scale-invariant, so a crop of one is another image of
#: the same kind). A bank costs a few seconds to draw, on first use, once per process.
BANK_SIZE = 128
CANVAS = (192, 192)
_BANK_TAG = 17


def bank_view(index: int) -> ProceduralView:
    """The ``index``-th picture of the bank: fixed for every run and seed, like a shipped photo.

    Example:

    >>> bank_view(0) == bank_view(0), bank_view(0) == bank_view(1)
    (True, False)
    """
    return ProceduralView.draw(np.random.default_rng([_BANK_TAG, VERSION, index]))


@functools.lru_cache(maxsize=BANK_SIZE)
def bank_picture(index: int) -> Image.Image:
    """The bank's ``index``-th picture as a Pillow RGB image, drawn once per process on first use."""
    return Image.fromarray(bank_view(index).render(CANVAS), "RGB")


def bank_names() -> list[str]:
    """One name per bank picture, e.g. ``procedural/dead-leaves-000``."""
    return [f"procedural/{bank_view(i).kind}-{i:03d}" for i in range(BANK_SIZE)]


class ProceduralSource(CropSource):
    """Endless crops of the procedural bank, drawn like the ``photos`` source's crops."""

    kind = "procedural"

    def __init__(self, image_shape, *, seed: int, position: int):
        self.names = bank_names()
        self.sizes = [CANVAS[::-1]] * BANK_SIZE
        self._start(image_shape, seed, position)

    def picture(self, index: int) -> Image.Image:
        return bank_picture(index)

    def fingerprint(self):
        shares = ",".join(f"{k}={s}" for k, s in zip(KINDS, _SHARES))
        return f"procedural v{VERSION} {BANK_SIZE}x{CANVAS[1]}x{CANVAS[0]} {shares}"
