"""The Ray engine's oracle: one onnxruntime session of the target per actor, and the pool
that charges each batch before sending it and buys again what a dead actor left unanswered.

Used by :class:`~copycat_tf.fakeset.ray_engine.RayEngine`; see that module for the
guarantees.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field

import numpy as np

from copycat_tf.errors import CopycatError, first_line
from copycat_tf.fakeset.writer import FakeSetWriter
from copycat_tf.oracle import OnnxOracle, Oracle
from copycat_tf.queries import Query

log = logging.getLogger(__name__)

#: Times one batch is sent again after the actor answering it died.
ACTOR_RETRIES = 3
#: Seconds the oracle actors may take to start (load the target) before the run gives up.
ACTOR_START_S = 300


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
class Batch:
    """One oracle batch: the rejected items before it, its queries, and the stream position after."""

    rejected: list[Query] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    next_item: int | None = None
    future: object = None
    actor: int = -1
    tries: int = 0


class ActorPool:
    """The oracle actors; each batch goes to the one with the fewest batches in flight."""

    def __init__(self, ray, actors: list, cpus: int):
        self.ray = ray
        self.actors = actors
        self.cpus = cpus
        self.busy = [0] * len(actors)

    def __len__(self) -> int:
        return len(self.actors)

    @classmethod
    def start(cls, ray, oracle: OnnxOracle, count: int | None, threads: int) -> ActorPool:
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
        places = ray_get(ray, started)  # a refused target fails here
        log.info("Ray: %d oracle actor(s) of %d thread(s)%s on %s, sharing the cluster's %d CPU(s) with decoding",
                 count, threads, " and one GPU each" if gpus_each else "",
                 ", ".join(sorted({host for host, _ in places})), cpus)
        return cls(ray, actors, cpus)

    def submit(self, batch: Batch, writer: FakeSetWriter, oracle: Oracle, soft: bool) -> None:
        """Charge ``batch`` (logged before it is sent) and send it to the least busy actor."""
        _charge(writer, oracle, len(batch.queries))
        batch.actor = min(range(len(self.actors)), key=self.busy.__getitem__)
        self.busy[batch.actor] += 1
        images = np.stack([q.image for q in batch.queries])
        batch.future = self.actors[batch.actor].query.remote(images, soft)

    def answer(self, batch: Batch, writer: FakeSetWriter, oracle: Oracle, soft: bool) -> tuple:
        """``(labels, probabilities)`` for ``batch``, buying it again if its actor died."""
        while True:
            actor = batch.actor
            try:
                return ray_get(self.ray, batch.future)
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


def _charge(writer: FakeSetWriter, oracle: Oracle, n: int) -> None:
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


def ray_get(ray, refs):
    """``ray.get``, with a library error raised remotely re-raised as itself (one clear line)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, CopycatError):
            raise CopycatError(str(exc.cause)) from None
        raise
