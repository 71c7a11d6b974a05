"""The queries as the user named them: sources, how images are fitted, how many per call.

Example:

>>> spec = QuerySpec(("noise:uniform",), batch_size=32)
>>> source = spec.open((28, 28, 1), seed=7)
>>> next(source.queries()).image.shape
(28, 28, 1)
>>> QuerySpec(("photos",)).batch_size_for((240, 240, 3))
8
>>> spec.to_record()
{'sources': ['noise:uniform'], 'resize': 'resize'}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.images import RESIZE_POLICIES
from copycat_tf.queries.batch_memory import query_batch_size
from copycat_tf.queries.stream import QuerySource, open_query_source
from copycat_tf.queries.transforms import QueryTransforms

@dataclass(frozen=True)
class QuerySpec:
    """Where query images come from and how they are sent.

    Args:
        sources: source specs (a folder, a ``.txt`` list, an array file, ``noise:uniform``,
            ``photos``, ``procedural``), each with an optional ``:WEIGHT``.
        resize: how images are fitted to the target: ``resize``, ``center-crop`` or ``pad``.
        batch_size: images per oracle call (not part of a run's record: it changes no
            answer); default ``None``: sized for the target's input by
            :func:`~copycat_tf.queries.batch_memory.query_batch_size`.
    """

    sources: tuple[str, ...]
    resize: str = RESIZE_POLICIES[0]
    batch_size: int | None = None

    def __post_init__(self):
        sources = (self.sources,) if isinstance(self.sources, (str, os.PathLike)) else self.sources
        object.__setattr__(self, "sources", tuple(str(s) for s in sources))
        if not self.sources:
            raise CopycatError("no query source given; pass at least one --queries")
        if self.resize not in RESIZE_POLICIES:
            raise CopycatError(f"resize must be one of {', '.join(RESIZE_POLICIES)}; received {self.resize!r}")
        check_whole("batch_size", self.batch_size, optional=True)

    @classmethod
    def of(cls, queries: QuerySpec | str | Sequence[str]) -> QuerySpec:
        """``queries`` as a :class:`QuerySpec` (spec strings get the defaults)."""
        return queries if isinstance(queries, QuerySpec) else cls(queries)

    def batch_size_for(self, image_shape, *, metered: bool = False) -> int:
        """Images per call to a target taking ``image_shape`` images: the given batch size, or
        :func:`~copycat_tf.queries.batch_memory.query_batch_size`'s."""
        return query_batch_size(image_shape, self.batch_size, metered=metered)

    def open(self, image_shape, seed: int, transforms: QueryTransforms | None = None) -> QuerySource:
        """The seeded stream of query images at ``image_shape``."""
        return open_query_source(list(self.sources), image_shape, seed=seed, resize=self.resize,
                                 transforms=transforms)

    def to_record(self) -> dict:
        return {"sources": list(self.sources), "resize": self.resize}
