"""The query stream: one seeded, resumable sequence of images from a mix of sources.

:func:`open_query_source` is the one entry point that turns spec strings into a
:class:`QuerySource`; :meth:`QuerySource.queries` decodes items in a thread pool ahead of
the consumer, so the oracle never waits on the disk.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.images import DEFAULT_MAX_PIXELS, ImageFitter, Rejection
from copycat_tf.queries.photos import PhotoSource
from copycat_tf.queries.procedural import ProceduralSource
from copycat_tf.queries.sources import (
    ARRAY_EXTENSIONS,
    NOISE_KINDS,
    SEED_TAG_MIX,
    SEED_TAG_TRANSFORM,
    ArraySource,
    ItemSource,
    NoiseSource,
    folder_source,
    list_source,
)
from copycat_tf.queries.transforms import QueryTransforms, TransformDraw
from copycat_tf.queries.views import VIEWS_PREFIX, FolderViewSource

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--queries`` value: the source text and its optional mixing weight."""

    text: str
    weight: float | None

    @classmethod
    def parse(cls, spec: str) -> SourceSpec:
        """Split ``SRC[:WEIGHT]``; an existing path (also after ``views:``) is always taken whole.

        >>> SourceSpec.parse("views:./pd:0.2")
        SourceSpec(text='views:./pd', weight=0.2)
        >>> SourceSpec.parse("views:2024")
        SourceSpec(text='views:2024', weight=None)
        """
        spec = str(spec)
        if not spec:
            raise CopycatError("query source is empty; pass a folder, views:FOLDER, a list, an array, "
                               "noise:uniform, noise:gaussian, photos or procedural")
        head, sep, tail = spec.rpartition(":")
        if not sep or not head or os.path.exists(spec) or head == VIEWS_PREFIX[:-1]:
            return cls(spec, None)
        if spec.startswith(VIEWS_PREFIX) and os.path.exists(spec[len(VIEWS_PREFIX):]):
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

    def __init__(self, specs: list[str], sources: list[ItemSource], weights: list[float], seed: int,
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

    def used_up_hint(self) -> str | None:
        """What to pass once this stream has run out short of a budget: ``views:`` for each of
        its plain folders (``None`` without one)."""
        folders = [spec for spec, source in zip(self.specs, self.sources) if source.kind == "folder"]
        if not folders:
            return None
        views = " ".join(f"--queries {VIEWS_PREFIX}{spec}" for spec in folders)
        return f"a folder sends each image once; {views} sends endless seeded crops and flips of its images"

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
        rng = np.random.default_rng([self.seed, SEED_TAG_MIX])
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
        draw = self.transforms.draw(np.random.default_rng([self.seed, SEED_TAG_TRANSFORM, position]))
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
        specs: one spec or a list; each is a folder, ``views:FOLDER`` (endless crops and
            flips of its images), a ``.txt`` list of image paths, a ``.npy``/``.npz`` array,
            ``noise:uniform``, ``noise:gaussian``, ``photos`` or ``procedural``, with an
            optional ``:WEIGHT`` suffix. Sources without a weight share what the weighted ones
            leave of 1 (all equal when none has one).
        image_shape: the target's ``(height, width, channels)``.
        seed: seeds the file order, the mix, the noise and the photo, view and procedural crops.
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
    check_whole("seed", seed, minimum=0)
    fitter = ImageFitter(image_shape, resize, max_pixels)
    parsed = [SourceSpec.parse(s) for s in specs]
    sources = [_open_one(p.text, fitter, seed=int(seed), position=i) for i, p in enumerate(parsed)]
    return QuerySource(specs, sources, _weights(parsed), int(seed), fitter, transforms)


_BUILT_IN = {"photos": PhotoSource, "procedural": ProceduralSource}


def _open_one(text: str, fitter: ImageFitter, *, seed: int, position: int) -> ItemSource:
    if text in _BUILT_IN or text.startswith("noise:"):
        if os.path.exists(text):
            log.warning("%r names the built-in source; write ./%s for the path", text, text)
        if text in _BUILT_IN:
            return _BUILT_IN[text](fitter.image_shape, seed=seed, position=position)
        kind = text.split(":", 1)[1]
        if kind not in NOISE_KINDS:
            raise CopycatError(f"unknown noise {text!r}; use noise:uniform or noise:gaussian")
        return NoiseSource(kind, seed=seed, position=position)
    if text.startswith(VIEWS_PREFIX):
        if os.path.exists(text):
            log.warning("%r names views of a folder; write ./%s for the path", text, text)
        folder = Path(text[len(VIEWS_PREFIX):]).expanduser()
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise CopycatError(f"query source {text!r}: {folder} {what}; views: takes a folder of images, "
                               "e.g. views:./my_photos")
        return FolderViewSource(folder, fitter, seed=seed, position=position)
    path = Path(text).expanduser()
    if path.is_dir():
        return folder_source(path, seed=seed, position=position)
    if path.is_file() and path.suffix.lower() == ".txt":
        return list_source(path, seed=seed, position=position)
    if path.is_file() and path.suffix.lower() in ARRAY_EXTENSIONS:
        return ArraySource(path, seed=seed, position=position)
    what = "is not a folder, .txt list, .npy or .npz" if path.exists() else "does not exist"
    raise CopycatError(
        f"query source {text!r} {what}; expected a folder of images, views:FOLDER, a .txt list of "
        "image paths, a .npy/.npz array, noise:uniform, noise:gaussian, photos or procedural"
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
