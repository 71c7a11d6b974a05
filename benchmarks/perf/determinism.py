"""Speed cost of TensorFlow op determinism (``--deterministic``) for copycat training.

Labels a fake dataset once (untimed), then trains the same copycat on it with
``train_copycat``, each run in a fresh process, alternating:

    plain          the default: TensorFlow picks its kernels and thread schedule freely.
    deterministic  ``tf.config.experimental.enable_op_determinism()`` first, as the CLI's
                   ``--deterministic`` does (it cannot be switched off again in a process,
                   hence one process per run).

Figure: seconds per epoch, the median of the epochs after the first (the first also traces
the graphs), best of ``--repeat`` rounds; the ratio is deterministic / plain. Also shown:
whether the runs of each mode trained bit-identical copycats (sha256 of the weights), which
is what op determinism is for.

Usage:
    python -m benchmarks.perf.determinism                  # 10,000 records 28x28x1, small_cnn, 4 epochs
    python -m benchmarks.perf.determinism --count 5000 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.inputs import make_conv_target
from benchmarks.measure import machine, run_python
from benchmarks.row import Row, add_json_option, write_rows

MODES = ("plain", "deterministic")


def child(args) -> None:
    """One training run in this process; prints its epoch times and the sha256 of its weights as JSON."""
    import keras
    import tensorflow as tf

    from copycat_tf.fakeset import FakeSet
    from copycat_tf.execution import Execution
    from copycat_tf.training import TrainConfig, train_copycat

    if args.child == "deterministic":
        tf.config.experimental.enable_op_determinism()
    logging.getLogger("copycat_tf").setLevel(logging.WARNING)

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    clock = EpochClock()
    config = TrainConfig(arch=args.arch, epochs=args.epochs)
    result = train_copycat(FakeSet.open(args.fakeset), args.out, config, callbacks=[clock], execution=Execution(overwrite=True))
    # The trained weights, not copycat.onnx's bytes: tf2onnx names a merged constant after
    # whichever twin it meets first, which varies between processes even when the weights don't.
    digest = hashlib.sha256(b"".join(w.tobytes() for w in result.model.get_weights())).hexdigest()
    print(json.dumps({"epoch_seconds": clock.seconds, "sha256": digest}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="records in the fake dataset")
    parser.add_argument("--queries", default="noise:uniform", help="query source spec")
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=4, help="at least 2: the first is left out")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best run of each mode is kept")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--fakeset", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is left out)")

    from copycat_tf.fakeset import label
    from copycat_tf.oracle import OnnxOracle

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        target = tmp / "target.onnx"
        make_conv_target(target, 28, 1)
        print(f"labelling {args.count} {args.queries} queries ...", flush=True)
        label(OnnxOracle(target), [args.queries], args.count, tmp / "fake")
        host = machine()
        print(f"{host}; {args.arch} copycat on {args.count} records 28x28x1, "
              f"{args.epochs} epochs, one process per run", flush=True)

        per_epoch: dict[str, list[float]] = {mode: [] for mode in MODES}
        digests: dict[str, set[str]] = {mode: set() for mode in MODES}
        for round_ in range(args.repeat):
            for mode in MODES:
                wall, stdout = run_python([
                    "-m", __spec__.name, "--child", mode, "--fakeset", str(tmp / "fake"),
                    "--out", str(tmp / f"copycat-{mode}-{round_}"), "--arch", args.arch,
                    "--epochs", str(args.epochs),
                ])
                run = json.loads(stdout.strip().splitlines()[-1])
                seconds = statistics.median(run["epoch_seconds"][1:])
                per_epoch[mode].append(seconds)
                digests[mode].add(run["sha256"])
                print(f"  round {round_ + 1}/{args.repeat} {mode}: {seconds:.2f} s/epoch "
                      f"(process {wall:.1f} s, weights {run['sha256'][:12]})", flush=True)

        best = {mode: min(per_epoch[mode]) for mode in MODES}
        print(f"\n{'mode':15s} {'s/epoch':>8s}  weights of the {args.repeat} runs' copycats")
        for mode in MODES:
            same = "identical" if len(digests[mode]) == 1 else f"{len(digests[mode])} different"
            print(f"{mode:15s} {best[mode]:8.2f}  {same}")
        print(f"time per epoch deterministic / plain = {best['deterministic'] / best['plain']:.2f}")
        write_rows(args.json, [
            Row("determinism", "plain", "epoch_time", best["plain"], "s", machine=host),
            Row("determinism", "deterministic vs plain", "epoch_time", best["deterministic"], "s",
                reference=best["plain"], machine=host)])


if __name__ == "__main__":
    main()
