"""Peak memory of labeling and training at 10,000 and 100,000 queries.

Each figure runs in a fresh Python process that reports its own peak resident set size
(``VmHWM``), so one run's memory never hides another's:

    label              ``label()`` of ``noise:uniform`` queries (28x28x1, a small conv-net
                       target): images are decoded a window ahead, labelled in batches and
                       written shard by shard (1,024 records), so memory should not grow
                       with the number of queries.
    train streamed     ``train_copycat`` (small_cnn, 1 epoch) with ``in_memory_bytes=0``:
                       shards streamed from disk through the bounded shuffle buffer, the path
                       every fake dataset over 1 GiB takes.
    train default      ``train_copycat`` with its default ``in_memory_bytes`` (1 GiB): a fake
                       dataset this small is read into memory once by design, so this one
                       grows with the queries, by the records' size, up to 1 GiB.

The reference is what holding the queries in memory costs: ``count x H x W x C`` bytes as
uint8, 4 x that as the float32 arrays ART's CopycatCNN and a plain ``model.fit`` keep.
Goal: peak at 100k / peak at 10k = 1.0 for labeling and streamed training.

``--vgg16`` measures instead a whole ``copycat-tf steal`` at default settings of a
VGG16-sized target (:mod:`benchmarks.vgg16_target`, built here with random weights) at
240x240x3, ``photos`` queries: the peak RSS of the command's process, for this tree and
for the tree of ``--before COMMIT`` (extracted with ``git archive``), side by side. Goal:
under 3 GB now (a vendor model's 8.8 GB peak killed 8 GB laptops).

Usage:
    python -m benchmarks.perf.memory                           # 10,000 and 100,000 queries
    python -m benchmarks.perf.memory --counts 10000,100000,200000 --size 32 --channels 3
    python -m benchmarks.perf.memory --counts 1000 --size 240 --channels 3     # a vendor-size input
    python -m benchmarks.perf.memory --counts 500 --size 224 --channels 3 --arch resnet50 --no-default
    nice -n 10 python -m benchmarks.perf.memory --vgg16 --budget 200 --before 80e1802   # ~4 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.inputs import make_conv_target
from benchmarks.measure import machine, peak_rss_mib, run_python
from benchmarks.row import Row, add_json_option, write_rows

REPOSITORY = Path(__file__).resolve().parents[2]


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_label(target: str, count: int, out: str) -> dict:
    from copycat_tf.fakeset import label
    from copycat_tf.oracle import OnnxOracle

    oracle = OnnxOracle(target)
    before = current_rss_mib()
    start = time.perf_counter()
    label(oracle, ["noise:uniform"], count, out)
    return {"before": before, "peak": peak_rss_mib(), "seconds": time.perf_counter() - start}


def child_train(fakeset_dir: str, out: str, in_memory_bytes: int, epochs: int, arch: str, batch: int) -> dict:
    import tensorflow  # noqa: F401 - loaded before "before", as a training process always has it

    from copycat_tf.fakeset import FakeSet
    from copycat_tf.training import TrainConfig, train_copycat

    fakeset = FakeSet.open(fakeset_dir)
    before = current_rss_mib()
    start = time.perf_counter()
    config = TrainConfig(arch=arch, epochs=epochs, batch_size=batch or None)
    train_copycat(fakeset, out, config, in_memory_bytes=in_memory_bytes)
    batch = config.resolved(fakeset.count, fakeset.image_shape).batch_size
    return {"before": before, "peak": peak_rss_mib(), "seconds": time.perf_counter() - start, "batch": batch}


def extract_tree(commit: str, into: Path) -> Path:
    """The project's code at ``commit`` in ``into``, importable as ``copycat_tf`` with ``PYTHONPATH``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", commit, "copycat_tf", "cli", "models"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for package in ("cli", "models"):  # what the installed package maps under copycat_tf
        (into / "copycat_tf" / package).symlink_to(f"../{package}")
    return into


def child_steal(arguments: list[str]) -> dict:
    """``copycat-tf steal ARGUMENTS`` in this process; its peak RSS, read here before exit.

    The process reports its own ``VmHWM``: a parent's ``ru_maxrss`` for a child counts the
    parent's own memory at the fork (Linux keeps the larger of the old and new images' high
    water marks across ``exec``), which a parent holding TensorFlow would dominate.
    """
    import copycat_tf
    from copycat_tf.cli.main import main as cli

    start = time.perf_counter()
    try:
        cli(["steal", *arguments])
    except SystemExit as exc:
        if exc.code:
            raise
    return {"peak": peak_rss_mib(), "seconds": time.perf_counter() - start, "code": copycat_tf.__file__}


def steal_peak(tree: Path, target: Path, budget: int, out: Path) -> tuple[float, float]:
    """``copycat-tf steal`` at default settings run from ``tree``: (peak RSS MiB, seconds)."""
    child = ["--child", "steal", str(target), "--queries", "photos", "--budget", str(budget), "--out", str(out)]
    # The tree's copycat_tf first, this benchmark's own package from this repository; run
    # outside both, since ``python -m`` puts the working folder ahead of PYTHONPATH.
    _, stdout = run_python(["-m", __spec__.name, *child], env={"PYTHONPATH": f"{tree}{os.pathsep}{REPOSITORY}"},
                           cwd=out.parent)
    result = json.loads(stdout.strip().splitlines()[-1])
    if not result["code"].startswith(str(tree)):  # the figure must be the tree's code
        raise RuntimeError(f"the steal ran {result['code']}, not the code in {tree}")
    return result["peak"], result["seconds"]


def vgg16_steal(args) -> None:
    from benchmarks.vgg16_target import make_vgg16_target

    host = machine()
    print(f"{host}; steal of a VGG16-sized 240x240x3 target, photos queries, budget {args.budget}, "
          "default settings", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        target = tmp / "vgg16-240.onnx"
        make_vgg16_target(target)
        print(f"  target: {target.stat().st_size / 1e6:.0f} MB", flush=True)
        trees = {"now": REPOSITORY}
        if args.before:
            trees = {f"before ({args.before})": extract_tree(args.before, tmp / "before"), **trees}
        for name, tree in trees.items():
            peak, seconds = steal_peak(tree, target, args.budget, tmp / f"run-{len(rows)}")
            rows.append((name, peak, seconds))
            print(f"  {name:24s} peak {peak:7.0f} MiB, {seconds:5.0f} s", flush=True)
    print(f"\n{'code':24s} {'peak RSS':>10s} {'steal':>8s}")
    for name, peak, seconds in rows:
        print(f"{name:24s} {peak:6.0f} MiB {seconds:6.0f} s")
    if len(rows) == 2:
        print(f"now / before: peak {rows[1][1] / rows[0][1]:.2f}, time {rows[1][2] / rows[0][2]:.2f}")
    goal = 3 * 1000**3 / 2**20  # 3 GB in MiB
    print(f"goal: now under 3 GB ({goal:.0f} MiB): {'met' if rows[-1][1] < goal else 'NOT met'}")
    write_rows(args.json, [Row("memory", f"steal VGG16 240 px, {name}", "peak_rss", peak, "MiB",
                               reference=rows[0][1], machine=host) for name, peak, _ in rows])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["--child", "steal"]:  # the steal's own options follow, unparsed here
        print(json.dumps(child_steal(argv[2:])))
        return
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10000,100000", help="query counts, comma-separated")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (memory does not depend on them)")
    parser.add_argument("--no-default", action="store_true", help="skip the in-memory training figure")
    parser.add_argument("--arch", default="small_cnn", help="the copycat architecture")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="training batch (default: the architecture's, bounded by memory)")
    parser.add_argument("--vgg16", action="store_true",
                        help="measure a whole steal of a VGG16-sized 240 px target instead")
    parser.add_argument("--budget", type=int, default=200, help="--vgg16: queries the steal buys")
    parser.add_argument("--before", metavar="COMMIT",
                        help="--vgg16: also measure the code at COMMIT (the figure to compare with)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.vgg16:
        vgg16_steal(args)
        return
    if args.child:
        kind, *rest = args.child
        if kind == "label":
            result = child_label(rest[0], int(rest[1]), rest[2])
        else:
            result = child_train(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4], int(rest[5]))
        print(json.dumps(result))
        return

    from copycat_tf.training.data import IN_MEMORY_BYTES

    counts = [int(c) for c in args.counts.split(",")]
    record = args.size * args.size * args.channels
    host = machine()
    print(f"{host}; {args.size}x{args.size}x{args.channels} noise:uniform queries, "
          f"{args.arch}, {args.epochs} epoch(s)", flush=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "target.onnx")
        make_conv_target(Path(target), args.size, args.channels)
        figures = [("label", None), ("train streamed", 0)]
        if not args.no_default:
            figures.append(("train default", IN_MEMORY_BYTES))
        for count in counts:
            fakeset = os.path.join(tmp, f"fake-{count}")
            for name, in_memory_bytes in figures:
                if name == "label":
                    child = ["--child", "label", target, str(count), fakeset]
                else:
                    out = os.path.join(tmp, f"copycat-{count}-{in_memory_bytes}")
                    child = ["--child", "train", fakeset, out, str(in_memory_bytes), str(args.epochs), args.arch,
                             str(args.batch_size)]
                _, stdout = run_python(["-m", __spec__.name, *child])
                result = json.loads(stdout.strip().splitlines()[-1])
                rows[name, count] = result
                batch = f", batch {result['batch']}" if "batch" in result else ""
                print(f"  {name:15s} {count:>8,} queries: peak {result['peak']:7.0f} MiB "
                      f"(before the work {result['before']:.0f} MiB, {result['seconds']:.0f} s{batch})", flush=True)

    print(f"\n{'figure':15s} " + " ".join(f"{f'{c:,} q':>12s}" for c in counts) + "   last / first")
    for name, _ in figures:
        peaks = [rows[name, c]["peak"] for c in counts]
        print(f"{name:15s} " + " ".join(f"{p:8.0f} MiB" for p in peaks) + f"   {peaks[-1] / peaks[0]:.2f}")
    for label_, factor in (("queries as uint8", 1), ("as float32 (ART, model.fit)", 4)):
        print(f"{label_:15s} " + " ".join(f"{c * record * factor / 2**20:8.0f} MiB" for c in counts))
    for name in ("label", "train streamed"):
        first, last = rows[name, counts[0]]["peak"], rows[name, counts[-1]]["peak"]
        print(f"{name}: peak RSS at {counts[-1]:,} / at {counts[0]:,} queries = {last / first:.2f} "
              f"({last - first:+.0f} MiB; goal 1.0, i.e. independent of the queries)")
    # Each peak beside the same figure at the first count: the ratio is the growth with the queries.
    write_rows(args.json, [Row("memory", f"{name}, {count:,} queries", "peak_rss", rows[name, count]["peak"], "MiB",
                               reference=rows[name, counts[0]]["peak"], machine=host)
                           for name, _ in figures for count in counts])


if __name__ == "__main__":
    main()
