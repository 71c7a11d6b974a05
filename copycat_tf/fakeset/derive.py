"""Derived fake datasets: a prefix of one purchase with its answers rewritten, no query sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.fakeset.store import (
    DEFAULT_SHARD_SIZE,
    LABEL_MODES,
    FakeSet,
    fakeset_folder,
    read_manifest,
)
from copycat_tf.fakeset.writer import append_shard, empty_manifest, write_manifest

log = logging.getLogger(__name__)


def derive(
    fakeset: FakeSet,
    out_dir: str | os.PathLike,
    count: int,
    answers: Callable[[np.ndarray, np.ndarray | None, np.ndarray], tuple[np.ndarray, np.ndarray | None]] | None = None,
    *,
    name: str = "prefix",
    labels: str | None = None,
) -> FakeSet:
    """A new fake dataset of the first ``count`` records of ``fakeset``, answers rewritten.

    Nothing is queried: the images, sources and keys are copied, and ``answers`` turns the
    stored answers into the ones kept (``copycat-tf audit`` uses it to show a copycat what an
    attacker behind an output policy would have seen, from one purchase of queries). The
    result has the same format, oracle sha256 and contract as ``fakeset``; its
    ``queries_spent`` is ``count`` (what an attack of that size pays) and its config notes
    ``derived_from`` (the source's records) and ``derivation`` (``name``). Shards are
    written atomically and the manifest last, so a folder either holds the finished
    dataset or is rewritten by the next call; a finished one with the same source records,
    ``name`` and ``labels`` is returned as it is.

    Args:
        fakeset: the source (complete, holding at least ``count`` records).
        out_dir: the derived dataset's folder.
        count: records to take from the start.
        answers: ``answers(labels, probabilities, images) -> (labels, probabilities or None)``
            per shard (``probabilities`` is ``None`` when the source holds hard labels;
            ``images`` are the queries, for defences keyed on them); default keeps the
            stored answers.
        name: what ``answers`` does, recorded in the config (and part of the identity).
        labels: ``"hard"`` or ``"soft"`` (default the source's); ``"soft"`` needs
            ``answers`` to return probabilities.

    Raises:
        CopycatError: bad arguments, or ``out_dir`` holding something else.

    Usage::

        small = derive(FakeSet.open("runs/fake"), "runs/fake-1000", 1000)
        small.count, small.queries_spent
        # (1000, 1000)
    """
    check_whole("count", count)
    labels = labels or fakeset.manifest["config"]["labels"]
    if labels not in LABEL_MODES:
        raise CopycatError(f"labels must be one of {LABEL_MODES}; received {labels!r}")
    if not fakeset.complete or fakeset.count < count:
        raise CopycatError(
            f"fake dataset {fakeset.directory} holds {fakeset.count} records"
            f"{'' if fakeset.complete else ' (incomplete)'}; cannot take the first {count}"
        )
    out_dir = Path(out_dir)
    folder = fakeset_folder(out_dir)
    folder.check_not_file()
    if out_dir.resolve() == fakeset.directory.resolve():
        raise CopycatError(f"derive {fakeset.directory} into another folder, not into itself")
    covered, total = [], 0
    for shard in fakeset.manifest["shards"]:
        if total >= count:
            break
        covered.append(shard["sha256"])
        total += shard["count"]
    source_config = fakeset.manifest["config"]
    config = {
        **{k: v for k, v in source_config.items() if k not in ("derived_from", "derivation")},
        "labels": labels,
        "derived_from": {"directory": str(fakeset.directory), "oracle_sha256": fakeset.oracle_sha256,
                         "count": count, "shards_sha256": covered},
        "derivation": name,
    }

    def identity(c: dict) -> dict:
        return {**c, "derived_from": {k: v for k, v in c["derived_from"].items() if k != "directory"}}

    existing = read_manifest(out_dir) if out_dir.is_dir() else None
    if existing is not None:
        if "derived_from" not in existing["config"]:
            raise CopycatError(f"output folder {out_dir} holds a labeled fake dataset; choose another folder")
        if identity(existing["config"]) == identity(config) and existing["complete"]:
            return FakeSet(out_dir, existing)
        log.info("%s holds another derivation; writing it again", out_dir)
    folder.claim(overwrite=False, holds_run=existing is not None)
    folder.remove_own()  # a derivation is always written whole

    num_classes = fakeset.num_classes
    manifest = {**empty_manifest(fakeset.manifest["oracle"], num_classes, config, count),
                "queries_spent": count, "complete": True}
    shard_size = int(source_config.get("shard_size", DEFAULT_SHARD_SIZE))
    soft_source = fakeset.has_probabilities
    pending: dict[str, list[np.ndarray]] = {}

    def flush(final: bool) -> None:
        while pending and (final or sum(len(a) for a in pending["labels"]) >= shard_size):
            joined = {key: np.concatenate(parts) for key, parts in pending.items()}
            take = min(shard_size, len(joined["labels"]))
            if take == 0:
                break
            arrays = {key: value[:take] for key, value in joined.items()}
            rest = {key: value[take:] for key, value in joined.items()}
            pending.clear()
            if len(rest["labels"]):
                pending.update({key: [value] for key, value in rest.items()})
            append_shard(out_dir, manifest, arrays, next_item=0)

    taken = 0
    for shard in fakeset.iter_shards(with_probabilities=soft_source):
        if taken >= count:
            break
        n = min(count - taken, len(shard["labels"]))
        stored_probabilities = shard["probabilities"][:n] if soft_source else None
        new_labels, new_probabilities = (shard["labels"][:n], stored_probabilities)
        if answers is not None:
            new_labels, new_probabilities = answers(shard["labels"][:n], stored_probabilities, shard["images"][:n])
        new_labels = np.asarray(new_labels, np.int64)
        if new_labels.shape != (n,) or (n and (new_labels.min() < 0 or new_labels.max() >= num_classes)):
            raise CopycatError(f"derivation {name!r} returned labels of shape {new_labels.shape} "
                               f"or outside 0..{num_classes - 1}")
        arrays = {"images": shard["images"][:n], "labels": new_labels,
                  "sources": shard["sources"][:n], "keys": shard["keys"][:n]}
        if labels == "soft":
            if new_probabilities is None:
                raise CopycatError(f"derivation {name!r} gives labels only; derive it with labels='hard'")
            arrays["probabilities"] = np.asarray(new_probabilities, np.float32).reshape(n, num_classes)
        for key, value in arrays.items():
            pending.setdefault(key, []).append(value)
        taken += n
        flush(final=False)
    flush(final=True)
    write_manifest(out_dir, manifest)
    return FakeSet.open(out_dir)
