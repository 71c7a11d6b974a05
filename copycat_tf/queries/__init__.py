"""Query sources: where the unlabeled images sent to the oracle come from.

Every source kind becomes the same stream through one entry point,
:func:`open_query_source`. A spec string names each source:

- a folder, read recursively (ImageNet class folders or flat; jpg, png, bmp, gif, webp,
  tiff), or a ``.txt`` file listing image paths (relative ones resolve against the list's
  folder);
- a ``.npy`` / ``.npz`` image array (``x`` or the only array), loaded with
  ``allow_pickle=False``;
- ``noise:uniform`` or ``noise:gaussian``: the paper's "random" baseline;
- ``views:FOLDER``: endless seeded crops, rescales and flips of a folder's images, so a few
  hundred problem-domain photographs can be spent as thousands of queries;
- ``photos``: real photographs shipped offline with scikit-image, scikit-learn, matplotlib
  and some Debian packages, turned into endless distinct queries by random crops, rescales
  and flips;
- ``procedural``: the same crops of a fixed bank of programmatically drawn pictures (dead
  leaves, 1/f noise, fractals), to mix with the others by weight.

Any spec takes an optional ``:WEIGHT`` suffix to mix sources in proportion, e.g. the
paper's NPD+PD setting: ``["imagenet/", "pd_images/:0.2"]``.

Files: ``stream.py`` (the mixed, resumable stream and its entry point), ``sources.py``
(folders, lists, arrays, noise), ``photos.py`` (the built-in pool), ``views.py`` (views of
a folder), ``procedural.py`` (the drawn pictures), ``transforms.py`` (random query
transforms). Images are decoded and fitted by :mod:`copycat_tf.images`.

Example:

>>> source = open_query_source(["noise:uniform", "noise:gaussian:0.1"], (64, 64, 3), seed=0)
>>> query = next(source.queries())
>>> query.image.shape, query.key
((64, 64, 3), '0')
"""

from copycat_tf.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    RESIZE_POLICIES,
    ImageFitter,
    Rejection,
)
from copycat_tf.queries.photos import PhotoView, photo_pool
from copycat_tf.queries.sources import ARRAY_EXTENSIONS, NOISE_KINDS
from copycat_tf.queries.stream import (
    Item,
    Query,
    QuerySource,
    SourceSpec,
    default_workers,
    open_query_source,
)
from copycat_tf.queries.transforms import QueryTransforms, TransformDraw
from copycat_tf.queries.views import VIEWS_PREFIX, FolderViewSource

__all__ = [
    "ARRAY_EXTENSIONS", "DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "NOISE_KINDS", "RESIZE_POLICIES",
    "VIEWS_PREFIX", "FolderViewSource", "ImageFitter", "Item", "PhotoView", "Query", "QuerySource", "QueryTransforms", "Rejection",
    "SourceSpec", "TransformDraw", "default_workers", "open_query_source", "photo_pool",
]
