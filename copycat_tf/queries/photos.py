"""The built-in ``photos`` source: endless random crops of offline photographs.

The pool is what packages already ship (scikit-image, scikit-learn, matplotlib sample
photos, some Debian wallpapers); :func:`photo_pool` decodes it once per process.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import itertools
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from copycat_tf.errors import CopycatError, first_line
from copycat_tf.images import PIL_FORMATS
from copycat_tf.queries.sources import ItemSource, item_rng

log = logging.getLogger(__name__)


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


class CropSource(ItemSource):
    """Endless seeded crops (:class:`PhotoView`) of a fixed list of pictures.

    Subclasses set ``names`` and ``sizes`` (``(width, height)``) in ``__init__``, then call
    :meth:`_start`, and say how to get picture ``index`` in :meth:`picture`.
    """

    def _start(self, image_shape, seed: int, position: int) -> None:
        height, width, _ = image_shape
        self.aspect = width / height
        self.seed, self.position = seed, position

    def items(self):
        for index in itertools.count():
            view = PhotoView.draw(item_rng(self.seed, self.position, index), self.sizes, self.aspect)
            yield view.key(self.names), view

    def materialize(self, ref, fitter):
        return fitter.fit(ref.render(self.picture(ref.photo)))

    def picture(self, index: int) -> Image.Image:
        raise NotImplementedError


class PhotoSource(CropSource):
    """Endless crops of the offline photo pool (see :func:`photo_pool`)."""

    kind = "photos"

    def __init__(self, image_shape, *, seed: int, position: int):
        self.pool = photo_pool()
        self.names = [name for name, _ in self.pool]
        self.sizes = [image.size for _, image in self.pool]
        self._start(image_shape, seed, position)

    def picture(self, index: int) -> Image.Image:
        return self.pool[index][1]

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
            log.debug("photo pool: skipping %s (%s)", name, first_line(exc))
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
