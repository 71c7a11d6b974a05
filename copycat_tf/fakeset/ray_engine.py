"""Labeling on a Ray cluster: decoding in Ray tasks, the oracle in a pool of actors.

:func:`~copycat_tf.fakeset.label` with ``engine="ray"`` (or a :class:`RayEngine`) runs the
same query loop as the local engine, spread over a Ray cluster:

- the driver walks the query stream (stream positions and source references, no pixels) and
  sends it in chunks to Ray tasks that decode and fit the images; every task reopens the
  query sources once per worker process and checks it sees the same files as the driver;
- the driver forms the oracle's batches in stream order exactly as the local loop does,
  logs each in ``queries.log`` *before* sending it (write-ahead), and sends it to one of a
  pool of actors, each holding its own onnxruntime session of the same ONNX file under the
  same contract (``intra_op_num_threads`` set per actor);
- answers are taken in stream order and written by the driver through the same writer, so
  for the same seed and sources the fake dataset is the local engine's, shard for shard.

The budget is the driver's alone: it is the only place batches are formed and charged, so
actors can never spend past it. Up to ``window`` batches are in flight; a killed driver
re-buys on rerun at most the unfinished shard plus that window (``shard_size + window *
batch_size`` queries). A killed actor is restarted by Ray and its unanswered batches are
bought again (and logged again) unless that would pass the oracle's budget. A killed decode
task is retried by Ray; decoding spends nothing.

Ray is an optional dependency (``pip install "copycat-tf[ray]"``) imported only here, only
when the engine runs. Every node needs copycat-tf installed and the query sources and the
target at the same paths as the driver (a shared or copied file system).

The engine (this module) drives the loop; :mod:`~copycat_tf.fakeset.ray_decoding` streams
the queries through Ray tasks and :mod:`~copycat_tf.fakeset.ray_actors` holds the oracle's
actors.

Usage::

    with RayEngine("auto") as engine:  # the cluster `ray start --head` made on this machine
        fakeset = label(OnnxOracle("target.onnx"), ["/data/imagenet"], 1_000_000, "runs/fake",
                        execution=Execution(engine=engine))
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager

from copycat_tf.errors import CopycatError, check_whole, first_line
from copycat_tf.fakeset.ray_actors import ActorPool, Batch
from copycat_tf.fakeset.ray_decoding import RayStream
from copycat_tf.fakeset.writer import FakeSetWriter
from copycat_tf.oracle import OnnxOracle, Oracle
from copycat_tf.queries import QuerySource

log = logging.getLogger(__name__)

#: The labeling engines :func:`~copycat_tf.fakeset.label` takes by name.
ENGINES = ("local", "ray")
INSTALL_HINT = 'pip install "copycat-tf[ray]"'


def import_ray():
    """The ``ray`` module, or one clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise CopycatError(f"the ray engine needs Ray, which is not installed; {INSTALL_HINT}") from None
    return ray


@contextmanager
def open_engine(engine):
    """``engine`` ready for several labeling calls: ``"ray"`` becomes a :class:`RayEngine`
    closed on leaving the block; ``"local"`` and a :class:`RayEngine` pass through.

    Raises:
        CopycatError: an unknown engine.
    """
    if engine == "ray":
        with RayEngine() as ray_engine:
            yield ray_engine
    elif engine == "local" or isinstance(engine, RayEngine):
        yield engine
    else:
        raise CopycatError(f"engine must be one of {', '.join(ENGINES)} or a RayEngine; received {engine!r}")


class RayEngine:
    """Where and how :func:`~copycat_tf.fakeset.label` runs on Ray.

    One engine serves several labeling calls (a balanced strategy's rounds) with the same
    actors; :meth:`close` (or leaving a ``with`` block) ends them, and ends Ray too when the
    engine started it.

    Args:
        address: the cluster: ``None`` starts Ray in this process (or joins ``RAY_ADDRESS``),
            ``"auto"`` joins the cluster started on this machine, ``"HOST:PORT"`` joins the
            head node there.
        actors: oracle actors; default the cluster's CPUs divided by ``threads`` (decoding
            tasks share the same cores and reserve none), or one per GPU when the target's
            first provider is a GPU's (:func:`~copycat_tf.fakeset.ray_actors.actor_placement`).
        threads: onnxruntime ``intra_op_num_threads`` of each actor (and the CPUs Ray
            reserves for it).
        window: oracle batches in flight; default two per actor. A killed driver re-buys
            at most ``shard_size + window * batch_size`` queries on rerun.

    Raises:
        CopycatError: Ray is not installed, or an argument is not a whole number >= 1.
    """

    def __init__(self, address: str | None = None, *, actors: int | None = None, threads: int = 1,
                 window: int | None = None):
        for name, value in (("actors", actors), ("threads", threads), ("window", window)):
            if value is not None:
                check_whole(name, value)
        self.module = import_ray()  # before anything is written: no Ray, no half-made dataset
        self.address = address
        self.actors = actors
        self.threads = threads
        self.window = window
        self._ray = None
        self._started = False  # this engine called ray.init, so it shuts Ray down
        self._pool_key: tuple | None = None
        self._pool_actors: ActorPool | None = None

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End this engine's actors, and Ray when this engine started it."""
        if self._ray is None:
            return
        self._end_pool()
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._ray, self._started = None, False

    # -- the query loop ------------------------------------------------------------------

    def fill(self, writer: FakeSetWriter, oracle: Oracle, source: QuerySource, limit: int, soft: bool,
             batch_size: int, report: Callable[[], None]) -> bool:
        """Label until ``writer`` holds ``limit`` records or the stream runs out (returned).

        The caller (the query loop) opens the writer, caps the oracle and commits at the end,
        exactly as for the local engine.
        """
        if not isinstance(oracle, OnnxOracle):
            raise CopycatError("the ray engine labels for an ONNX file target (each actor opens it); "
                               "a remote target is already served elsewhere: use --engine local")
        ray = self._connect()
        pool = self._pool(oracle)
        window = self.window or 2 * len(pool)
        queries = RayStream(ray, source, writer.next_item, chunk=batch_size,
                             depth=pool.cpus + 2)
        inflight: deque[Batch] = deque()
        planned, room = writer.labeled, writer.shard_room
        exhausted = False
        try:
            while True:
                # Batches are cut as the local loop cuts them (never across a shard), so the
                # shards, their manifest entries and rejected.tsv come out the same.
                while len(inflight) < window and planned < limit and not exhausted:
                    batch = Batch()
                    want = min(batch_size, room, limit - planned)
                    for query in queries:
                        batch.next_item = query.position + 1
                        if query.rejection is not None:
                            batch.rejected.append(query)
                            continue
                        batch.queries.append(query)
                        if len(batch.queries) == want:
                            break
                    else:
                        exhausted = True
                    if batch.queries:
                        pool.submit(batch, writer, oracle, soft)
                        planned += len(batch.queries)
                        room = room - len(batch.queries) or writer.shard_size
                    inflight.append(batch)
                if not inflight:
                    return exhausted
                batch = inflight.popleft()
                answers = pool.answer(batch, writer, oracle, soft) if batch.queries else None
                for query in batch.rejected:
                    writer.reject(query)
                if batch.next_item is not None:
                    writer.next_item = batch.next_item
                if answers is not None:
                    writer.add(batch.queries, *answers)
                    if writer.shard_room == 0:
                        writer.commit()
                    report()
        finally:
            queries.close()

    # -- Ray ---------------------------------------------------------------------------------

    def _connect(self):
        if self._ray is not None:
            return self._ray
        ray = self.module
        if not ray.is_initialized():
            # Ray reports usage statistics to its makers unless told not to; this tool sends
            # nothing anywhere the user did not ask for.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            address = self.address or os.environ.get("RAY_ADDRESS")
            local = {} if address else {"include_dashboard": False}
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **local)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise CopycatError(
                    f"cannot start or join {where} ({first_line(exc)}); start the cluster with "
                    "`ray start --head` and pass its address to --ray-address, or use --engine local"
                ) from exc
            self._started = True
            log.info("Ray: %s", "joined " + address if address else "started in this process")
        self._ray = ray
        return ray

    def _pool(self, oracle: Oracle) -> ActorPool:
        if not isinstance(oracle, OnnxOracle):
            raise CopycatError(
                f"the ray engine runs ONNX targets (OnnxOracle); received {type(oracle).__name__}; "
                "use engine='local'"
            )
        key = (str(oracle.path.resolve()), oracle.identity, oracle.contract, tuple(oracle.providers))
        if key != self._pool_key:
            # One pool at a time: another target's actors would hold the CPUs this one needs.
            self._end_pool()
            self._pool_actors = ActorPool.start(self._ray, oracle, self.actors, self.threads)
            self._pool_key = key
        return self._pool_actors

    def _end_pool(self) -> None:
        if self._pool_actors is not None:
            self._pool_actors.kill()
        self._pool_key = self._pool_actors = None
