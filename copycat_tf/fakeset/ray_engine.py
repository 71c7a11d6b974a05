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

Usage::

    with RayEngine("auto") as engine:  # the cluster `ray start --head` made on this machine
        fakeset = label(OnnxOracle("target.onnx"), ["/data/imagenet"], 1_000_000, "runs/fake",
                        engine=engine)
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from copycat_tf.errors import CopycatError, check_whole, first_line
from copycat_tf.oracle import OnnxOracle, Oracle
from copycat_tf.queries import Query, QuerySource, QueryTransforms, Rejection, SourceSpec, open_query_source

log = logging.getLogger(__name__)

#: The labeling engines :func:`~copycat_tf.fakeset.label` takes by name.
ENGINES = ("local", "ray")
INSTALL_HINT = 'pip install "copycat-tf[ray]"'
#: Times one batch is sent again after the actor answering it died.
ACTOR_RETRIES = 3
#: Seconds the oracle actors may take to start (load the target) before the run gives up.
ACTOR_START_S = 300


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
            first provider is a GPU's (:func:`actor_placement`).
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
        self._pool_actors: _ActorPool | None = None

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

    def fill(self, writer, oracle: Oracle, source: QuerySource, limit: int, soft: bool,
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
        queries = _RayStream(ray, source, writer.next_item, chunk=batch_size,
                             depth=pool.cpus + 2)
        inflight: deque[_Batch] = deque()
        planned, room = writer.labeled, writer.shard_room
        exhausted = False
        try:
            while True:
                # Batches are cut as the local loop cuts them (never across a shard), so the
                # shards, their manifest entries and rejected.tsv come out the same.
                while len(inflight) < window and planned < limit and not exhausted:
                    batch = _Batch()
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

    def _pool(self, oracle: Oracle) -> _ActorPool:
        if not isinstance(oracle, OnnxOracle):
            raise CopycatError(
                f"the ray engine runs ONNX targets (OnnxOracle); received {type(oracle).__name__}; "
                "use engine='local'"
            )
        key = (str(oracle.path.resolve()), oracle.identity, oracle.contract, tuple(oracle.providers))
        if key != self._pool_key:
            # One pool at a time: another target's actors would hold the CPUs this one needs.
            self._end_pool()
            self._pool_actors = _ActorPool.start(self._ray, oracle, self.actors, self.threads)
            self._pool_key = key
        return self._pool_actors

    def _end_pool(self) -> None:
        if self._pool_actors is not None:
            self._pool_actors.kill()
        self._pool_key = self._pool_actors = None


# -- the oracle's actors -------------------------------------------------------------------------


class _OracleActor:
    """One onnxruntime session of the target on a Ray worker (wrapped by ``ray.remote``)."""

    def __init__(self, path: str, identity: str, contract, input_size, providers, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4  # as OnnxOracle: errors become CopycatErrors, not C++ logs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        where = socket.gethostname()
        if not os.path.isfile(path):
            raise CopycatError(f"on node {where}: the target {path} does not exist; every node needs "
                               "the target at the driver's path")
        self.oracle = OnnxOracle(
            path, preprocessing=contract.preprocessing, layout=contract.input.layout,
            output=contract.output.name, output_kind=contract.output.kind, input_size=input_size,
            providers=providers, session_options=options,
        )
        if self.oracle.identity != identity:
            raise CopycatError(
                f"on node {where}: {path} has sha256 {self.oracle.identity[:12]}..., not the "
                f"driver's {identity[:12]}...; every node needs the same target file"
            )
        if self.oracle.contract != contract:
            raise CopycatError(f"on node {where}: {path} reads under another contract than the driver's")

    def where(self) -> tuple[str, int]:
        """This actor's host and process id."""
        return socket.gethostname(), os.getpid()

    def query(self, images: np.ndarray, soft: bool):
        answers = self.oracle.query(images, soft=soft)
        return answers.labels, answers.probabilities


@dataclass
class _Batch:
    """One oracle batch: the rejected items before it, its queries, and the stream position after."""

    rejected: list[Query] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    next_item: int | None = None
    future: object = None
    actor: int = -1
    tries: int = 0


class _ActorPool:
    """The oracle actors; each batch goes to the one with the fewest batches in flight."""

    def __init__(self, ray, actors: list, cpus: int):
        self.ray = ray
        self.actors = actors
        self.cpus = cpus
        self.busy = [0] * len(actors)

    def __len__(self) -> int:
        return len(self.actors)

    @classmethod
    def start(cls, ray, oracle: OnnxOracle, count: int | None, threads: int) -> _ActorPool:
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 0))
        count, gpus_each = actor_placement(oracle.providers, resources, count, threads)
        input_size = oracle.contract.image_shape[:2] if oracle.dynamic_size else None
        remote = ray.remote(_OracleActor).options(
            num_cpus=threads, num_gpus=gpus_each, max_restarts=ACTOR_RETRIES, max_task_retries=0,
            scheduling_strategy="SPREAD",
        )
        actors = [remote.remote(str(oracle.path.resolve()), oracle.identity, oracle.contract, input_size,
                                oracle.providers, threads) for _ in range(count)]
        started = [actor.where.remote() for actor in actors]
        ready, _ = ray.wait(started, num_returns=len(started), timeout=ACTOR_START_S)
        if len(ready) < len(started):
            for actor in actors:
                ray.kill(actor)
            raise CopycatError(
                f"{len(started) - len(ready)} of {count} oracle actor(s) found no free CPU in "
                f"{ACTOR_START_S} s (the cluster has {cpus}; other jobs may hold them); free some, "
                "or use fewer actors"
            )
        places = _get(ray, started)  # a refused target fails here
        log.info("Ray: %d oracle actor(s) of %d thread(s)%s on %s, sharing the cluster's %d CPU(s) with decoding",
                 count, threads, " and one GPU each" if gpus_each else "",
                 ", ".join(sorted({host for host, _ in places})), cpus)
        return cls(ray, actors, cpus)

    def submit(self, batch: _Batch, writer, oracle: Oracle, soft: bool) -> None:
        """Charge ``batch`` (logged before it is sent) and send it to the least busy actor."""
        _charge(writer, oracle, len(batch.queries))
        batch.actor = min(range(len(self.actors)), key=self.busy.__getitem__)
        self.busy[batch.actor] += 1
        images = np.stack([q.image for q in batch.queries])
        batch.future = self.actors[batch.actor].query.remote(images, soft)

    def answer(self, batch: _Batch, writer, oracle: Oracle, soft: bool) -> tuple:
        """``(labels, probabilities)`` for ``batch``, buying it again if its actor died."""
        while True:
            actor = batch.actor
            try:
                return _get(self.ray, batch.future)
            except self.ray.exceptions.RayActorError as exc:
                batch.tries += 1
                if batch.tries > ACTOR_RETRIES:
                    raise CopycatError(
                        f"the oracle actor answering {len(batch.queries)} queries died "
                        f"{batch.tries} times ({first_line(exc)}); rerun the same command to resume"
                    ) from exc
                # Sent again only to a live actor: a batch sent while Ray restarts it would fail
                # (and be charged) once more without reaching any model.
                self._wait_alive(actor, exc)
                log.warning("an oracle actor died with %d queries unanswered; buying them again",
                            len(batch.queries))
                self.submit(batch, writer, oracle, soft)
            finally:
                self.busy[actor] -= 1

    def _wait_alive(self, index: int, death: Exception) -> None:
        """Return once actor ``index`` answers again (Ray restarts it), or raise after ACTOR_START_S."""
        deadline = time.monotonic() + ACTOR_START_S
        while True:
            try:
                self.ray.get(self.actors[index].where.remote(), timeout=ACTOR_START_S)
                return
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise CopycatError(
                        f"an oracle actor died ({first_line(death)}) and was not back within "
                        f"{ACTOR_START_S} s ({first_line(exc)}); rerun the same command to resume"
                    ) from exc
                time.sleep(0.2)

    def kill(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def actor_placement(providers, resources: dict, count: int | None, threads: int) -> tuple[int, int]:
    """``(actors, GPUs each)`` for a target run by ``providers`` on a cluster with ``resources``.

    On CPUs: ``count`` actors (default one per ``threads`` CPUs), no GPU. With a GPU
    provider first (CUDA, TensorRT, ROCm...): one GPU per actor, so Ray places each on its
    own device and sets its ``CUDA_VISIBLE_DEVICES``; default one actor per GPU.

    Example:

    >>> actor_placement(["CPUExecutionProvider"], {"CPU": 8.0}, None, 2)
    (4, 0)
    >>> actor_placement(["CUDAExecutionProvider", "CPUExecutionProvider"], {"CPU": 32.0, "GPU": 4.0}, None, 1)
    (4, 1)

    Raises:
        CopycatError: more actors than the cluster's CPUs or GPUs can hold, or a GPU target
            on a cluster without GPUs.
    """
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    on_gpu = bool(providers) and providers[0] != "CPUExecutionProvider"
    if on_gpu:
        if not gpus:
            raise CopycatError(f"the target runs on {providers[0]}, but the Ray cluster has no GPU; "
                               "start its nodes on GPU machines, or label with --provider CPUExecutionProvider")
        count = count or gpus
        if count > gpus:
            raise CopycatError(f"the Ray cluster has {gpus} GPU(s); {count} oracle actor(s) need one each; "
                               "use fewer actors or a larger cluster")
    count = count or max(1, cpus // threads)
    if count * threads > cpus:
        raise CopycatError(
            f"the Ray cluster has {cpus} CPU(s); {count} oracle actor(s) of {threads} thread(s) "
            f"need {count * threads}; use fewer actors or threads, or a larger cluster"
        )
    return count, int(on_gpu)


def _charge(writer, oracle: Oracle, n: int) -> None:
    """Count ``n`` images an actor is about to answer, on disk first, then on the driver's oracle."""
    left = oracle.queries_left
    if left is not None and n > left:
        raise CopycatError(
            f"query budget exhausted: {oracle.queries_spent} of {oracle.budget} images spent, "
            f"{n} more needed to buy again what a dead oracle actor left unanswered; rerun with a "
            "larger budget to resume"
        )
    writer.spent(n)
    oracle.queries_spent += n


def _get(ray, refs):
    """``ray.get``, with a library error raised remotely re-raised as itself (one clear line)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, CopycatError):
            raise CopycatError(str(exc.cause)) from None
        raise


# -- decoding ---------------------------------------------------------------------------------------


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


class _RayStream:
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
            yield from _get(self.ray, self.pending.popleft())

    def _portable(self, item):
        # A file's reference is its path as the driver opened it; a worker needs it absolute.
        return replace(item, ref=os.path.abspath(item.ref)) if item.source in self.files else item

    def close(self) -> None:
        # Chunks still decoding are dropped, not cancelled: they cost no query, and Ray 2.x's
        # ray.cancel races a task's own reply and can abort the driver ("Check failed:
        # it != submissible_tasks_.end()", ray-project/ray#54798).
        self.pending.clear()
        self._queries.close()
