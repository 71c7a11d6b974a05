"""GPU: vgg16 fine-tuning at 224 px, float32 vs mixed precision; labeling, onnxruntime CUDA vs CPU.

One command, a few minutes on one GPU (well under 10), two comparisons measured in the same
run:

    fine-tuning   the ``vgg16`` copycat (``copycat_tf.models.build("vgg16", (224, 224, 3), 10)``),
                  every layer trainable, Adam at 1e-4, ``model.fit`` on one batch of pixels
                  repeated from a ``tf.data`` pipeline. After ``--warmup`` untimed steps (graph
                  tracing, XLA compilation, cuDNN's algorithm search), one ``fit`` of
                  ``--warmup`` steps and one of ``--steps`` steps are timed; images per second
                  come from their difference, so ``fit``'s fixed start-up cost cancels. Under
                  Keras's ``float32`` policy and then under
                  ``mixed_float16`` (the model built after the policy is set; its softmax
                  stays float32). Weights are random: throughput does not depend on them,
                  and no ImageNet weights are reachable offline.
    labeling      the same vgg16 exported to ONNX at 224 px (``copycat_tf.export``), queried
                  through the project's :class:`~copycat_tf.oracle.OnnxOracle` at the batch
                  ``label`` would use (8 at 224 px; ``--label-batch`` to try others), with
                  ``providers=["CPUExecutionProvider"]`` and with
                  ``["CUDAExecutionProvider"]``; images per second after one warm-up batch.
                  The session's first provider is checked: onnxruntime falls back to the CPU
                  silently when the CUDA libraries do not load, and that is reported, not timed.

It prints mixed / float32 and cuda / cpu as ratios, names the GPU (``nvidia-smi``, else
TensorFlow's device details), and with ``--json FILE`` writes :class:`benchmarks.row.Row`
lines. Without a GPU visible to TensorFlow it stops with one line and exit status 2;
``--cpu-smoke`` runs the same code on the CPU at 32 px for a few steps (both labeling sides
then use the CPU provider) so that the script itself can be tested anywhere.

The CUDA side needs ``onnxruntime-gpu`` in place of ``onnxruntime`` (same version) and
TensorFlow with CUDA (``tensorflow[and-cuda]``).

Usage:
    python -m benchmarks.perf gpu                          # on a GPU machine
    python -m benchmarks.perf gpu --batch 128 --json gpu.jsonl
    python -m benchmarks.perf gpu --cpu-smoke              # the script checked on the CPU (~1 min)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import astuple, dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from benchmarks.measure import machine
from benchmarks.row import Row, add_json_option, write_rows

NAME = "gpu"
CLASSES = 10
POLICIES = ("float32", "mixed_float16")
#: Exit status when there is no GPU to measure (argparse uses 2 for bad usage too: nothing ran).
NO_GPU = 2


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does.

    Attributes:
        size: image height = width, in pixels.
        batch: images per training step.
        steps: timed training steps per precision policy.
        warmup: untimed training steps first (tracing, compilation, autotuning).
        cuda_images: images labelled through the CUDA provider.
        cpu_images: images labelled through the CPU provider (fewer: vgg16 at 224 px is slow there).
    """

    size: int = 224
    batch: int = 64
    steps: int = 60
    warmup: int = 10
    cuda_images: int = 4096
    cpu_images: int = 256


#: ``--cpu-smoke``: the same code, small enough for a CPU in a test.
SMOKE = Sizes(size=32, batch=4, steps=3, warmup=1, cuda_images=8, cpu_images=8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help=f"run on the CPU at {SMOKE.size} px for {SMOKE.steps} steps: checks the script, "
                             "measures nothing worth quoting")
    parser.add_argument("--size", type=int, help=f"image side in pixels (default {Sizes.size})")
    parser.add_argument("--batch", type=int, help=f"training batch (default {Sizes.batch})")
    parser.add_argument("--steps", type=int, help=f"timed training steps per policy (default {Sizes.steps})")
    parser.add_argument("--warmup", type=int,
                        help=f"untimed training steps first, and the short timed fit (default {Sizes.warmup})")
    parser.add_argument("--label-batch", type=int, metavar="N",
                        help="images per labeling call (default: what label() sends at this size, 8 at 224 px)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    sizes = SMOKE if args.cpu_smoke else Sizes()
    sizes = replace(sizes, **{k: v for k, v in (("size", args.size), ("batch", args.batch),
                                                ("steps", args.steps), ("warmup", args.warmup)) if v is not None})
    if min(astuple(sizes)) < 1 or sizes.steps <= sizes.warmup or (args.label_batch is not None
                                                                   and args.label_batch < 1):
        parser.error(f"--size, --batch, --steps, --warmup and --label-batch must be >= 1 and --steps more than "
                     f"--warmup; received {sizes}, --label-batch {args.label_batch}")

    import tensorflow as tf

    if args.cpu_smoke:
        tf.config.set_visible_devices([], "GPU")
        device = "CPU (--cpu-smoke)"
    else:
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            print("gpu: no GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty); "
                  "run this on a GPU machine with tensorflow[and-cuda], or pass --cpu-smoke to check the "
                  "script on the CPU", file=sys.stderr)
            raise SystemExit(NO_GPU)
        device = gpu_name(gpus[0])
    host = f"{device}; {machine()}"
    print(f"{host}\nvgg16 at {sizes.size}x{sizes.size}x3, {CLASSES} classes, random weights (throughput only)",
          flush=True)

    rows = fine_tuning_rows(sizes, host, smoke=args.cpu_smoke)
    rows += labeling_rows(sizes, host, args.label_batch, smoke=args.cpu_smoke)
    print(f"\n{'figure':72s} {'img/s':>9s} {'ratio':>7s}")
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:7.2f}"
        print(f"{row.case:72s} {row.value:9.1f} {ratio}")
    for row in rows:
        if row.ratio is not None:
            print(f"{row.case}: {row.ratio:.2f} x {row.reference:.1f} img/s")
    write_rows(args.json, rows)


def gpu_name(gpu) -> str:
    """The GPU's name and memory from ``nvidia-smi``, else TensorFlow's device details."""
    smi = shutil.which("nvidia-smi")
    if smi:
        found = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, check=False, timeout=30)
        if found.returncode == 0 and found.stdout.strip():
            name, memory, driver = (part.strip() for part in found.stdout.splitlines()[0].split(","))
            return f"{name} ({memory}, driver {driver})"
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(gpu)
    return f"{details.get('device_name', gpu.name)} (compute capability {details.get('compute_capability')})"


def fine_tuning_rows(sizes: Sizes, host: str, *, smoke: bool) -> list[Row]:
    """Training images per second under each policy of :data:`POLICIES`, the first the reference."""
    rows = []
    for policy in POLICIES:
        rate, xla = fine_tuning_throughput(policy, sizes, smoke=smoke)
        reference = rows[0].value if rows else None
        rows.append(Row(NAME, f"vgg16 fine-tuning, {sizes.size} px, batch {sizes.batch}, {policy}", "throughput",
                        rate, "img/s", reference=reference, machine=host))
        print(f"  fine-tuning {policy} (XLA {'on' if xla else 'off'}): {rate:.1f} img/s", flush=True)
    return rows


def fine_tuning_throughput(policy: str, sizes: Sizes, *, smoke: bool) -> tuple[float, bool]:
    """``(images per second, whether XLA compiled the step)`` of ``model.fit`` on the vgg16
    copycat built under ``policy``."""
    import keras
    import tensorflow as tf

    from copycat_tf.models import build

    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = build("vgg16", (sizes.size, sizes.size, 3), CLASSES)
        if model.output.dtype != "float32":
            raise SystemExit(f"gpu: the vgg16 copycat's output is {model.output.dtype} under {policy}; "
                             "its softmax layer must compute in float32")
        model.trainable = True  # fine-tuning: the backbone's layers train too
        # "auto", as copycat training compiles: XLA wherever a GPU is present. The smoke run
        # asks for XLA itself, to run the same compiled step on the CPU (and to avoid Eigen's
        # float16 kernels there, about 10 s a step).
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.SparseCategoricalCrossentropy(),
                      jit_compile=True if smoke else "auto")
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (sizes.batch, sizes.size, sizes.size, 3)).astype(np.float32)
        labels = rng.integers(0, CLASSES, sizes.batch)
        batches = tf.data.Dataset.from_tensors((pixels, labels)).repeat()
        model.fit(batches, steps_per_epoch=sizes.warmup, epochs=1, verbose=0, shuffle=False)
        # fit returns after the epoch's last step has finished (it reads the loss back).
        seconds = {}
        for steps in (sizes.warmup, sizes.steps):
            start = time.perf_counter()
            model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
            seconds[steps] = time.perf_counter() - start
        xla = bool(model.jit_compile)
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()
    extra = seconds[sizes.steps] - seconds[sizes.warmup]
    if extra <= 0:
        raise SystemExit(f"gpu: {sizes.steps} steps took no longer than {sizes.warmup} under {policy}; "
                         "raise --steps for a measurable difference")
    return (sizes.steps - sizes.warmup) * sizes.batch / extra, xla


def labeling_rows(sizes: Sizes, host: str, batch: int | None, *, smoke: bool) -> list[Row]:
    """Labeling images per second through the CPU provider (the reference), then CUDA's."""
    import keras

    from copycat_tf.errors import CopycatError
    from copycat_tf.export import export_onnx, native_contract
    from copycat_tf.models import build
    from copycat_tf.queries.batch_memory import query_batch_size

    shape = (sizes.size, sizes.size, 3)
    batch = query_batch_size(shape, batch)  # default: what label() sends per call at this size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vgg16.onnx"
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        export_onnx(build("vgg16", shape, CLASSES), path, native_contract(shape, CLASSES))
        print(f"  exported vgg16 to ONNX in {time.perf_counter() - start:.0f} s", flush=True)
        images = np.random.default_rng(1).integers(0, 256, (max(sizes.cpu_images, sizes.cuda_images), *shape),
                                                   dtype=np.uint8)
        # --cpu-smoke: the CPU provider stands in for CUDA's, so the path is the same.
        sides = (("CPUExecutionProvider", "CPUExecutionProvider", sizes.cpu_images),
                 ("CPUExecutionProvider in place of CUDA" if smoke else "CUDAExecutionProvider",
                  "CPUExecutionProvider" if smoke else "CUDAExecutionProvider", sizes.cuda_images))
        for case, provider, count in sides:
            try:
                rate, ran_on = labeling_throughput(path, provider, images[:count], batch)
            except CopycatError as exc:
                print(f"  labeling through {provider}: not measured: {exc}", flush=True)
                continue
            if ran_on != provider:
                print(f"  labeling through {provider}: not measured: onnxruntime ran the model on {ran_on} "
                      "instead (the CUDA libraries did not load)", flush=True)
                continue
            reference = rows[0].value if rows else None
            rows.append(Row(NAME, f"labeling, OnnxOracle batch {batch}, {case}", "throughput", rate, "img/s",
                            reference=reference, machine=host))
            print(f"  labeling {case}: {rate:.1f} img/s over {count:,} images", flush=True)
    return rows


def labeling_throughput(path: Path, provider: str, images: np.ndarray, batch: int) -> tuple[float, str]:
    """``(images per second, the provider onnxruntime really used)`` for ``images`` through an OnnxOracle."""
    from copycat_tf.oracle import OnnxOracle

    oracle = OnnxOracle(path, providers=[provider])
    ran_on = oracle.session.get_providers()[0]
    oracle.query(images[:batch])  # warm-up: memory arenas, cuDNN's algorithm search
    start = time.perf_counter()
    for first in range(0, len(images), batch):
        oracle.query(images[first:first + batch])
    return len(images) / (time.perf_counter() - start), ran_on


if __name__ == "__main__":
    main()
