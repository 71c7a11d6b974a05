"""Remote-target throughput: images/s through a real inference server vs in-process and vs the server's limit.

One small conv-net target (``small_cnn``, 32x32x3, 10 classes, untrained: throughput does
not depend on the weights) exported to ONNX, served by KServe's ModelServer (Open
Inference Protocol v2, one worker, onnxruntime inside; the test server of
``benchmarks.serving``), and timed three ways at 1, 4 and 16 requests in flight, 64
images per request:

    http    ``HttpOracle.query`` of ``--images`` images (split into requests of 64, sent
            ``concurrency`` at a time): encoding, sending, waiting, decoding, accounting;
    hey     the server's limit: ``hey`` (Go, from Debian) posting the very same request
            body (``HttpOracle.request_body``) as many times, ``concurrency`` at a time over
            keep-alive connections, timed like ``http`` from the first request to the last
            answer (a duration-based tool such as wrk drops the requests still in flight at
            the end, a large share when one request takes a tenth of a second);
    ort     ``OnnxOracle.query`` in-process on the same file, in batches of 64 (no server).

It prints images/s for each and the ratios ``http / hey`` (how much of the server's
capacity the client uses: 1.0 means the client costs nothing) and ``http / ort`` (what
serving the model over HTTP costs against running the file). Client, server and hey share
this machine's cores, so at high concurrency they compete: the figures describe a loaded
2-core box, not a client against a remote server.

The server listens on every interface, so the script re-runs itself inside a new network
namespace that has only loopback (``unshare --net``; needs root) and talks to 127.0.0.1.

Usage:
    python -m benchmarks.perf.remote_http                  # 2,048 images, best of 3 rounds
    python -m benchmarks.perf.remote_http --images 4096 --repeat 5 --batch 32
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.measure import interleaved, machine
from benchmarks.row import Row, add_json_option, write_rows

NAMESPACE_FLAG = "COPYCAT_BENCH_IN_NETNS"
CONCURRENCY = (1, 4, 16)


def in_private_namespace(argv: list[str]) -> None:
    """Re-run this benchmark with ``argv`` inside a loopback-only network namespace (once)."""
    if os.environ.get(NAMESPACE_FLAG):
        return
    if shutil.which("unshare") is None:
        sys.exit(f"{__spec__.name} needs unshare (util-linux) and root to isolate the server")
    os.environ[NAMESPACE_FLAG] = "1"
    os.execvp("unshare", ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                          sys.executable, "-m", __spec__.name, *argv])


def make_target(folder: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from copycat_tf.export import export_onnx, native_contract
    from copycat_tf.models import build

    path = folder / "small_cnn.onnx"
    model = build("small_cnn", (32, 32, 3), 10)
    export_onnx(model, path, native_contract((32, 32, 3), 10))
    return path


def hey_rate(url: str, body_file: Path, requests: int, concurrency: int) -> float:
    """Requests/s that ``hey`` gets from the server: ``requests`` posts of ``body_file``,
    ``concurrency`` at a time, timed until the last answer (2xx only)."""
    run = subprocess.run(["hey", "-n", str(requests), "-c", str(concurrency), "-t", "120", "-m", "POST",
                          "-T", "application/json", "-D", str(body_file), url],
                         capture_output=True, text=True, check=True)
    statuses = re.findall(r"\[(\d{3})\]\s+\d+ responses", run.stdout)
    if statuses != ["200"]:
        raise RuntimeError(f"hey got other answers than 200:\n{run.stdout}")
    return float(re.search(r"Requests/sec:\s*([\d.]+)", run.stdout).group(1))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--target", type=Path, help="an ONNX file instead of the generated small_cnn")
    add_json_option(parser)
    options = parser.parse_args(argv)
    if options.images % options.batch or options.images // options.batch < max(CONCURRENCY):
        parser.error(f"--images must be a multiple of --batch, for at least {max(CONCURRENCY)} requests")
    in_private_namespace(argv)
    if shutil.which("hey") is None:
        sys.exit(f"{__spec__.name} needs hey (apt-get install hey) for the server's limit")

    from benchmarks.serving import KServeServer
    from copycat_tf.oracle import OnnxOracle
    from copycat_tf.oracle import ContractOverrides, HttpOptions, HttpOracle

    folder = Path(tempfile.mkdtemp(prefix="copycat-http-bench-"))
    target = options.target or make_target(folder)
    local = OnnxOracle(target)
    images = np.random.default_rng(0).integers(0, 256, (options.images, *local.contract.image_shape), np.uint8)
    server = KServeServer(folder, {"target": (target.resolve(), "rows")}, isolate=False)
    try:
        url = f"{server.url}/v2/models/target"
        # Metadata gives shapes, not preprocessing: this project's targets take raw pixels.
        wanted = ContractOverrides(preprocessing=local.contract.preprocessing, output_kind=local.contract.output.kind)
        oracles = {c: HttpOracle(url, http=HttpOptions(max_batch=options.batch, concurrency=c), overrides=wanted)
                   for c in CONCURRENCY}
        check = images[: 2 * options.batch]
        assert np.array_equal(oracles[4].query(check).labels, local.query(check).labels), "answers differ"
        body = oracles[1].request_body(images[: options.batch])
        host = machine()
        print(f"{host}; {options.images} images of {local.contract.image_shape}, "
              f"{options.batch} per request ({len(body) / 1e6:.2f} MB JSON body); KServe "
              f"ModelServer, 1 worker; best of {options.repeat}", flush=True)

        def ort():
            for start in range(0, len(images), options.batch):
                local.query(images[start : start + options.batch])

        # One round times every contender once, the load generator included, so a
        # neighbour's burst of load falls on all of them alike; the best round counts.
        body_file = folder / "body.json"
        body_file.write_bytes(body)
        requests = -(-options.images // options.batch)
        runs = {"ort": ort}
        for c, oracle in oracles.items():
            runs[f"http c={c}"] = lambda oracle=oracle: oracle.query(images)
            runs[f"hey c={c}"] = lambda c=c: hey_rate(url + "/infer", body_file, requests, c)
        best = interleaved(runs, options.repeat)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    ort_rate = options.images / best["ort"]
    rows = []
    print(f"\n{'concurrency':>11} {'http img/s':>11} {'hey img/s':>10} {'ort img/s':>10} "
          f"{'http/hey':>9} {'http/ort':>9}")
    for c in CONCURRENCY:
        rate = options.images / best[f"http c={c}"]
        limit = requests * options.batch / best[f"hey c={c}"]
        print(f"{c:>11} {rate:>11,.0f} {limit:>10,.0f} {ort_rate:>10,.0f} "
              f"{rate / limit:>9.2f} {rate / ort_rate:>9.3f}")
        rows += [Row("remote_http", f"http c={c} vs hey (the server's limit)", "throughput", rate, "img/s",
                     reference=limit, machine=host),
                 Row("remote_http", f"http c={c} vs ort in-process", "throughput", rate, "img/s",
                     reference=ort_rate, machine=host)]
    write_rows(options.json, rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
