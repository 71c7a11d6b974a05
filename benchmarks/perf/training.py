"""Training throughput: copycat training from the on-disk fake dataset vs plain model.fit.

Labels a fake dataset once (untimed), then times, interleaved and best of ``--repeat``:

    project           ``train_copycat`` on the fake dataset folder (its default path: records
                      read from the shards into memory, batches gathered in tf.data), with
                      everything a run does per epoch: validation on the held-out records,
                      checkpoint, TensorBoard log, learning-rate schedule. The ONNX export
                      after training is timed apart and left out.
    project streamed  the same with ``in_memory_bytes`` below the dataset's size: training
                      records streamed from the shards each epoch through the shuffle pool,
                      held-out records cached, as for every fake dataset over 1 GiB.
    reference         plain ``model.fit`` on float32 numpy arrays already in memory (the same
                      images, labels and training/validation split), same model, optimizer,
                      loss, batch size and epochs, validating on the same held-out records.

Both sides build and compile a fresh model inside the timing. Throughput is training
images per second: training records x epochs / wall seconds. Goal: project >= 0.95 x
reference.

Usage:
    python -m benchmarks.perf.training                              # 10,000 records, 28x28x1, small_cnn
    python -m benchmarks.perf.training --count 30000 --size 32 --channels 3 --repeat 3
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from benchmarks.inputs import make_conv_target
from benchmarks.measure import interleaved, machine
from benchmarks.row import Row, add_json_option, write_rows
from copycat_tf.fakeset import FakeSet, label
from copycat_tf.oracle import OnnxOracle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="records in the fake dataset")
    parser.add_argument("--size", type=int, default=28, help="image height = width")
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--queries", default="noise:uniform", help="query source spec")
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--epochs", type=int, help="default: the architecture's")
    parser.add_argument("--batch-size", type=int, help="default: the architecture's")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best run of each is kept")
    parser.add_argument("--no-streamed", action="store_true", help="skip the streamed variant")
    add_json_option(parser)
    args = parser.parse_args(argv)

    import keras

    from copycat_tf.models import build
    from copycat_tf.execution import Execution
    from copycat_tf.training import TrainConfig, train_copycat
    from copycat_tf.training import copycat as training
    from copycat_tf.training.data import validation_mask

    logging.getLogger("copycat_tf").setLevel(logging.WARNING)
    config = TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size).resolved()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        target = tmp / "target.onnx"
        make_conv_target(target, args.size, args.channels)
        print(f"labelling {args.count} {args.queries} queries ...", flush=True)
        fakeset = label(OnnxOracle(target), [args.queries], args.count, tmp / "fake")
        shape, classes = fakeset.image_shape, fakeset.num_classes

        # The reference gets the same records and split, as float32 arrays in memory.
        images = np.concatenate([s["images"] for s in fakeset.iter_shards()]).astype(np.float32)
        labels = np.concatenate([s["labels"] for s in fakeset.iter_shards()])
        held_out = validation_mask(fakeset.count, config.validation_fraction, config.seed)
        x_train, y_train = images[~held_out], labels[~held_out]
        x_val, y_val = images[held_out], labels[held_out]
        train_images = len(x_train) * config.epochs

        def reference(epochs=config.epochs):
            keras.utils.set_random_seed(config.seed)
            model = build(config.arch, shape, classes)
            model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                          loss=keras.losses.SparseCategoricalCrossentropy(),
                          metrics=[keras.metrics.SparseCategoricalAccuracy(name="agreement")])
            model.fit(x_train, y_train, batch_size=config.batch_size, epochs=epochs,
                      validation_data=(x_val, y_val), shuffle=True, verbose=0)

        export_seconds = []
        original_export = training._export

        def timed_export(*a, **k):
            start = time.perf_counter()
            try:
                return original_export(*a, **k)
            finally:
                export_seconds.append(time.perf_counter() - start)

        training._export = timed_export
        fit_seconds: dict[str, list[float]] = {}

        def project(name, in_memory_bytes):
            def run():
                start = time.perf_counter()
                train_copycat(FakeSet.open(tmp / "fake"), tmp / name, config, in_memory_bytes=in_memory_bytes, execution=Execution(overwrite=True))
                fit_seconds.setdefault(name, []).append(time.perf_counter() - start - export_seconds[-1])
            return run

        host = machine()
        print(f"{host}; {args.arch} on {fakeset.count} records {shape}: "
              f"{len(x_train)} train, {len(x_val)} held out, batch {config.batch_size}, "
              f"{config.epochs} epochs", flush=True)
        reference(epochs=1)  # warm-up: first TensorFlow graph builds and thread pools
        runs = {"reference model.fit (arrays in memory)": reference,
                "project train_copycat (default)": project("default", training.IN_MEMORY_BYTES)}
        if not args.no_streamed:
            # As a fake dataset over the in-memory limit: training records stream from the
            # shards, the held-out ones (a tenth) are cached after their first pass.
            half = fakeset.count * (int(np.prod(shape)) + 16) // 2
            runs["project train_copycat (streamed)"] = project("streamed", half)
        best = interleaved(runs, args.repeat)
        # The project's figure leaves out the ONNX export that follows training.
        for name, seconds in fit_seconds.items():
            best[f"project train_copycat ({name})"] = min(seconds)

        reference_name = "reference model.fit (arrays in memory)"
        t_ref = best[reference_name]
        rows = []
        print(f"\n{'figure':45s} {'seconds':>8s} {'images/s':>9s}")
        for name, seconds in best.items():
            print(f"{name:45s} {seconds:8.2f} {train_images / seconds:9.0f}")
            rows.append(Row("training", name, "throughput", train_images / seconds, "img/s",
                            reference=None if name == reference_name else train_images / t_ref, machine=host))
        print(f"ONNX export after training (not counted): {min(export_seconds):.1f} s")
        for name in runs:
            if name.startswith("project"):
                ratio = t_ref / best[name]
                print(f"{name}: images/s project / reference = {ratio:.2f} (goal >= 0.95)")
        rows.append(Row("training", "ONNX export after training (not counted)", "wall", min(export_seconds), "s",
                        machine=host))
        write_rows(args.json, rows)


if __name__ == "__main__":
    main()
