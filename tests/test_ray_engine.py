"""Labeling on Ray (``--engine ray``): the local engine's fake dataset, the budget, crashes.

Every Ray process runs inside a :class:`loopback_ns.LoopbackNamespace` (only loopback can
be reached; Ray binds 127.0.0.1 there) with token authentication, the token in the
environment only, and usage reporting off. The fast cases share one in-process Ray
(``tests/ray_cases.py``); the slow ones start a real two-node cluster (``ray start``
twice, on 127.0.0.1) and run the console script against it while killing an oracle
actor's process or the driver. Each result is compared with the local engine's: the same
shards byte for byte, the same manifest and rejections; only ``queries_spent`` may grow by
what a kill makes the run buy again, within the bounds the engine promises.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from loopback_ns import LoopbackNamespace, NamespaceUnavailable
from PIL import Image

BATCH, SHARD = 16, 64
TARGET_SHAPE = (16, 16, 3)
ACTOR_TITLE = "ray::_OracleActor"


# --- data, references and comparisons -----------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``root`` holding target.onnx, queries/ (300 images and 2 broken files) and pixels.npz."""
    from onnx_factory import make_linear_classifier

    root = tmp_path_factory.mktemp("ray-data")
    make_linear_classifier(root / "target.onnx", image_shape=TARGET_SHAPE, num_classes=5, seed=0)
    rng = np.random.default_rng(0)
    (root / "queries").mkdir()
    for i in range(300):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "queries" / f"{i:03d}.png")
    (root / "queries" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "queries" / "empty.png").write_bytes(b"")
    np.savez(root / "pixels.npz", x=rng.integers(0, 256, (200, 12, 12, 3), dtype=np.uint8))
    return root


def local_run(data: Path, out: Path, specs, budget, *, labels="hard", seed=0, oracle_budget=None) -> Path:
    """The local engine's fake dataset for the same arguments (run from ``data``, as the CLI is)."""
    from copycat_tf.fakeset import label
    from copycat_tf.oracle import OnnxOracle

    here = os.getcwd()
    os.chdir(data)
    try:
        label(OnnxOracle("target.onnx", budget=oracle_budget), specs, budget, out, labels=labels, seed=seed,
              batch_size=BATCH, shard_size=SHARD)
    finally:
        os.chdir(here)
    return out


def assert_same_fakeset(ray_dir: Path, local_dir: Path, *, rebought_at_most: int = 0) -> int:
    """The same records, order, labels, rejections and manifest; returns the queries bought again."""
    ray_manifest = json.loads((ray_dir / "manifest.json").read_text())
    local_manifest = json.loads((local_dir / "manifest.json").read_text())
    ray_spent, local_spent = ray_manifest.pop("queries_spent"), local_manifest.pop("queries_spent")
    assert ray_manifest == local_manifest
    assert local_manifest["count"] > 0
    for shard in local_manifest["shards"]:
        assert (ray_dir / shard["file"]).read_bytes() == (local_dir / shard["file"]).read_bytes(), shard["file"]
    for name in ("rejected.tsv",):
        assert (ray_dir / name).exists() == (local_dir / name).exists()
        if (local_dir / name).exists():
            assert (ray_dir / name).read_bytes() == (local_dir / name).read_bytes()
    assert local_spent <= ray_spent <= local_spent + rebought_at_most, (ray_spent, local_spent)
    return ray_spent - local_spent


# --- the sandbox ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory):
    """The environment of every Ray process: token auth (token in memory only), no usage
    reporting, and a home and temp folder of the test's own."""
    home = tmp_path_factory.mktemp("ray-home")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    yield {**os.environ, "HOME": str(home), "RAY_TMPDIR": temp, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    shutil.rmtree(temp, ignore_errors=True)


def _namespace() -> LoopbackNamespace:
    try:
        return LoopbackNamespace()
    except NamespaceUnavailable as exc:  # a failure, not a skip: these cases are selected by the server marker
        pytest.fail(f"Ray may only run in a loopback-only network namespace here, and none can be made: {exc}")


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "copycat_tf.cli.main", *map(str, args)]


# --- fast cases: one in-process Ray ----------------------------------------------------------------


CASES = {
    # A folder with broken files mixed with noise: rejections, a source running out, hard labels.
    "mixed": {"specs": ["queries", "noise:uniform:0.3"], "budget": 500, "seed": 3},
    # An array, the photo pool (decoded in the workers) and soft labels.
    "soft": {"specs": ["pixels.npz", "photos:0.5"], "budget": 300, "seed": 1, "labels": "soft"},
    # Two actors, eight batches in flight, an oracle budget below the labeling budget.
    "oracle-budget": {"specs": ["queries"], "budget": 280, "oracle_budget": 150, "actors": 2, "window": 8},
    # The oracle actor frozen after the first shard, then killed: its batches are bought again.
    "actor-killed": {"specs": ["noise:uniform"], "budget": 600, "actors": 1, "window": 4, "kill_after": SHARD},
    # A dataset the local engine started, finished by the Ray engine.
    "resumed": {"specs": ["queries", "noise:gaussian:0.5"], "budget": 400, "seed": 2, "local_first": 2 * SHARD},
    # More actors than the CPUs allow.
    "too-many-actors": {"specs": ["noise:uniform"], "budget": 10, "actors": 4},
}


@pytest.fixture(scope="module")
def in_process(data, ray_env, tmp_path_factory):
    """Every case of CASES through one ``ray.init(num_cpus=3)`` in a namespace: ``(root, results)``."""
    root = tmp_path_factory.mktemp("ray-in-process")
    cases = []
    for name, case in CASES.items():
        out = root / name
        if "local_first" in case:
            local_run(data, out, case["specs"], case["local_first"], seed=case.get("seed", 0))
        cases.append({"name": name, "target": "target.onnx", "out": str(out), "batch_size": BATCH,
                      "shard_size": SHARD, **{k: v for k, v in case.items() if k != "local_first"}})
    (root / "cases.json").write_text(json.dumps(cases))
    namespace = _namespace()
    try:
        done = namespace.run([sys.executable, Path(__file__).with_name("ray_cases.py"), root / "cases.json",
                              root / "results.json"], env=ray_env, cwd=data, capture_output=True, text=True,
                             timeout=240)
    finally:
        namespace.close()
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads((root / "results.json").read_text())


def _local_for(data, tmp_path, name):
    case = CASES[name]
    return local_run(data, tmp_path / name, case["specs"], case["budget"], labels=case.get("labels", "hard"),
                     seed=case.get("seed", 0), oracle_budget=case.get("oracle_budget"))


@pytest.mark.server
@pytest.mark.parametrize("name", ["mixed", "soft", "resumed"])
def test_the_ray_engine_writes_the_local_engines_fake_dataset(in_process, data, tmp_path, name):
    root, results = in_process
    assert results[name]["count"] == CASES[name]["budget"]
    assert_same_fakeset(root / name, _local_for(data, tmp_path, name))


@pytest.mark.server
def test_the_oracle_budget_holds_across_actors(in_process, data, tmp_path):
    root, results = in_process
    result = results["oracle-budget"]
    assert result["count"] == result["oracle_spent"] == 150
    assert json.loads((root / "oracle-budget" / "manifest.json").read_text())["queries_spent"] == 150
    assert_same_fakeset(root / "oracle-budget", _local_for(data, tmp_path, "oracle-budget"))


@pytest.mark.server
def test_a_killed_actor_is_replaced_and_its_batches_bought_again(in_process, data, tmp_path):
    root, results = in_process
    result = results["actor-killed"]
    assert result["killed"] is not None and result["killed"] not in result["actors_after"]
    assert len(result["actors_after"]) == 1  # Ray restarted it
    window = CASES["actor-killed"]["window"]
    rebought = assert_same_fakeset(root / "actor-killed", _local_for(data, tmp_path, "actor-killed"),
                                   rebought_at_most=window * BATCH)
    assert rebought >= BATCH  # the frozen actor held at least one batch when it died
    assert result["oracle_spent"] == result["count"] + rebought


@pytest.mark.server
def test_more_actors_than_cpus_is_one_clear_error(in_process):
    _, results = in_process
    error = results["too-many-actors"]["error"]
    assert "3 CPU(s)" in error and "need 4" in error and "fewer actors" in error


def test_without_ray_the_engine_says_how_to_install_it(data, tmp_path):
    out = tmp_path / "fake"
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['ray'] = None; from copycat_tf.cli.main import main; main()",
         "label", data / "target.onnx", "--queries", "noise:uniform", "--budget", "10", "--out", out, "--engine", "ray"],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        'copycat-tf: error: the ray engine needs Ray, which is not installed; pip install "copycat-tf[ray]"']
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("option", [("--ray-address", "auto"), ("--ray-actors", "2"), ("--ray-threads", "2")])
def test_ray_options_without_the_ray_engine_are_a_usage_error(data, tmp_path, option):
    result = run_cli("label", data / "target.onnx", "--queries", "noise:uniform", "--out", tmp_path / "fake", *option)
    result.assert_clean_error(f"{option[0]} needs --engine ray")
    assert not (tmp_path / "fake").exists()


def test_gpu_targets_get_one_actor_per_gpu_and_cpu_targets_none():
    from copycat_tf.errors import CopycatError
    from copycat_tf.fakeset.ray_actors import actor_placement

    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert actor_placement(cuda, {"CPU": 16.0, "GPU": 2.0}, None, 4) == (2, 1)
    assert actor_placement(cuda, {"CPU": 16.0, "GPU": 2.0}, 1, 1) == (1, 1)
    assert actor_placement(["CPUExecutionProvider"], {"CPU": 16.0, "GPU": 2.0}, None, 4) == (4, 0)
    for provider, resources, count, threads, fragment in [
        (cuda, {"CPU": 16.0}, None, 1, "has no GPU"),
        (cuda, {"CPU": 16.0, "GPU": 2.0}, 3, 1, "has 2 GPU(s); 3 oracle actor(s)"),
        (cuda, {"CPU": 2.0, "GPU": 4.0}, None, 1, "has 2 CPU(s); 4 oracle actor(s)"),
        (["CPUExecutionProvider"], {"CPU": 4.0}, 3, 2, "need 6"),
    ]:
        with pytest.raises(CopycatError, match=re.escape(fragment)):
            actor_placement(provider, resources, count, threads)


# --- slow cases: a two-node cluster on loopback -----------------------------------------------------


@pytest.fixture(scope="module")
def cluster(ray_env):
    """A head node and a second node, 2 CPUs each, on 127.0.0.1 in a namespace: ``(namespace, address)``."""
    namespace = _namespace()
    ray = Path(sys.executable).with_name("ray")
    common = ["--num-cpus", "2", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        for args in (["--head", "--port", "6379", "--include-dashboard=false"], ["--address", "127.0.0.1:6379"]):
            started = namespace.run([ray, "start", *args, *common], env=ray_env, capture_output=True, text=True,
                                    timeout=120)
            assert started.returncode == 0, started.stderr[-2000:]
        yield namespace, "127.0.0.1:6379"
    finally:
        namespace.close()  # ends every process of both nodes and of the drivers


CLUSTER_SPECS = ["queries", "noise:uniform:0.3"]
CLUSTER_BUDGET = 2000
ACTORS = 4  # the default: one per CPU of the cluster
WINDOW = 2 * ACTORS  # the default: two batches in flight per actor


def _start_label(namespace, address, data, out, env, *more):
    return namespace.popen(
        _cli("label", "target.onnx", *[a for s in CLUSTER_SPECS for a in ("--queries", s)], "--budget", CLUSTER_BUDGET,
             "--batch-size", BATCH, "--shard-size", SHARD, "--out", out, "--engine", "ray", "--ray-address", address,
             *more),
        cwd=data, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_records(out: Path, count: int, process, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads((out / "manifest.json").read_text())["count"] >= count:
                return
        except (OSError, ValueError):
            pass
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError(f"{out} never held {count} records")


def _label_past_first_shard(cluster, data, env, out: Path):
    """Start `label --engine ray` on the cluster; return ``(namespace, process)`` once a shard is in."""
    namespace, address = cluster
    process = _start_label(namespace, address, data, out, env)
    _wait_for_records(out, SHARD, process)
    return namespace, process


@pytest.mark.slow
@pytest.mark.server
def test_cluster_run_survives_a_killed_worker_and_equals_the_local_engine(cluster, data, ray_env, tmp_path):
    out = tmp_path / "fake"
    namespace, process = _label_past_first_shard(cluster, data, ray_env, out)
    actors = namespace.processes(ACTOR_TITLE)
    assert len(actors) == ACTORS, actors  # one per CPU of the two nodes
    os.kill(actors[0], signal.SIGSTOP)  # batches sent to it from now on cannot be answered...
    time.sleep(1.0)
    os.kill(actors[0], signal.SIGKILL)  # ...and are lost with it
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]
    assert f"{ACTORS} oracle actor(s) of 1 thread(s)" in stderr and "cluster's 4 CPU(s)" in stderr
    assert "died with" in stderr and "buying them again" in stderr
    assert f"labeled   {CLUSTER_BUDGET:,} images (complete)" in stdout
    rebought = assert_same_fakeset(out, local_run(data, tmp_path / "local", CLUSTER_SPECS, CLUSTER_BUDGET),
                                   rebought_at_most=WINDOW * BATCH)
    assert rebought >= BATCH


@pytest.mark.slow
@pytest.mark.server
def test_cluster_driver_killed_then_rerun_resumes_and_equals_the_local_engine(cluster, data, ray_env, tmp_path):
    out = tmp_path / "fake"
    namespace, process = _label_past_first_shard(cluster, data, ray_env, out)
    os.kill(namespace.inner_pid(process), signal.SIGKILL)
    process.communicate(timeout=60)
    killed_at = json.loads((out / "manifest.json").read_text())["count"]
    assert 0 < killed_at < CLUSTER_BUDGET
    # The rerun picks its own actors: fewer, with more threads each.
    rerun = _start_label(namespace, cluster[1], data, out, ray_env, "--ray-actors", 2, "--ray-threads", 2)
    stdout, stderr = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, stderr[-3000:]
    assert "2 oracle actor(s) of 2 thread(s)" in stderr
    assert f"labeled   {CLUSTER_BUDGET:,} images (complete)" in stdout
    assert_same_fakeset(out, local_run(data, tmp_path / "local", CLUSTER_SPECS, CLUSTER_BUDGET),
                        rebought_at_most=SHARD + WINDOW * BATCH)
