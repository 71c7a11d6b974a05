"""The attack's query loop: send query images to the oracle and keep its answers.

:func:`label` is the heart of the Copycat CNN attack: stream images from a
:class:`~copycat_tf.queries.QuerySource`, send them to the :class:`~copycat_tf.oracle.Oracle`
in batches within a budget, and append the answers to a fake dataset
(:mod:`copycat_tf.fakeset.writer`) that survives any interruption.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.fakeset.ray_engine import RayEngine, open_engine
from copycat_tf.fakeset.store import DEFAULT_SHARD_SIZE, LABEL_MODES, REJECTED, FakeSet
from copycat_tf.fakeset.writer import FakeSetWriter
from copycat_tf.oracle import Oracle
from copycat_tf.execution import Execution
from copycat_tf.queries import QuerySource
from copycat_tf.queries.batch_memory import query_batch_size
from copycat_tf.queries.spec import QuerySpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelProgress:
    """Where a labeling run stands; passed to :func:`label`'s ``progress`` callable.

    Attributes:
        labeled: records in the fake dataset (including those of earlier runs).
        budget: records asked for.
        rejected: inputs rejected so far.
        queries_spent: images sent to the oracle, all runs together.
        retries: requests the oracle sent again after failures (this run).
        cost: what the oracle's queries cost at its price (this run), or ``None``.
    """

    labeled: int
    budget: int
    rejected: int
    queries_spent: int
    retries: int = 0
    cost: float | None = None


def label(
    oracle: Oracle,
    source: QuerySource | QuerySpec | str | Sequence[str],
    budget: int,
    out_dir: str | os.PathLike,
    *,
    labels: str = "hard",
    seed: int | None = None,
    batch_size: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    execution: Execution | None = None,
) -> FakeSet:
    """Query the oracle with images from ``source`` and store its answers as a fake dataset.

    Rerunning with the same arguments after an interruption resumes where it stopped, with
    every answer received; a larger ``budget`` extends a finished dataset.

    Args:
        oracle: the target, e.g. an :class:`~copycat_tf.oracle.OnnxOracle`. Its own
            budget, if set, is respected too.
        source: a :class:`~copycat_tf.queries.QuerySource`, a
            :class:`~copycat_tf.queries.spec.QuerySpec` (sources, resize policy, images per
            call) or spec strings.
        budget: records wanted in the fake dataset (= queries, without interruptions).
        out_dir: the fake dataset's folder (created; must not be inside a query folder).
        labels: ``"hard"`` (class labels) or ``"soft"`` (also float32 probabilities).
        seed: seed for opening a ``QuerySpec`` or spec strings (default 0); a
            ``QuerySource`` has its own.
        batch_size: images per oracle call (default the ``QuerySpec``'s, else sized for the
            oracle's input by :func:`~copycat_tf.queries.batch_memory.query_batch_size`).
            The records written do not depend on it.
        shard_size: records per shard file.
        execution: :class:`~copycat_tf.execution.Execution`: ``overwrite`` deletes a fake
            dataset (and only its files) already in ``out_dir``; ``label_progress`` is called
            with a :class:`LabelProgress` at the start and after each batch; ``engine`` is
            ``"local"`` (this process), ``"ray"`` (a Ray instance started here, or the cluster
            ``RAY_ADDRESS`` names) or a :class:`~copycat_tf.fakeset.ray_engine.RayEngine`;
            for the same seed and sources every engine writes the same fake dataset.

    Returns:
        The :class:`FakeSet`.

    Raises:
        CopycatError: bad arguments, an incompatible dataset in ``out_dir``, a full disk.

    Usage::

        fakeset = label(OnnxOracle("target.onnx"), ["photos"], 10_000, "runs/fake",
                        labels="soft", seed=1)
        fakeset = label(oracle, QuerySpec(("./imagenet",), resize="pad", batch_size=256), 50_000,
                        "runs/big", execution=Execution(engine="ray", label_progress=print))
    """
    execution = execution or Execution()
    if batch_size is None and isinstance(source, QuerySpec):
        batch_size = source.batch_size
    batch_size = query_batch_size(oracle.contract.image_shape, batch_size, metered=oracle.metered)
    for name, value in (("budget", budget), ("batch_size", batch_size), ("shard_size", shard_size)):
        check_whole(name, value)
    if labels not in LABEL_MODES:
        raise CopycatError(f"labels must be one of {LABEL_MODES}; received {labels!r}")
    engine = execution.engine
    if engine != "local" and not isinstance(engine, RayEngine):
        with open_engine(engine) as opened:  # "ray": an engine for this call only
            return label(oracle, source, budget, out_dir, labels=labels, seed=seed, batch_size=batch_size,
                         shard_size=shard_size, execution=replace(execution, engine=opened))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CopycatError(f"output folder {out_dir} is a file; give a folder for the fake dataset")
    source = _as_source(source, oracle, seed)
    for folder in source.folders:
        if out_dir.resolve().is_relative_to(folder.resolve()):
            raise CopycatError(
                f"output folder {out_dir} is inside the query folder {folder}, so its shards "
                "would become queries; choose an output folder outside it"
            )
    config = {**source.config(), "labels": labels, "shard_size": shard_size}
    writer = FakeSetWriter.open(out_dir, oracle, config, budget, execution.overwrite)
    try:
        _run(writer, oracle, source, budget, labels == "soft", batch_size, execution.label_progress, engine)
    finally:
        writer.close()
    fakeset = FakeSet.open(out_dir)
    if fakeset.count == 0 and fakeset.manifest["exhausted"]:
        raise CopycatError(
            f"no usable query image: the query sources ran out after {fakeset.rejected} rejected "
            f"input(s) and nothing could be sent (reasons in {out_dir / REJECTED})"
        )
    return fakeset


def _as_source(source, oracle: Oracle, seed) -> QuerySource:
    shape = oracle.contract.image_shape
    if isinstance(source, QuerySource):
        if seed is not None:
            raise CopycatError("a QuerySource has its own seed; pass it to open_query_source")
        if source.image_shape != shape:
            raise CopycatError(
                f"the query source makes {source.image_shape} images but the oracle takes {shape}"
            )
        return source
    return QuerySpec.of(source).open(shape, 0 if seed is None else seed)


def _run(writer: FakeSetWriter, oracle: Oracle, source: QuerySource, budget: int, soft: bool,
         batch_size: int, progress, engine) -> None:
    left = oracle.queries_left
    limit = budget if left is None else min(budget, writer.labeled + left)
    # A metered oracle (a paid API) never spends past the budget, even over interruptions
    # whose answers were lost: the run may then end with fewer records than asked for.
    spend_limit = budget if oracle.metered else None
    if spend_limit is not None:
        limit = min(limit, writer.labeled + max(0, spend_limit - writer.queries_spent))

    def spent_up() -> bool:
        return spend_limit is not None and writer.queries_spent >= spend_limit

    if writer.labeled >= budget or spent_up():
        # Said once per stage by its caller (a strategy labels once per round).
        log.debug("%s already holds %d records (budget %d)", writer.directory, writer.labeled, budget)
        if not writer.manifest["complete"]:
            writer.commit(complete=True, exhausted=writer.manifest["exhausted"])
        return

    def report():
        if progress is not None:
            progress(LabelProgress(writer.labeled, budget, writer.rejected, writer.queries_spent,
                                   oracle.retries, oracle.cost))

    report()
    # The oracle refuses anything past the limit, whatever happens in this loop, and every
    # image is in queries.log before it is sent (write-ahead): a kill while answers are on
    # their way still counts them.
    with oracle.capped(limit - writer.labeled), oracle.charging_to(writer.spent):
        if engine == "local":
            exhausted = _fill(writer, oracle, source, limit, soft, batch_size, report)
        else:
            exhausted = engine.fill(writer, oracle, source, limit, soft, batch_size, report)
    if exhausted and writer.labeled < budget and source.used_up_hint():
        log.warning("query sources used up after %d of %d records: %s", writer.labeled, budget,
                    source.used_up_hint())
    elif exhausted:
        log.info("query sources used up after %d records", writer.labeled)
    elif spent_up() and writer.labeled < budget:
        log.warning("the budget of %d queries is spent at %d records (queries whose answers an "
                    "interruption lost count too)", budget, writer.labeled)
    elif writer.labeled < budget:
        log.warning("the oracle's query budget ran out at %d of %d records", writer.labeled, budget)
    writer.commit(complete=exhausted or writer.labeled >= budget or spent_up(), exhausted=exhausted)
    report()


def _fill(writer: FakeSetWriter, oracle: Oracle, source: QuerySource, limit: int, soft: bool,
          batch_size: int, report) -> bool:
    """The local engine: label until ``limit`` records or the stream runs out (returned)."""
    stream = source.queries(writer.next_item, window=2 * batch_size + 16)
    exhausted = False
    with contextlib.closing(stream):
        while writer.labeled < limit and not exhausted:
            want = min(batch_size, writer.shard_room, limit - writer.labeled)
            batch = []
            for query in stream:
                writer.next_item = query.position + 1
                if query.rejection is not None:
                    writer.reject(query)
                    continue
                batch.append(query)
                if len(batch) == want:
                    break
            else:
                exhausted = True
            if batch:
                answers = oracle.query(np.stack([q.image for q in batch]), soft=soft)
                writer.add(batch, answers.labels, answers.probabilities)
                if writer.shard_room == 0:
                    writer.commit()
                report()
    return exhausted
