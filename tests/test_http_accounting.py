"""Exact accounting against a real KServe server: every image the server ran is in what the
run says it spent, probes included; a rerun of a finished run sends nothing; an audit of a
URL target runs end to end.

The server counts what it ran (not the client), behind a proxy that refuses every fifth
inference request with 503.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cli_runner import run_cli
from onnx_factory import make_linear_classifier

from benchmarks.serving import FaultProxy, KServeServer
from copycat_tf.fakeset import FakeSet

pytestmark = [pytest.mark.server, pytest.mark.slow]

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("targets") / "probs.onnx"
    make_linear_classifier(path, image_shape=(8, 8, 3), num_classes=4)
    running = KServeServer(tmp_path_factory.mktemp("kserve"), {"probs": (path, "rows")}, ["a", "b", "c", "d"])
    yield running
    running.stop()


@pytest.fixture
def proxy(server, tmp_path):
    fresh = FaultProxy(server, tmp_path / "proxy")
    fresh.faults(every="503", period=5)  # every fifth inference request: not run, not charged
    yield fresh
    fresh.stop()


def test_label_killed_then_rerun_twice_bills_exactly_the_budget_probes_included(server, proxy, tmp_path):
    budget, out = 4000, tmp_path / "fake"
    start = server.images()
    command = [sys.executable, "-m", "copycat_tf.cli.main", "label", f"{proxy.url}/v2/models/probs",
               "--queries", "noise:uniform", "--budget", str(budget), "--shard-size", "256", "--out", str(out)]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while server.images() - start < 1000 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = server.images() - start
    assert 1000 <= killed_at < budget, process.stdout.read().decode()

    finished = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr
    answered = server.images() - start
    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr
    assert server.images() - start == answered, "a rerun of a finished run sent queries"

    fakeset = FakeSet.open(out)
    manifest = fakeset.manifest
    print(f"killed after {killed_at} images; server answered {answered} in all; "
          f"{fakeset.count} records, {manifest.get('probe_queries', 0)} probe images, "
          f"queries_spent {fakeset.queries_spent}")
    # Probes count against the budget, once: the rerun reused the stored contract.
    assert manifest["probe_queries"] == 2
    assert answered == fakeset.queries_spent == budget
    # What the kill cut off (an unfinished shard, a batch in flight) was paid for and is not
    # bought again: the records are the budget less the probes and that loss.
    assert budget - 2 - 256 - 64 <= fakeset.count <= budget - 2
    assert proxy.stats()["applied"].count("503") > 0


def test_audit_of_a_url_target_writes_its_report_and_says_what_the_server_ran(server, proxy, tmp_path):
    start = server.images()
    out = tmp_path / "audit"
    result = run_cli("audit", f"{proxy.url}/v2/models/probs", "--mean", "0", "--std", "255",
                     "--queries", "noise:uniform", "--budgets", "100,200", "--defences", "none,top1",
                     "--no-detection", "--epochs", "1", "--eval-queries", "60", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "will buy at most 260 images" in result.stderr
    report = json.loads((out / "audit.json").read_text())
    ran = server.images() - start
    assert report["total_queries_spent"] == ran == report["queries_spent"] + report["eval_queries_spent"]
    assert report["queries_spent"] <= 200 and report["eval_queries_spent"] <= 60
    assert report["model"]["producer"] is None or "None" not in report["model"]["producer"]
    assert (out / "audit.html").is_file() and len(report["results"]) == 4
    # A rerun of the finished audit buys nothing and trains nothing.
    rerun = run_cli("audit", f"{proxy.url}/v2/models/probs", "--mean", "0", "--std", "255",
                    "--queries", "noise:uniform", "--budgets", "100,200", "--defences", "none,top1",
                    "--no-detection", "--epochs", "1", "--eval-queries", "60", "--out", out)
    assert rerun.returncode == 0, rerun.stderr
    assert server.images() - start == ran
