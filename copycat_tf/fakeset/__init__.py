"""The fake dataset: query images and the oracle's answers, stored so a copycat can learn them.

:func:`label` (``query_loop.py``, the attack's query loop) queries the oracle with a
:class:`~copycat_tf.queries.QuerySource` and writes a directory (``writer.py``) that
:class:`FakeSet` (``store.py``, where the on-disk format is described) opens read-only;
:func:`derive` (``derive.py``) makes new fake datasets from a prefix of one purchase without
sending a query.

Usage::

    oracle = OnnxOracle("target.onnx")
    fakeset = label(oracle, ["imagenet/", "photos:0.2"], 50_000, "runs/fake")
    fakeset.summary()["label_histogram"]
"""

from copycat_tf.fakeset.derive import derive
from copycat_tf.fakeset.query_loop import LabelProgress, label
from copycat_tf.fakeset.store import (
    DEFAULT_SHARD_SIZE,
    FORMAT,
    FORMAT_VERSION,
    LABEL_MODES,
    MANIFEST,
    QUERIES_LOG,
    REJECTED,
    FakeSet,
    Manifest,
    stored_contract,
)
from copycat_tf.fakeset.writer import journaled_records

__all__ = ["DEFAULT_SHARD_SIZE", "FORMAT", "FORMAT_VERSION", "LABEL_MODES", "MANIFEST", "QUERIES_LOG",
           "REJECTED", "FakeSet", "LabelProgress", "Manifest", "derive", "journaled_records", "label", "stored_contract"]
