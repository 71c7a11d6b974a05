"""The ``views:DIR`` source: endless seeded crops, rescales and flips of a folder's images.

A plain folder sends each image once, so 500 photographs buy 500 queries. ``views:DIR``
turns the same folder into as many queries as the budget asks for, the way ``photos`` turns
its pool: each query is a random crop (10-100% of the short side), fitted to the target
(which rescales it) and flipped half the time (:class:`~copycat_tf.queries.PhotoView`).
Problem-domain images are the attack's biggest lever (Correia-Silva et al. 2021), and a
user seldom has thousands of them: this is how a few hundred go further.

Only the headers are read up front (sizes, for the crop boxes); pictures are decoded when a
view needs them and kept in a bounded cache shared by the decoding threads.

Example:

>>> import itertools, tempfile
>>> from copycat_tf.images import ImageFitter
>>> with tempfile.TemporaryDirectory() as folder:
...     Image.new("RGB", (80, 60), (200, 30, 30)).save(f"{folder}/red.png")
...     source = FolderViewSource(Path(folder), ImageFitter((16, 16, 3)), seed=0, position=0)
...     views = list(itertools.islice(source.items(), 3))
...     print([key for key, _ in views], source.materialize(views[0][1], source.fitter).shape)
['red.png@14,3,60x49+flip', 'red.png@...', 'red.png@...'] (16, 16, 3)
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from copycat_tf.errors import CopycatError
from copycat_tf.images import IMAGE_EXTENSIONS, ImageFitter, Rejection
from copycat_tf.queries.photos import CropSource, PhotoView
from copycat_tf.queries.sources import list_folder

log = logging.getLogger(__name__)

#: The spec prefix: ``views:DIR`` (with the usual ``:WEIGHT`` suffix, ``views:DIR:0.2``).
VIEWS_PREFIX = "views:"
#: Decoded pictures kept at once, in bytes: a few hundred photos at the working size of a
#: small target, a dozen full-size ones for a 224x224 target; never a whole large folder.
CACHE_BYTES = 256 * 2**20
#: A picture is kept with its short side at this many times the target's longer side: the
#: smallest crop (10% of the short side, its narrow side down to sqrt(3/4) of that) still
#: has the target's resolution, and a 12-megapixel photo costs a 32x32 target a JPEG
#: decode at 1/8 scale instead of a full one.
DETAIL = 12


class FolderViewSource(CropSource):
    """Endless seeded views (:class:`~copycat_tf.queries.PhotoView`) of a folder's images.

    Args:
        root: the folder, read recursively by the rules of a plain folder source
            (symlinked folders not entered, each real file once).
        fitter: the stream's :class:`ImageFitter` (its guards apply to every file).
        seed: seeds the views.
        position: the source's place in the mix.

    Raises:
        CopycatError: the folder is unreadable, empty, or holds no readable image.
    """

    kind = "views"

    def __init__(self, root: Path, fitter: ImageFitter, *, seed: int, position: int):
        self.folder = root
        self.fitter = fitter
        self.names, self.paths, self.sizes, self.lengths = [], [], [], []
        files = list_folder(root)
        images = [(key, path) for key, path in files if key.lower().endswith(IMAGE_EXTENSIONS)]
        if len(images) < len(files):
            log.info("views of %s: leaving out %d file(s) that are not images", root, len(files) - len(images))
        unreadable = []
        for key, path in images:
            size = fitter.picture_size(path)
            if isinstance(size, Rejection):
                unreadable.append(f"{key}: {size.reason}")
                continue
            self.names.append(key)
            self.paths.append(path)
            self.sizes.append(size)
            self.lengths.append(os.path.getsize(path))
        if not self.names:
            raise CopycatError(
                f"views of {root}: no readable image among its {len(files)} file(s)"
                + (f" (e.g. {unreadable[0]})" if unreadable else "")
                + f"; point views: at a folder of images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        if unreadable:
            log.warning("views of %s: skipping %d image file(s) that cannot be read (e.g. %s)",
                        root, len(unreadable), unreadable[0])
        height, width, _ = fitter.image_shape
        self.short_side = DETAIL * max(height, width)
        self.cache = PictureCache(self._decode, CACHE_BYTES)
        self._start(fitter.image_shape, seed, position)

    def _decode(self, index: int) -> Image.Image | Rejection:
        return self.fitter.picture(self.paths[index], self.short_side)

    def materialize(self, ref: PhotoView, fitter: ImageFitter) -> np.ndarray | Rejection:
        picture = self.cache.get(ref.photo)
        if isinstance(picture, Rejection):  # a header that read well over data that does not
            return picture
        # Boxes are drawn on the file's full size (keys and resumes never depend on the
        # working size); the reduced picture is cut at the same place.
        width, height = self.sizes[ref.photo]
        scale_x, scale_y = picture.width / width, picture.height / height
        left, top, right, bottom = ref.box
        box = (round(left * scale_x), round(top * scale_y),
               max(round(right * scale_x), round(left * scale_x) + 1),
               max(round(bottom * scale_y), round(top * scale_y) + 1))
        return fitter.fit(dataclasses.replace(ref, box=box).render(picture))

    def fingerprint(self):
        text = "\n".join(f"{name} {w}x{h} {length}"
                         for name, (w, h), length in zip(self.names, self.sizes, self.lengths))
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class PictureCache:
    """Decoded pictures by index, the least recently used dropped past ``max_bytes``.

    Thread-safe: the stream materializes on worker threads, and a picture several of them
    ask for at once is decoded once. A :class:`Rejection` is kept too, so a file that fails
    to decode is not tried again for each of its views.

    Args:
        load: ``load(index)`` decodes picture ``index`` (a Pillow image or a Rejection).
        max_bytes: pixel bytes kept at most; the picture just decoded is always kept.

    Example:

    >>> cache = PictureCache(lambda i: Image.new("L", (10, 10), i), max_bytes=250)
    >>> [cache.get(i).getpixel((0, 0)) for i in (1, 2, 3, 1)]
    [1, 2, 3, 1]
    >>> sorted(cache.indices())
    [1, 3]
    """

    def __init__(self, load: Callable[[int], Image.Image | Rejection], max_bytes: int):
        self._load = load
        self._max_bytes = max_bytes
        self._pictures: OrderedDict[int, Image.Image | Rejection] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    def get(self, index: int) -> Image.Image | Rejection:
        with self._lock:
            if index in self._pictures:
                self._pictures.move_to_end(index)
                return self._pictures[index]
            gate = self._loading.setdefault(index, threading.Lock())
        with gate:
            with self._lock:
                if index in self._pictures:  # decoded by the thread this one waited for
                    return self._pictures[index]
            picture = self._load(index)
            with self._lock:
                self._pictures[index] = picture
                self._bytes += _nbytes(picture)
                while self._bytes > self._max_bytes and len(self._pictures) > 1:
                    self._bytes -= _nbytes(self._pictures.popitem(last=False)[1])
                self._loading.pop(index, None)
        return picture

    def indices(self) -> list[int]:
        """The indices held now, least recently used first."""
        with self._lock:
            return list(self._pictures)


def _nbytes(picture: Image.Image | Rejection) -> int:
    if isinstance(picture, Rejection):
        return 0
    return picture.width * picture.height * len(picture.getbands())
