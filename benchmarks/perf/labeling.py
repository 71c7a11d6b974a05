"""Labeling throughput: decoding overlapped with inference vs each stage alone.

On one JPEG folder and one small conv-net target, times (best of ``--repeat``)

    decode  the query source alone (decode + resize in the thread pool, one thread per core),
    ort     the oracle alone (onnxruntime, with its uint8 -> float conversion) on the same
            pre-decoded images at batches of 32 to 1,024; the fastest batch and session
            setting count,
    label   a full ``label()`` run (decoding overlapped with inference, shards written and
            synced, manifest committed after every shard),

and prints images/s for each, ``label / max(decode, ort)`` (the goal: <= 1.1, the slower
stage alone sets the pace), ``label / (decode + ort)`` (1.0: no overlap at all) and
``label / CPU floor``, where the floor is (decode CPU seconds + ort CPU seconds) / the
cores this run really got: when each stage alone already keeps every core busy, no
overlap can beat their summed CPU time, and the 1.1 goal is out of reach whenever
``CPU floor / max(decode, ort)`` exceeds it.

Findings (2 vCPUs AMD EPYC shared with other jobs; 2,000 JPEGs of 500x375 -> 64x64x3,
batch 64; see BENCHMARKS.md for the table):
- Quieter host (1.9 effective cores): decode 1,901 img/s, onnxruntime 6,434 img/s, label
  1,429 img/s: label / max = 1.33, label / (decode + ort) = 1.03, label / CPU floor = 1.13,
  and the floor itself is 1.18 x max(decode, ort). Decoding alone keeps both cores busy, so
  no overlap can beat the summed CPU; the goal needs decoding to leave a core idle (more
  cores than decoding can use, or the oracle on another device).
- intra_op_num_threads 1 vs all cores, batch 32 to 256: onnxruntime alone spends 0.20-0.26
  ms CPU per image with one thread against 0.24-0.35 with all cores (no pool hand-offs),
  but is faster with all cores, and inside ``label`` the two stayed within this host's
  noise; batch size is not monotonic under load (alone, 32 was fastest). ORT_PARALLEL execution and a lower graph-optimisation level
  were slower (0.54 and 0.48 ms CPU per image). Spinning worker threads steal the decoders'
  core, so the oracle turns ``session.intra_op.allow_spinning`` off.
- Thread pool rather than tf.data: tf.data's JPEG-only decode ran ~1,480 img/s against
  ~860-960 for the pool (on one effective core), but it reads no webp/tiff, has no
  header-level bomb guard, and would make labeling import TensorFlow (~10 s start, ~1 GB).
  Pillow and onnxruntime release the GIL, so threads do overlap them.

Usage:
    python -m benchmarks.perf.labeling                    # 2,000 generated 500x375 JPEGs
    python -m benchmarks.perf.labeling --folder ~/imagenet/val --size 32
    python -m benchmarks.perf.labeling --tf-data          # also time a tf.data decode pipeline
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.inputs import make_conv_target, make_jpegs
from benchmarks.measure import best_of, effective_cores, machine
from benchmarks.row import Row, add_json_option, write_rows
from copycat_tf.execution import Execution
from copycat_tf.fakeset import label
from copycat_tf.oracle import OnnxOracle
from copycat_tf.queries import open_query_source
from copycat_tf.queries.batch_memory import query_batch_size


def oracle_with(target: Path, threads: int) -> OnnxOracle:
    """The project's session settings (no spinning), with ``threads`` intra-op threads (0: all cores)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return OnnxOracle(target, session_options=options)


def decode_all(folder: Path, shape, workers: int, window: int) -> np.ndarray:
    source = open_query_source(str(folder), shape, seed=0)
    return np.stack([q.image for q in source.queries(workers=workers, window=window) if q.image is not None])


def ort_all(oracle: OnnxOracle, images: np.ndarray, batch: int) -> None:
    for start in range(0, len(images), batch):
        oracle.query(images[start : start + batch])


def tf_data_decode(folder: Path, size: int) -> int:
    import tensorflow as tf

    def load(path):
        # ratio=4: DCT downscaling, the same trick the Pillow path uses through draft().
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, ratio=4)
        return tf.cast(tf.image.resize(image, (size, size)), tf.uint8)

    files = tf.data.Dataset.list_files(str(folder / "*.jpg"), shuffle=False)
    dataset = files.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(64).prefetch(2)
    return sum(int(batch.shape[0]) for batch in dataset)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="JPEG folder (default: generate one)")
    parser.add_argument("--count", type=int, default=2000, help="JPEGs to generate")
    parser.add_argument("--size", type=int, default=64, help="target input height = width")
    parser.add_argument("--batch-size", type=int,
                        help="label()'s batch (default: the one label() sizes for the target's input)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    parser.add_argument("--tf-data", action="store_true", help="also time a tf.data decode pipeline")
    add_json_option(parser)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = args.folder
        if folder is None:
            folder = tmp / "jpegs"
            print(f"generating {args.count} JPEGs of 500x375 ...", flush=True)
            make_jpegs(folder, args.count)
        target = tmp / "cnn.onnx"
        make_conv_target(target, args.size)
        shape = OnnxOracle(target).contract.image_shape
        cores = len(os.sched_getaffinity(0))
        batch, repeat = args.batch_size or query_batch_size(shape), args.repeat
        window = 2 * batch + 16  # what label() uses
        effective = effective_cores(cores)
        host = machine()
        print(f"{host}; {effective:.1f} effective cores for GIL-free threads now; "
              f"target {shape}, batch {batch}, folder {folder}", flush=True)

        decode = functools.partial(decode_all, folder, shape, cores)
        images = decode(window)  # also warms the page cache
        n = len(images)
        oracles = {threads: oracle_with(target, threads) for threads in (0, 1)}
        for oracle in oracles.values():
            ort_all(oracle, images[:256], 64)  # warm up

        def full_run(threads, size):
            return label(oracle_with(target, threads), str(folder), n, tmp / "fake", batch_size=size, execution=Execution(overwrite=True))

        # Every figure once per round, rounds repeated: a burst of neighbour load hits them all.
        runs = {("decode", 0, 0): functools.partial(decode, window)}
        for threads in (0, 1):
            for size in sorted({32, 64, 256, 1024, batch}):
                runs["ort", threads, size] = functools.partial(ort_all, oracles[threads], images, size)
        for threads in (0, 1):
            for size in sorted({64, batch}):  # 64: the fixed default before batches were sized
                runs["label", threads, size] = functools.partial(full_run, threads, size)
        best = {}
        for _ in range(repeat):
            for key, work in runs.items():
                _, wall, cpu = best_of(work)
                if key not in best or wall < best[key][0]:
                    best[key] = (wall, cpu)
        t_decode, c_decode = best["decode", 0, 0]
        ort = {key[1:]: value for key, value in best.items() if key[0] == "ort"}
        labels = {key[1:]: value for key, value in best.items() if key[0] == "label"}
        # The reference: onnxruntime alone at its best batch size and session setting.
        t_ort, c_ort = min(ort.values())

        figures = {f"decode alone ({cores} threads)": (t_decode, c_decode)}
        for (threads, size), value in ort.items():
            figures[f"onnxruntime alone, intra-op {threads or 'all'}, batch {size}"] = value
        for (threads, size), value in labels.items():
            figures[f"label, intra-op {threads or 'all'}, batch {size}"] = value
        rows = []
        print(f"\n{'figure':52s} {'img/s':>7s} {'CPU ms/img':>10s}")
        for name, (wall, cpu) in figures.items():
            print(f"{name:52s} {n / wall:7.0f} {1000 * cpu / n:10.3f}")
            rows += [Row("labeling", name, "throughput", n / wall, "img/s", machine=host),
                     Row("labeling", name, "cpu_per_image", 1000 * cpu / n, "ms", machine=host)]

        t_label = labels[0, batch][0]  # what label() does by default
        floor = (c_decode + c_ort) / effective
        print(f"\nCPU floor (decode CPU + ort CPU) / {effective:.1f} cores = {floor:.2f} s; "
              f"floor / max(decode, ort) = {floor / max(t_decode, t_ort):.2f}")
        print(f"label (default settings, batch {batch}): label / max(decode, ort) = "
              f"{t_label / max(t_decode, t_ort):.2f} (goal <= 1.1); label / (decode + ort) = "
              f"{t_label / (t_decode + t_ort):.2f} (1.0 = no overlap); label / CPU floor = "
              f"{t_label / floor:.2f}")
        if batch != 64:
            t_fixed = labels[0, 64][0]
            print(f"label at the fixed batch of 64 it used before batches were sized: label / (decode + ort) = "
                  f"{t_fixed / (t_decode + t_ort):.2f}; sized / fixed = {t_label / t_fixed:.2f}")
        default = f"label, default settings, batch {batch}"
        rows += [Row("labeling", f"{default} vs max(decode, ort)", "wall", t_label, "s",
                     reference=max(t_decode, t_ort), machine=host),
                 Row("labeling", f"{default} vs decode + ort", "wall", t_label, "s",
                     reference=t_decode + t_ort, machine=host),
                 Row("labeling", f"{default} vs CPU floor", "wall", t_label, "s", reference=floor, machine=host)]
        if args.tf_data:
            import tensorflow  # noqa: F401 - import outside the timing

            count, wall, _ = best_of(functools.partial(tf_data_decode, folder, args.size), repeat)
            print(f"tf.data decode (JPEG only, AUTOTUNE): {count / wall:7.0f} img/s")
            rows.append(Row("labeling", "tf.data decode (JPEG only, AUTOTUNE)", "throughput", count / wall,
                            "img/s", machine=host))
        write_rows(args.json, rows)


if __name__ == "__main__":
    main()
