"""Scaling labeling: the local engine vs Ray on the same cores, per-stage costs, a 3M-query plan.

Three parts (``--parts``, all by default):

    engines  ``label()`` of the same JPEG folder (500x375 -> the 64x64 conv net of
             ``benchmarks.perf.labeling``) with the local engine, Ray on one node
             (``ray.init`` with every core) and Ray on two nodes (``ray start`` twice on
             127.0.0.1, half the cores each), best of ``--repeat``, Ray already started
             (its start-up is printed apart); then a few images through a VGG16-size 224 px target, local vs Ray
             on one node. The Ray runs happen in a sandbox with only loopback
             (``unshare``; needs root), token auth on, usage reporting off.
    stages   per core, for a VGG16-class 224 px target: decoding (JPEG 500x375 -> 224x224x3,
             one thread) and the oracle (VGG16 with random weights, onnxruntime with one
             intra-op thread, batch 8), images/s.
    plan     from those per-core figures: what 3,000,000 queries cost in core-hours, the
             nodes needed to finish in 1, 8 and 24 hours and what they cost, for CPU nodes
             and for GPU nodes whose oracle rate is *estimated* (no GPU here: spec-sheet
             FP16 tensor TFLOPS x an assumed utilisation / VGG16's FLOPs per image). Prices
             are assumptions (``PRICES``: AWS us-east-1 on-demand Linux list prices as the
             author knew them in 2024-25, not fetched); pass your own with ``--price``.

The VGG16 target is built here with ``onnx.helper`` (the 13 3x3 convolutions, 5 max-pools
and 3 dense layers of Simonyan & Zisserman, 138M random weights; NHWC float input in
[0, 1]): converting ``keras.applications.VGG16(weights=None)`` with
``tf2onnx.convert.from_function`` held 21.6 GB RSS for 6 minutes and was killed on this
23 GB machine, so the benchmark does not ask it of anyone.

Usage:
    python -m benchmarks.perf.scale                          # everything (needs root for Ray's sandbox)
    python -m benchmarks.perf.scale --parts stages,plan      # no Ray
    python -m benchmarks.perf.scale --parts plan --decode-per-core 160 --oracle-per-core 1.6
    python -m benchmarks.perf.scale --price c7i.8xlarge=1.50 --budget 3000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.inputs import make_conv_target, make_jpegs
from benchmarks.measure import effective_cores, machine
from benchmarks.row import Row, add_json_option, write_rows

VGG16_CONVS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
#: Multiply-accumulates of one 224x224 VGG16 image (convolutions + dense layers), x2 = FLOPs.
VGG16_GMACS = 15.47

#: Node types for the plan: vCPUs, GPUs, the GPUs' dense FP16 tensor TFLOPS (spec sheets) and
#: an assumed on-demand price in USD per hour (AWS us-east-1 Linux list prices as known in
#: 2024-25; not fetched, check them). ``None`` TFLOPS: a CPU node.
PRICES = {
    "c7i.8xlarge": (32, 0, None, 1.428),
    "g4dn.xlarge": (4, 1, 65.0, 0.526),       # 1x T4
    "g4dn.4xlarge": (16, 1, 65.0, 1.204),     # 1x T4, enough cores to decode for it
    "g6.xlarge": (4, 1, 121.0, 0.805),        # 1x L4
    "p4d.24xlarge": (96, 8, 312.0, 32.77),    # 8x A100 40 GB
}
#: Share of the GPUs' peak a VGG16 oracle is assumed to reach (TensorRT-class FP16 engine, large
#: batches); an assumption, not a measurement.
GPU_UTILISATION = 0.3
#: Share of a node's cores the plan counts on (Ray's scheduling, the driver, the OS).
CPU_EFFICIENCY = 0.85
#: vCPUs of a GPU node left to the OS, the raylet and the actor feeding the GPU.
GPU_NODE_RESERVED_CPUS = 2


# --- a VGG16-size target --------------------------------------------------------------------------------


def make_vgg16_target(path: Path, size: int = 224, num_classes: int = 1000, seed: int = 0) -> None:
    """VGG16 (configuration D) with random He-normal weights, NHWC float [0, 1] in, softmax out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Transpose", ["image"], ["x0"], perm=[0, 3, 1, 2])]
    weights = []
    current, channels, spatial = "x0", 3, size

    def add(name, array):
        weights.append(numpy_helper.from_array(array.astype(np.float32), name))

    for index, layer in enumerate(VGG16_CONVS):
        out = f"x{index + 1}"
        if layer == "M":
            nodes.append(helper.make_node("MaxPool", [current], [out], kernel_shape=[2, 2], strides=[2, 2]))
            spatial //= 2
        else:
            add(f"w{index}", rng.normal(0, math.sqrt(2 / (9 * channels)), (layer, channels, 3, 3)))
            add(f"b{index}", np.zeros(layer))
            nodes += [helper.make_node("Conv", [current, f"w{index}", f"b{index}"], [f"c{index}"], pads=[1, 1, 1, 1]),
                      helper.make_node("Relu", [f"c{index}"], [out])]
            channels = layer
        current = out
    nodes.append(helper.make_node("Flatten", [current], ["flat"]))
    current, width = "flat", channels * spatial * spatial
    for index, units in enumerate([4096, 4096, num_classes]):
        add(f"fw{index}", rng.normal(0, math.sqrt(2 / width), (width, units)))
        add(f"fb{index}", np.zeros(units))
        nodes.append(helper.make_node("Gemm", [current, f"fw{index}", f"fb{index}"], [f"d{index}"]))
        if index < 2:
            nodes.append(helper.make_node("Relu", [f"d{index}"], [f"r{index}"]))
            current = f"r{index}"
        width = units
    nodes.append(helper.make_node("Softmax", ["d2"], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes, "vgg16",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", num_classes])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


def oracle(target: Path, threads: int):
    """The target as the project queries it, with ``threads`` intra-op threads (0: all cores)."""
    import onnxruntime

    from copycat_tf.oracle import OnnxOracle

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return OnnxOracle(target, session_options=options)


# --- stages ----------------------------------------------------------------------------------------------


def stages(work: Path, repeat: int, images: int) -> dict:
    """Decode images/s on one thread (500x375 JPEG -> 224x224x3) and VGG16 images/s, 1 thread and all."""
    from copycat_tf.queries import open_query_source

    source = open_query_source(str(work / "jpegs"), (224, 224, 3), seed=0)
    best = {}
    for _ in range(repeat):
        start = time.perf_counter()
        decoded = [q.image for q in source.queries(workers=1, window=8) if q.image is not None]
        best["decode"] = max(best.get("decode", 0), len(decoded) / (time.perf_counter() - start))
    batch = np.stack(decoded[:8])
    for threads in (1, 0):
        model = oracle(work / "vgg16.onnx", threads)
        model.query(batch)  # warm-up: first-run allocations
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(max(1, images // len(batch))):
                model.query(batch)
            rate = max(1, images // len(batch)) * len(batch) / (time.perf_counter() - start)
            best[f"oracle-{threads}"] = max(best.get(f"oracle-{threads}", 0), rate)
    return {"decode_per_core": best["decode"], "oracle_per_core": best["oracle-1"],
            "oracle_all_cores": best["oracle-0"]}


# --- engines (inside the sandbox) ------------------------------------------------------------------------


def sandboxed(args, work: Path) -> dict:
    """Run :func:`engines` in fresh network + PID namespaces with only loopback; its results."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise SystemExit("the engines part runs Ray in a loopback-only namespace, which needs root and "
                         "unshare; run as root or pass --parts stages,plan")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "HOME": temp, "RAY_TMPDIR": temp, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    out = work / "engines.json"
    try:
        # The Python process is the namespace's first: when it ends, every Ray process ends.
        subprocess.run(["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c",
                        'ip link set lo up && exec "$@"', "sh", sys.executable, "-m", __spec__.name,
                        "--inside", str(out), "--work", str(work), "--repeat", str(args.repeat),
                        "--vgg-images", str(args.vgg_images)], env=env, check=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return json.loads(out.read_text())


def engines(work: Path, repeat: int, vgg_images: int, out: Path) -> None:
    """Rounds of: local; Ray on one node (started in this process); Ray on two nodes (``ray start``
    twice). Taking turns spreads the neighbours' load over all three; the best round counts."""
    import ray

    from copycat_tf.execution import Execution
    from copycat_tf.fakeset import label
    from copycat_tf.fakeset.ray_engine import RayEngine

    cores = len(os.sched_getaffinity(0))
    folder, cnn, vgg = work / "jpegs", work / "cnn.onnx", work / "vgg16.onnx"
    count = sum(1 for _ in folder.iterdir())
    results: dict = {"cores": cores, "images": count, "effective_cores": [], "startup_s": {}}
    ray_cli = [str(Path(sys.executable).with_name("ray"))]
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"]

    def run(name, engine, model, n, batch):
        # A warm-up batch first: a new target's actors (its sessions) start outside the timing.
        label(oracle(model, 1), str(folder), batch, work / "fake", batch_size=batch, execution=Execution(overwrite=True, engine=engine))
        start = time.perf_counter()
        label(oracle(model, 0 if engine == "local" else 1), str(folder), n, work / "fake", batch_size=batch, execution=Execution(overwrite=True, engine=engine))
        rate = n / (time.perf_counter() - start)
        print(f"  {name}: {rate:.2f} img/s", flush=True)
        results[name] = max(results.get(name, 0), rate)

    def measure(suffix, engine):
        run(suffix, engine, cnn, count, 64)
        if vgg_images and suffix != "ray-2-nodes":  # the same cores as one node: not repeated
            # Batches of 8: several batches, so every actor (one per core) gets work.
            run(f"vgg-{suffix}", engine, vgg, vgg_images, 8)

    for _ in range(repeat):
        results["effective_cores"].append(effective_cores(cores))
        measure("local", "local")
        for name in ("ray-1-node", "ray-2-nodes"):
            start = time.perf_counter()
            if name == "ray-1-node":
                ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
                address = None
            else:
                head = max(1, cores // 2)
                subprocess.run([*ray_cli, "start", "--head", "--port", "6379", "--num-cpus", str(head),
                                "--include-dashboard=false", *common], check=True, capture_output=True)
                subprocess.run([*ray_cli, "start", "--address", "127.0.0.1:6379", "--num-cpus",
                                str(max(1, cores - head)), *common], check=True, capture_output=True)
                address = "127.0.0.1:6379"
            with RayEngine(address) as engine:
                # Start-up (Ray, the actors, the sources reopened on the workers) is not in the figures.
                label(oracle(cnn, 1), str(folder), 1, work / "fake", execution=Execution(overwrite=True, engine=engine))
                results["startup_s"][name] = time.perf_counter() - start
                measure(name, engine)
            if ray.is_initialized():
                ray.shutdown()
            if address:
                # Inside this PID namespace `ray stop` sees only the namespace's own processes.
                subprocess.run([*ray_cli, "stop", "--force"], check=True, capture_output=True)
    out.write_text(json.dumps(results))


# --- the plan ----------------------------------------------------------------------------------------------


def plan(decode: float, oracle_rate: float, budget: int, prices: dict) -> None:
    """Core-hours, nodes for 1, 8 and 24 hours and their cost, per node type."""
    per_query = 1 / decode + 1 / oracle_rate  # core-seconds: decode, then the oracle, on CPUs
    print(f"\nplan for {budget:,} queries, VGG16-class target at 224 px")
    print(f"  CPU cost per query: {1000 / decode:.1f} ms decode + {1000 / oracle_rate:.0f} ms oracle = "
          f"{1000 * per_query:.0f} core-ms; {budget * per_query / 3600:,.0f} core-hours in all")
    print(f"  {'node':14s} {'vCPU':>5s} {'GPU':>4s} {'img/s per node':>15s} {'$/h':>7s}"
          f" {'nodes 1 h':>10s} {'nodes 8 h':>10s} {'nodes 24 h':>11s} {'node-hours x $/h':>19s}")
    for name, (vcpus, gpus, tflops, price) in prices.items():
        if gpus:
            # The GPUs answer; the node's spare cores decode; the slower of the two sets the pace.
            gpu_rate = gpus * tflops * 1e12 * GPU_UTILISATION / (2 * VGG16_GMACS * 1e9)
            rate = min(gpu_rate, (vcpus - GPU_NODE_RESERVED_CPUS) * decode * CPU_EFFICIENCY)
        else:
            rate = vcpus * CPU_EFFICIENCY / per_query
        nodes = [math.ceil(budget / (rate * 3600 * hours)) for hours in (1, 8, 24)]
        cost = budget / rate / 3600 * price
        print(f"  {name:14s} {vcpus:5d} {gpus:4d} {rate:15,.0f} {price:7.2f}"
              f" {nodes[0]:10,d} {nodes[1]:10,d} {nodes[2]:11,d} {cost:19,.2f}")
    print(f"  assumptions: {CPU_EFFICIENCY:.0%} of a node's cores useful; GPU oracle = spec FP16 TFLOPS x "
          f"{GPU_UTILISATION:.0%} / {2 * VGG16_GMACS:.1f} GFLOPs per image (estimated, not measured); "
          f"{GPU_NODE_RESERVED_CPUS} vCPUs of a GPU node not decoding; prices are assumptions (see PRICES); "
          "cost = node-hours of work x price (whole nodes for the whole window cost up to one node-window more)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="engines,stages,plan")
    parser.add_argument("--count", type=int, default=2000, help="JPEGs for the engines part")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure; the best is kept")
    parser.add_argument("--vgg-images", type=int, default=32, help="images through VGG16 per engine (0: skip)")
    parser.add_argument("--stage-images", type=int, default=24, help="images through VGG16 per stage figure")
    parser.add_argument("--budget", type=int, default=3_000_000)
    parser.add_argument("--decode-per-core", type=float, help="skip measuring: images/s per core")
    parser.add_argument("--oracle-per-core", type=float, help="skip measuring: images/s per core")
    parser.add_argument("--price", action="append", default=[], metavar="NODE=USD_PER_HOUR")
    parser.add_argument("--work", type=Path, help="folder for JPEGs and targets (default: a temporary one)")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.inside:
        engines(args.work, args.repeat, args.vgg_images, args.inside)
        return
    parts = set(args.parts.split(","))
    prices = dict(PRICES)
    for entry in args.price:
        name, _, value = entry.partition("=")
        if name not in prices:
            raise SystemExit(f"--price: unknown node {name!r}; known: {', '.join(prices)}")
        prices[name] = (*prices[name][:3], float(value))
    keep = args.work is not None
    work = args.work or Path(tempfile.mkdtemp(prefix="scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        host = machine()
        print(host, flush=True)
        rows = []
        measuring = parts & {"engines", "stages"}
        if measuring and not (work / "jpegs").exists():
            print(f"generating {args.count} JPEGs of 500x375 ...", flush=True)
            make_jpegs(work / "jpegs", args.count)
        make_conv_target(work / "cnn.onnx", 64)
        vgg_needed = "stages" in parts or ("engines" in parts and args.vgg_images)
        if vgg_needed and not (work / "vgg16.onnx").exists():
            print("building the VGG16 target (138M random weights) ...", flush=True)
            make_vgg16_target(work / "vgg16.onnx")
        figures = {}
        if "engines" in parts:
            found = sandboxed(args, work)
            print(f"\nlabeling {found['images']:,} JPEGs (500x375 -> 64x64x3 conv net) on {found['cores']} cores:")
            for name in ("local", "ray-1-node", "ray-2-nodes"):
                print(f"  {name:12s} {found[name]:7.0f} img/s   ({found[name] / found['local']:.2f} x local)")
                rows.append(Row("scale", f"label 64x64 conv net, {name}", "throughput", found[name], "img/s",
                                reference=None if name == "local" else found["local"], machine=host))
            startup = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in found["startup_s"].items())
            print(f"  Ray start-up (nodes, actors, sources on the workers), not in the figures: {startup}")
            print(f"  cores free for GIL-free work at each round's start: "
                  f"{', '.join(f'{c:.1f}' for c in found['effective_cores'])}")
            if "vgg-local" in found:
                print(f"VGG16 224 px, {args.vgg_images} images: local {found['vgg-local']:.2f} img/s, "
                      f"ray on one node {found['vgg-ray-1-node']:.2f} img/s "
                      f"({found['vgg-ray-1-node'] / found['vgg-local']:.2f} x local)")
                rows += [Row("scale", "label VGG16 224 px, local", "throughput", found["vgg-local"], "img/s",
                             machine=host),
                         Row("scale", "label VGG16 224 px, ray-1-node", "throughput", found["vgg-ray-1-node"],
                             "img/s", reference=found["vgg-local"], machine=host)]
        if "stages" in parts:
            figures = stages(work, args.repeat, args.stage_images)
            print(f"\nper core: decode {figures['decode_per_core']:.0f} img/s (500x375 JPEG -> 224x224x3); "
                  f"VGG16 oracle {figures['oracle_per_core']:.2f} img/s on 1 thread, "
                  f"{figures['oracle_all_cores']:.2f} img/s on all cores")
            rows += [Row("scale", f"stage {name}", "throughput", figures[name], "img/s", machine=host)
                     for name in ("decode_per_core", "oracle_per_core", "oracle_all_cores")]
        if "plan" in parts:
            decode = args.decode_per_core or figures.get("decode_per_core")
            oracle_rate = args.oracle_per_core or figures.get("oracle_per_core")
            if decode is None or oracle_rate is None:
                raise SystemExit("the plan needs the stages part, or --decode-per-core and --oracle-per-core")
            plan(decode, oracle_rate, args.budget, prices)
        write_rows(args.json, rows)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
