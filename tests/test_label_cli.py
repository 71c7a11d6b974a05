"""`copycat-tf label` as a user runs it: summary, clean errors, resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_runner import run_cli, value_columns
from onnx_factory import make_linear_classifier

from copycat_tf.fakeset import FakeSet, journaled_records, label
from copycat_tf.oracle import OnnxOracle


def test_label_prints_a_summary(query_target, query_folder, bad_query_files, tmp_path):
    folder, keys = query_folder
    bad = bad_query_files(folder)
    out = tmp_path / "fake"
    result = run_cli("label", query_target(), "--queries", folder, "--queries", "noise:uniform:0.5",
                     "--budget", 60, "--out", out, "--labels", "soft", "--seed", 2,
                     "--batch-size", 16, "--shard-size", 32, "--price-per-1k", 2.5)
    assert result.returncode == 0, result.stderr
    assert f"labeled   60 images (complete) in {out}" in result.stdout
    # what it may buy, said before the first query (and so before any progress)
    assert "will buy at most 60 images: 60 attack queries; 0.15 at 2.5 per 1,000 from target" in result.stderr
    assert "queries   60 spent" in result.stdout
    assert f"rejected  {len(bad)} inputs" in result.stdout and "rejected.tsv" in result.stdout
    assert "cost      0.15 at 2.5 per 1,000 queries" in result.stdout
    assert result.stdout.count("  class ") == 5
    fakeset = FakeSet.open(out)
    assert fakeset.count == 60 and fakeset.has_probabilities and fakeset.manifest["config"]["seed"] == 2
    assert fakeset.manifest["source_counts"][0] == len(keys)


def test_dominant_class_warning(query_target, tmp_path):
    # Uniform noise images all look alike to a linear model: one class takes most answers.
    result = run_cli("label", query_target(), "--queries", "noise:uniform", "--budget", 200,
                     "--out", tmp_path / "fake")
    assert result.returncode == 0, result.stderr
    summary = FakeSet.open(tmp_path / "fake").summary()
    assert summary["dominant_share"] > 0.5
    assert f"warning: class {summary['dominant_class']} holds" in result.stdout


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("budget", "budget must be a whole number >= 1; received 0"),
        ("empty", "has no files"),
        ("inside", "is inside the query folder"),
        ("file", "is a file"),
        ("incompatible", "seed 0 vs now 1"),
    ],
)
def test_bad_input_exits_2_with_one_line(query_target, query_folder, tmp_path, case, fragment):
    folder, _ = query_folder
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("x")
    out, queries, extra = tmp_path / "fake", folder, []
    if case == "budget":
        extra = ["--budget", "0"]
    elif case == "empty":
        queries = tmp_path / "empty"
    elif case == "inside":
        out = folder / "n02" / "fake"
    elif case == "file":
        out = tmp_path / "a-file"
    else:
        label(OnnxOracle(query_target()), str(folder), 5, out)
        extra = ["--seed", "1"]
    result = run_cli("label", query_target(), "--queries", queries, "--out", out, *extra)
    result.assert_clean_error(fragment)


@pytest.mark.slow
def test_resume_after_kill_9_equals_an_uninterrupted_run(query_target, query_folder, bad_query_files,
                                                         tmp_path):
    folder, _ = query_folder
    bad_query_files(folder)
    target = query_target((32, 32, 3), 10)
    budget, shard = 6000, 256
    specs = [f"{folder}:0.01", "noise:uniform"]
    whole = label(OnnxOracle(target), specs, budget, tmp_path / "whole", shard_size=shard, batch_size=32)

    out = tmp_path / "killed"
    arguments = ["label", str(target), "--queries", specs[0], "--queries", specs[1],
                 "--budget", str(budget), "--out", str(out), "--shard-size", str(shard),
                 "--batch-size", "32"]
    process = subprocess.Popen([sys.executable, "-m", "copycat_tf.cli.main", *arguments],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill once a shard is finished and the next one has paid queries (logged in queries.log).
    deadline = time.monotonic() + 120
    while _uncommitted(out, shard) <= 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert process.poll() is None, "labeling finished before it could be killed; raise the budget"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = FakeSet.open(out)
    assert 0 < killed_at.count < budget and not killed_at.complete
    paid_twice = _uncommitted(out, 0) - journaled_records(out)  # answers the kill lost

    result = run_cli(*arguments)
    assert result.returncode == 0, result.stderr
    resumed = FakeSet.open(out)
    assert resumed.count == budget and resumed.complete
    mine = _records(resumed)
    reference = _records(whole)
    identities = list(zip(mine["sources"].tolist(), mine["keys"].tolist()))
    assert len(set(identities)) == budget
    for name in ("images", "labels", "sources", "keys"):
        np.testing.assert_array_equal(mine[name], reference[name], err_msg=name)
    assert whole.queries_spent == budget
    assert resumed.queries_spent == budget + paid_twice and 0 <= paid_twice <= shard
    assert (out / "rejected.tsv").read_text() == (tmp_path / "whole" / "rejected.tsv").read_text()
    resumed.verify()


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume(query_target, tmp_path):
    out = tmp_path / "fake"
    # A budget far beyond what a starved test process could watch finish before its signal.
    arguments = ["label", str(query_target((32, 32, 3), 10)), "--queries", "noise:uniform", "--budget", "2000000",
                 "--out", str(out), "--shard-size", "256"]
    # As from a terminal: SIGINT at its default even if this test process ignores it (an
    # ignored signal is inherited, and Python then installs no KeyboardInterrupt handler).
    process = subprocess.Popen([sys.executable, "-m", "copycat_tf.cli.main", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while _uncommitted(out, 256) < 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "copycat-tf: interrupted; rerun the same command to resume"
    assert "Traceback" not in stderr
    assert 256 <= FakeSet.open(out).count < 2000000


def test_cli_choices_are_the_library_constants():
    from copycat_tf.cli.label_cmd import label_command
    from copycat_tf.fakeset import DEFAULT_SHARD_SIZE, LABEL_MODES
    from copycat_tf.queries import RESIZE_POLICIES

    params = {p.name: p for p in label_command.params}
    assert tuple(params["resize"].type.choices) == RESIZE_POLICIES
    assert tuple(params["labels"].type.choices) == LABEL_MODES
    assert params["shard_size"].default == DEFAULT_SHARD_SIZE


def _uncommitted(directory, min_count):
    """Queries paid for records not yet in a finished shard (-1 before ``min_count`` records)."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        logged = (directory / "queries.log").read_text().split("\n")[:-1]
    except (OSError, ValueError):
        return -1
    if manifest["count"] < min_count:
        return -1
    return max(0, int(logged[-1]) - manifest["queries_spent"]) if logged else 0


def _records(fakeset):
    shards = list(fakeset.iter_shards())
    return {name: np.concatenate([s[name] for s in shards]) for name in shards[0]}


def test_label_histogram_names_the_classes_the_model_names_in_aligned_columns(tmp_path):
    path = tmp_path / "named.onnx"
    names = ["T-shirt/top", "cat", "Ankle boot", "frog"]
    make_linear_classifier(path, metadata={"copycat_tf.class_names": json.dumps(names)})
    result = run_cli("label", path, "--queries", "noise:uniform", "--budget", 32, "--out", tmp_path / "fake")
    assert result.returncode == 0, result.stderr
    histogram = [line for line in result.stdout.splitlines() if line.startswith("  class ")]
    assert [line.split(":")[0].split(maxsplit=2)[2] for line in histogram] == names
    # counts end in one column, whatever the names' lengths
    assert len({line.index(" (") for line in histogram}) == 1 and len(set(map(len, histogram))) == 1
    assert value_columns(result.stdout, ("labeled", "queries", "rejected")) == {10}
