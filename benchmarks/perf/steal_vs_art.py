"""End to end: ``copycat-tf steal`` vs ART's CopycatCNN doing the same attack.

One ONNX target (the demo's ``small_cnn`` architecture, random weights, 28x28x1, exported by
this project) is stolen with 10,000 ``photos`` queries, the same copycat architecture
(``small_cnn``), epochs (4) and batch size (128), each side in a fresh Python process,
timed from process start to exit (interpreter, imports and TensorFlow start-up included),
interleaved and best of ``--repeat``:

    project    ``copycat-tf steal target.onnx --queries photos --budget 10000 --out DIR``:
               decode the queries overlapped with the oracle, write the durable fake dataset
               (synced shards, manifest), train with a held-out slice and a checkpoint per
               epoch, export the copycat to ONNX and check it against Keras.
    reference  ART 1.20 ``art.attacks.extraction.CopycatCNN``: the same 10,000 query images
               (materialised into an array with the project's ``photos`` source and decoding
               pool, counted in ART's time as that is work an ART user must do too), the
               target wrapped as a ``BlackBoxClassifier`` whose ``predict_fn`` runs
               onnxruntime, queried in batches of 64, a thief ``TensorFlowV2Classifier``
               around a Keras ``small_cnn`` built by ``copycat_tf.models.build`` trained with
               a compiled ``train_step`` (Adam at small_cnn's 2e-3, sparse cross-entropy), and
               the trained Keras model saved once at the end. Nothing is written during the
               attack; there is no validation, no checkpoint and no ONNX export.

Work that differs, stated rather than hidden: ART trains on all 10,000 records, copycat-tf
on 9,000 while evaluating its 1,000 held-out records each epoch (forward passes only); and
copycat-tf exports and checks an ONNX copycat, which ART does not. Goal: project wall time
<= reference wall time.

ART is not a dependency of copycat-tf: ``pip install adversarial-robustness-toolbox``
(tested with 1.20.1). Without it the script says so and exits 0.

Usage:
    python -m benchmarks.perf.steal_vs_art                      # 10,000 queries, best of 2
    python -m benchmarks.perf.steal_vs_art --budget 30000 --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.art_thief import art_thief
from benchmarks.measure import machine, run_python
from benchmarks.row import Row, add_json_option, write_rows

#: How the benchmark re-runs itself for the target and ART's side, each in a fresh process.
ME = ["-m", __spec__.name]
SIZE, CHANNELS, CLASSES = 28, 1, 10
ORACLE_BATCH = 64  # copycat-tf's default images per oracle call


def make_target(path: str) -> None:
    """The demo's target architecture (small_cnn), random weights, exported by the project."""
    from copycat_tf.export import export_onnx, native_contract
    from copycat_tf.models import build

    model = build("small_cnn", (SIZE, SIZE, CHANNELS), CLASSES)
    export_onnx(model, path, native_contract((SIZE, SIZE, CHANNELS), CLASSES))


def art_worker(target: str, budget: int, out: str) -> None:
    """ART's CopycatCNN on the same target, queries, copycat, epochs and batch size."""
    start = time.perf_counter()
    import numpy as np
    import onnxruntime
    import tensorflow  # noqa: F401 - timed with the other imports, as before the split
    from art.attacks.extraction import CopycatCNN
    from art.estimators.classification import BlackBoxClassifier

    from copycat_tf.models import default_training
    from copycat_tf.queries import open_query_source

    imported = time.perf_counter()
    settings = default_training("small_cnn")
    shape = (SIZE, SIZE, CHANNELS)
    queries = open_query_source("photos", shape, seed=0).queries()
    x = np.stack([next(queries).image for _ in range(budget)]).astype(np.float32)
    queries.close()
    materialised = time.perf_counter()

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(target, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def predict_fn(batch):  # the target takes raw [0, 255] float32 pixels (native contract)
        return session.run(None, {name: batch.astype(np.float32)})[0]

    victim = BlackBoxClassifier(predict_fn, shape, CLASSES, clip_values=(0, 255))

    thief = art_thief("small_cnn", shape, CLASSES, seed=0)
    attack = CopycatCNN(victim, batch_size_fit=settings["batch_size"], batch_size_query=ORACLE_BATCH,
                        nb_epochs=settings["epochs"], nb_stolen=budget)
    stolen = attack.extract(x, thieved_classifier=thief)
    extracted = time.perf_counter()
    stolen.model.save(os.path.join(out, "copycat.keras"))
    done = time.perf_counter()
    print(f"imports {imported - start:.1f}, queries into an array {materialised - imported:.1f}, "
          f"extract (label + train) {extracted - materialised:.1f}, save {done - extracted:.1f}")


def project_command(target: str, budget: int, out: str) -> list[str]:
    args = ["-c", "from copycat_tf.cli.main import main; main()", "steal", target,
            "--queries", "photos", "--budget", str(budget), "--out", out]
    help_text = subprocess.run([sys.executable, *args[:3], "--help"], check=False,
                               capture_output=True, text=True).stdout
    if "--strategy" in help_text:
        args += ["--strategy", "paper"]  # the paper's plain attack, what ART implements
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=10_000, help="queries")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best run of each is kept")
    parser.add_argument("--art-worker", nargs=3, metavar=("TARGET", "BUDGET", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--make-target", metavar="PATH", help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.art_worker:
        target, budget, out = args.art_worker
        art_worker(target, int(budget), out)
        return
    if args.make_target:
        make_target(args.make_target)
        return
    if importlib.util.find_spec("art") is None:
        print("ART not installed (pip install adversarial-robustness-toolbox); nothing to compare with")
        return

    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "target.onnx")
        run_python([*ME, "--make-target", target])
        command = project_command(target, args.budget, os.path.join(tmp, "steal"))
        host = machine()
        print(f"{host}; {args.budget} photos queries, small_cnn copycat, 4 epochs, batch 128")
        print("project: copycat-tf " + " ".join(command[2:]).replace(tmp, "TMP"), flush=True)
        best: dict[str, float] = {}
        inner = []
        for round_ in range(args.repeat):
            for name in ("reference ART CopycatCNN", "project copycat-tf steal"):
                out = Path(tmp) / f"run-{round_}-{name.split()[0]}"
                out.mkdir()
                if name.startswith("reference"):
                    wall, stdout = run_python([*ME, "--art-worker", target, str(args.budget), str(out)])
                    inner.append(stdout.strip())
                else:
                    command = project_command(target, args.budget, str(out / "steal"))
                    wall, _ = run_python(command)
                print(f"  round {round_ + 1}/{args.repeat} {name}: {wall:.1f} s", flush=True)
                best[name] = min(best.get(name, wall), wall)
        t_project, t_art = best["project copycat-tf steal"], best["reference ART CopycatCNN"]
        print(f"\n{'figure':32s} {'wall s':>7s}")
        for name, seconds in best.items():
            print(f"{name:32s} {seconds:7.1f}")
        print(f"ART worker phases, s (each round): {' | '.join(inner)}")
        print(f"steal end to end at {args.budget:,} queries: project / reference = "
              f"{t_project / t_art:.2f} (goal <= 1.0)")
        write_rows(args.json, [
            Row("steal_vs_art", "reference ART CopycatCNN", "wall", t_art, "s", machine=host),
            Row("steal_vs_art", f"project copycat-tf steal, {args.budget:,} queries", "wall", t_project, "s",
                reference=t_art, machine=host)])


if __name__ == "__main__":
    main()
