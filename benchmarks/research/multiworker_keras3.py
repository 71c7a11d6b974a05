"""Does Keras 3 train under ``tf.distribute.MultiWorkerMirroredStrategy`` here? (keras-team/keras#20585)

Starts two TensorFlow workers on 127.0.0.1 (``TF_CONFIG``), inside a network namespace with
only loopback (``unshare``, needs root; the workers' gRPC servers listen on every
interface), and has each fit a two-layer model for one epoch under the strategy, first
with Keras 3, then with Keras 2 (``tf_keras`` with ``TF_USE_LEGACY_KERAS=1``) if it is
importable (``pip install tf_keras`` into a scratch ``--tf-keras-path``). Prints each
worker's outcome: ``fit finished`` or the exception.

Found with TensorFlow 2.21.0, Keras 3.15.1 and tf_keras 2.21.0 (README, Scaling): Keras 3
fails in ``model.fit`` with ``ValueError: Attempt to convert a value (PerReplica:{...}) with
an unsupported type (<class '...PerReplica'>) to a Tensor``; the same script trains with
tf_keras.

Usage:
    python -m benchmarks.research.multiworker_keras3
    python -m benchmarks.research.multiworker_keras3 --tf-keras-path /tmp/tfk   # pip install --target /tmp/tfk tf_keras
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

PORTS = (23456, 23457)


def worker(index: int, legacy: bool) -> None:
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in PORTS]},
                                          "task": {"type": "worker", "index": index}})
    import numpy as np
    import tensorflow as tf

    if legacy:
        import tf_keras as keras
    else:
        import keras
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x = np.random.default_rng(0).random((256, 8), dtype=np.float32)
    y = (x.sum(axis=1) > 4).astype("int64")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    with strategy.scope():
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    name = f"keras {keras.__version__}" if not legacy else f"tf_keras {keras.__version__}"
    try:
        model.fit(data, epochs=1, verbose=0)
        print(f"{name}, tensorflow {tf.__version__}, worker {index}: fit finished", flush=True)
    except Exception as exc:  # noqa: BLE001 - the finding itself: report it, whatever it is
        text = " ".join(str(exc).split())
        print(f"{name}, tensorflow {tf.__version__}, worker {index}: {type(exc).__name__}: "
              f"{text[:60]} ... {text[-160:]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--tf-keras-path", help="folder holding the tf_keras package (added to PYTHONPATH)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--legacy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.legacy)
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root: the workers run in a loopback-only network namespace (unshare)")
    runs = [False] + ([True] if args.tf_keras_path else [])
    for legacy in runs:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if legacy:
            env.update(PYTHONPATH=args.tf_keras_path, TF_USE_LEGACY_KERAS="1")
        me = [sys.executable, "-m", __spec__.name] + (["--legacy"] if legacy else [])
        script = " & ".join(" ".join([*me, "--worker", str(i)]) for i in range(len(PORTS))) + "; wait"
        done = subprocess.run(["unshare", "--net", "sh", "-c", f"ip link set lo up && {script}"],
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        print("\n".join(line for line in done.stdout.splitlines() if "worker" in line) or done.stderr[-2000:])


if __name__ == "__main__":
    main()
