"""Helpers shared by the benchmark scripts (not a figure of its own).

Every benchmark measures the project and its reference in the same run, interleaved, and
keeps the best of several repeats: on a shared machine a single timing varies by tens of
percent with the neighbours' load, and the best run is the one least disturbed by them.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    """``nproc`` cores, CPU model and the main library versions, for the figures' header."""
    model = platform.processor() or "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if found:
            model = found.group(1).strip()
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores ({model}), Python {platform.python_version()}"


def best_of(work, repeat: int = 1):
    """Run ``work()`` ``repeat`` times; return ``(result, best wall seconds, CPU seconds of that run)``."""
    best = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        run = (result, time.perf_counter() - wall, time.process_time() - cpu)
        best = run if best is None or run[1] < best[1] else best
    return best


def interleaved(runs: dict, repeat: int) -> dict:
    """Time each ``name -> work`` once per round, ``repeat`` rounds; best wall seconds per name.

    Alternating the contenders spreads a neighbour's burst of load over all of them
    instead of penalising whichever happened to run during it.
    """
    best: dict[str, float] = {}
    for round_ in range(repeat):
        for name, work in runs.items():
            start = time.perf_counter()
            work()
            wall = time.perf_counter() - start
            print(f"  round {round_ + 1}/{repeat} {name}: {wall:.2f} s", flush=True)
            best[name] = min(best.get(name, wall), wall)
    return best


def effective_cores(threads: int) -> float:
    """How many cores GIL-free work really gets now: sha256 of 32 MiB on 1 thread vs ``threads``."""
    data = os.urandom(32 << 20)

    def run(n):
        workers = [threading.Thread(target=lambda: hashlib.sha256(data).digest()) for _ in range(n)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.perf_counter() - start

    return threads * min(run(1) for _ in range(3)) / min(run(threads) for _ in range(3))


def make_conv_target(path: Path, size: int, channels: int = 3, num_classes: int = 10, seed: int = 0) -> None:
    """A small CNN (two 3x3 convs, pooling, dense, softmax) taking NHWC float [0, 1] images."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name, *shape):
        fan_in = int(np.prod(shape[1:]))
        return numpy_helper.from_array(rng.normal(0, (2 / fan_in) ** 0.5, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    initializers = [
        weight("w1", 16, channels, 3, 3), numpy_helper.from_array(np.zeros(16, np.float32), "b1"),
        weight("w2", 32, 16, 3, 3), numpy_helper.from_array(np.zeros(32, np.float32), "b2"),
        weight("w3", 32, num_classes), numpy_helper.from_array(np.zeros(num_classes, np.float32), "b3"),
    ]
    graph = helper.make_graph(
        nodes, "bench_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, channels])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", num_classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_python(args: list[str], *, env: dict | None = None) -> tuple[float, str]:
    """Run ``python args...`` to completion; return (wall seconds, stdout). Raises on failure."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout



def art_thief(arch: str, shape, classes: int, seed: int = 0):
    """An ART ``TensorFlowV2Classifier`` around a fresh ``copycat_tf.models.build(arch)``
    model, trained with the architecture's default Adam learning rate (the thief every ART
    reference attack here trains)."""
    import keras
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    from copycat_tf.models import build, default_training

    keras.utils.set_random_seed(seed)
    model = build(arch, shape, classes)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()  # ART reduces its one-hot labels for it
    optimizer = keras.optimizers.Adam(default_training(arch)["learning_rate"])

    @tf.function
    def train_step(model, images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))

    return TensorFlowV2Classifier(model, nb_classes=classes, input_shape=shape, loss_object=loss_fn,
                                  optimizer=optimizer, train_step=train_step, clip_values=(0, 255))
