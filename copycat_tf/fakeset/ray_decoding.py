"""The Ray engine's query stream: source references out to Ray tasks, decoded queries back
in stream order, with each worker checking it sees the driver's files.

Used by :class:`~copycat_tf.fakeset.ray_engine.RayEngine`; see that module for the
guarantees.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace

from copycat_tf.errors import CopycatError
from copycat_tf.fakeset.ray_actors import ray_get
from copycat_tf.queries import Query, QuerySource, QueryTransforms, Rejection, SourceSpec, open_query_source


@dataclass(frozen=True)
class _SourceRecipe:
    """How a worker reopens the driver's query sources, and what it must find there."""

    specs: tuple[str, ...]
    image_shape: tuple[int, int, int]
    seed: int
    resize: str
    max_pixels: int
    transforms: QueryTransforms | None
    expected: str  # the driver's source config, less spellings and selection, as JSON

    @classmethod
    def of(cls, source: QuerySource) -> _SourceRecipe:
        fitter = source.fitter
        return cls(tuple(_absolute(spec) for spec in source.specs), fitter.image_shape, source.seed,
                   fitter.resize, fitter.max_pixels, source.transforms, _comparable(source))


def _absolute(spec: str) -> str:
    """``spec`` with a path made absolute: workers do not share the driver's folder."""
    parsed = SourceSpec.parse(spec)
    if parsed.text == "photos" or parsed.text.startswith("noise:"):
        return spec
    path = os.path.abspath(os.path.expanduser(parsed.text))
    return path if parsed.weight is None else f"{path}:{parsed.weight!r}"


def _comparable(source: QuerySource) -> str:
    config = source.config()
    config.pop("selection", None)
    config["sources"] = [{k: v for k, v in s.items() if k != "spec"} for s in config["sources"]]
    return json.dumps(config, sort_keys=True)


_WORKER_SOURCES: dict[tuple, QuerySource] = {}


def _worker_source(recipe: _SourceRecipe) -> QuerySource:
    """The query sources reopened in this worker process (once), checked against the driver's."""
    key = (recipe.specs, recipe.expected)
    source = _WORKER_SOURCES.get(key)
    if source is None:
        source = open_query_source(list(recipe.specs), recipe.image_shape, seed=recipe.seed,
                                   resize=recipe.resize, max_pixels=recipe.max_pixels,
                                   transforms=recipe.transforms)
        if _comparable(source) != recipe.expected:
            raise CopycatError(
                f"on node {socket.gethostname()}: the query sources {list(recipe.specs)} differ from "
                "the driver's (other files or contents); every node needs the same query files at "
                "the same paths"
            )
        _WORKER_SOURCES[key] = source
    return source


def _decode(recipe: _SourceRecipe, items: list) -> list[Query]:
    """Materialize ``(position, item)`` pairs on a worker (a Ray task; retried if killed)."""
    source = _worker_source(recipe)
    queries = []
    for position, item in items:
        result = source.materialize(item)
        if isinstance(result, Rejection):
            queries.append(Query(position, item.source, item.key, None, result.reason))
        else:
            queries.append(Query(position, item.source, item.key, result, None))
    return queries


class RayStream:
    """The query stream from ``start``, in order, decoded ``depth`` chunks ahead by Ray tasks."""

    def __init__(self, ray, source: QuerySource, start: int, *, chunk: int, depth: int):
        self.ray = ray
        self.files = {i for i, s in enumerate(source.sources) if s.kind in ("folder", "list")}
        self.items = source.items(start)
        self.recipe = ray.put(_SourceRecipe.of(source))
        # Decoding reserves no CPU: it shares the cores with the actors, and whichever stage is
        # the slower one for this target gets them (as threads do in the local engine), instead
        # of a fixed split that idles half the cluster when either stage dominates.
        self.decode = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(_decode)
        self.chunk, self.depth = chunk, depth
        self.pending: deque = deque()
        self._queries = self._run()

    def __iter__(self) -> Iterator[Query]:
        return self._queries

    def _run(self) -> Iterator[Query]:
        more = True
        while True:
            while more and len(self.pending) < self.depth:
                items = [(position, self._portable(item))
                         for position, item in itertools.islice(self.items, self.chunk)]
                more = bool(items)
                if items:
                    self.pending.append(self.decode.remote(self.recipe, items))
            if not self.pending:
                return
            yield from ray_get(self.ray, self.pending.popleft())

    def _portable(self, item):
        # A file's reference is its path as the driver opened it; a worker needs it absolute.
        return replace(item, ref=os.path.abspath(item.ref)) if item.source in self.files else item

    def close(self) -> None:
        # Chunks still decoding are dropped, not cancelled: they cost no query, and Ray 2.x's
        # ray.cancel races a task's own reply and can abort the driver ("Check failed:
        # it != submissible_tasks_.end()", ray-project/ray#54798).
        self.pending.clear()
        self._queries.close()
