"""Fault injection: `label`, `train` and `steal` killed with SIGKILL, then resumed.

Each test runs the real console script as a subprocess, kills it (``kill -9``) at a chain of
moments, reruns the same command each time, and finally lets it finish. A kill point is a
condition polled on the output folder (a shard committed, queries paid but not yet
committed, a temporary file being written, an epoch saved, the export or the report under
way, or just a random delay after start), plus a random delay, so kills land mid-batch,
mid-shard-write, mid-epoch and mid-export. After every kill the folder must still be
valid; after the final run the outputs must equal an uninterrupted run:

- ``label``: the same shard files byte for byte (and the same records: images, labels,
  sources, keys), manifest counts, histogram and ``rejected.tsv``; queries charged = budget + exactly the queries
  paid for each kill's unfinished shard (``queries.log`` minus the manifest at kill time,
  at most one shard per kill: the crash-accounting contract of ``copycat_tf.fakeset``);
- ``train``: training finishes, ``training.json`` holds every epoch exactly once with the
  uninterrupted run's learning-rate schedule, the copycat exports and loads; weights are
  not compared, as resumed TensorFlow training is not bit-reproducible;
- ``steal``: all of that, and the report.

No ``*.tmp`` or partial files may be left behind. The slow marker holds the long chains
(at least 10 kill points per command); the default run has a few. ``COPYCAT_FAULT_SEED``
changes the random delays (the seed is printed on failure).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from onnx_factory import make_linear_classifier

from copycat_tf.fakeset import FakeSet, journaled_records, label
from copycat_tf.oracle import OnnxOracle

SEED = int(os.environ.get("COPYCAT_FAULT_SEED", "7"))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
LEFTOVER_PATTERNS = ("*.tmp", "*.partial.keras")


# ------------------------------------------------------------------------------ harness


@dataclass(frozen=True)
class KillPoint:
    """When to kill: ``when(out) -> condition`` is called at process start (so it can note
    where things stand) and returns a callable polled every millisecond; once it is true,
    the process gets SIGKILL after a random delay of up to ``jitter`` seconds."""

    name: str
    when: Callable[[Path], Callable[[], bool]]
    jitter: float = 0.0


def after_seconds(low: float, high: float, rng: random.Random):
    def when(out):
        moment = time.monotonic() + rng.uniform(low, high)
        return lambda: time.monotonic() >= moment

    return when


def exists(*names: str):
    """True once any of ``names`` (glob patterns, relative to the output folder) exists."""

    def when(out):
        return lambda: any(any(out.glob(name)) for name in names)

    return when


def either(*whens):
    def when(out):
        conditions = [w(out) for w in whens]
        return lambda: any(c() for c in conditions)

    return when


class Chain:
    """Runs one command again and again, killing it at each kill point; records what happened."""

    def __init__(self, args, tmp_path: Path, rng: random.Random):
        self.args = [str(a) for a in args]
        self.log = tmp_path / "runs.log"
        self.rng = rng
        self.landed: list[str] = []  # kill points that killed a running process
        self.missed: list[str] = []  # the process had finished by itself
        self.after_kill: list[Callable[[], None]] = []  # checks run after each kill

    def kill_at(self, point: KillPoint, out: Path) -> bool:
        with open(self.log, "a") as log:
            log.write(f"\n=== run, kill point {point.name}\n")
        with open(self.log, "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "copycat_tf.cli.main", *self.args],
                                       stdout=log, stderr=subprocess.STDOUT, env=ENV)
        condition = point.when(out)
        started = time.monotonic()
        deadline = started + 300
        while process.poll() is None:
            try:
                met = condition()
            except (OSError, ValueError, KeyError, TypeError):
                met = False  # a file read half-way; look again
            if met:
                if point.jitter:
                    time.sleep(self.rng.uniform(0, point.jitter))
                break
            assert time.monotonic() < deadline, f"kill point {point.name} never came: {self.output()}"
            time.sleep(0.001)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        returncode = process.wait(timeout=60)
        with open(self.log, "a") as log:
            log.write(f"=== exit {returncode} after {time.monotonic() - started:.1f} s\n")
        if returncode == -signal.SIGKILL:
            self.landed.append(point.name)
        else:
            assert returncode == 0, f"run before kill point {point.name} failed ({returncode}): {self.output()}"
            self.missed.append(point.name)
        for check in self.after_kill:
            check()
        return returncode == -signal.SIGKILL

    def finish(self) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "copycat_tf.cli.main", *self.args],
                              capture_output=True, text=True, env=ENV, timeout=600, check=False)
        assert done.returncode == 0, done.stdout + done.stderr + self.output()
        assert "Traceback" not in done.stderr
        return done

    def output(self) -> str:
        return f"(seed {SEED})\n" + self.log.read_text()[-6000:]

    def summary(self) -> str:
        return f"seed {SEED}: killed at {self.landed}; finished before {self.missed}"


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for pattern in LEFTOVER_PATTERNS for p in folder.rglob(pattern))


def read_json(path: Path):
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- fake datasets


def manifest(out: Path) -> dict | None:
    try:
        return read_json(out / "manifest.json")
    except (OSError, ValueError):
        return None


def last_logged(out: Path) -> int:
    try:
        lines = (out / "queries.log").read_bytes().split(b"\n")[:-1]
    except OSError:
        return 0
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def uncommitted(out: Path) -> int:
    """Queries paid (logged) for records not in a finished shard (kept from the journal by a
    resume, or lost in flight)."""
    m = manifest(out)
    return max(0, last_logged(out) - (m["queries_spent"] if m else 0))


def count_at_least(extra_shards: int, shard: int):
    """True once ``extra_shards`` more shards are committed than at process start."""

    def when(out):
        m = manifest(out)
        target = (m["count"] if m else 0) + extra_shards * shard
        return lambda: (manifest(out) or {"count": 0})["count"] >= target

    return when


def paid_not_committed(out):
    return lambda: uncommitted(out) > 0


def grew(name: str):
    def when(out):
        path = out / name
        size = path.stat().st_size if path.exists() else 0
        return lambda: path.exists() and path.stat().st_size > size

    return when


class FakeSetChecks:
    """After each kill: the folder is a valid fake dataset (or not there yet), and what the
    kills wasted so far: queries paid (the manifest's, or the later total ``queries.log``
    holds) beyond the committed records and the answers the journal kept. A resume buys each
    missing record once, so the final charge must be exactly the budget plus the last
    figure; each kill may add at most the batches in flight when it struck."""

    def __init__(self, out: Path, shard: int):
        self.out, self.shard = out, shard
        self.wasted: list[int] = [0]

    def __call__(self):
        m = manifest(self.out)
        if m is None:
            self.wasted.append(self.wasted[-1])
            return
        fakeset = FakeSet.open(self.out)  # the manifest is never half-written
        fakeset.verify()  # and every shard it lists is whole
        wasted = max(m["queries_spent"], last_logged(self.out)) - m["count"] - journaled_records(self.out)
        assert 0 <= wasted - self.wasted[-1] <= self.shard, (self.wasted, wasted)
        self.wasted.append(wasted)


def records(fakeset: FakeSet) -> list[dict]:
    return list(fakeset.iter_shards())


def assert_same_fakeset(mine: FakeSet, reference: FakeSet):
    """Record for record, shard by shard, byte for byte (the shard list with its sha256s),
    and every manifest figure but the queries spent."""
    assert mine.count == reference.count and mine.complete and reference.complete
    assert mine.manifest["shards"] == reference.manifest["shards"]
    for name in ("label_histogram", "source_counts", "rejected", "rejected_bytes", "next_item",
                 "exhausted", "config", "oracle", "budget"):
        assert mine.manifest[name] == reference.manifest[name], name
    for a, b in zip(records(mine), records(reference), strict=True):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    mine_rejected, reference_rejected = (
        (f.directory / "rejected.tsv").read_bytes() if (f.directory / "rejected.tsv").exists() else None
        for f in (mine, reference))
    assert mine_rejected == reference_rejected
    mine.verify()
    own = {"manifest.json", "rejected.tsv", "queries.log", "answers.journal", "rounds"} | {s["file"] for s in mine.manifest["shards"]}
    assert {p.name for p in mine.directory.iterdir()} <= own  # no orphan shard, no temp file


# ------------------------------------------------------------------------------------ label


LABEL_BUDGET, LABEL_SHARD, LABEL_BATCH = 4000, 128, 32


def label_points(rng: random.Random, slow: bool) -> list[KillPoint]:
    s = LABEL_SHARD
    points = [
        KillPoint("startup", after_seconds(0.05, 0.6, rng)),
        KillPoint("first manifest", exists("manifest.json.tmp", "manifest.json")),
        KillPoint("mid first shard", paid_not_committed, jitter=0.003),
        KillPoint("writing a shard", either(exists("shard-*.npz.tmp"), count_at_least(2, s))),
        KillPoint("just after a commit", count_at_least(1, s)),
        KillPoint("a rejection logged", either(grew("rejected.tsv"), count_at_least(3, s)), jitter=0.002),
        KillPoint("writing the manifest", either(exists("manifest.json.tmp"), count_at_least(2, s))),
    ]
    points += [KillPoint(f"random {i}", count_at_least(rng.randint(1, 3), s), jitter=0.03) for i in range(4)]
    points.append(KillPoint("near the end", lambda out: lambda: (manifest(out) or {"count": 0})["count"]
                            >= LABEL_BUDGET - 2 * s, jitter=0.01))
    if not slow:
        points = [points[0], points[2], points[4]]
    return points


@pytest.mark.parametrize("slow", [pytest.param(False, id="3-kills"),
                                  pytest.param(True, id="12-kills", marks=pytest.mark.slow)])
def test_label_killed_again_and_again_ends_like_an_uninterrupted_run(
        slow, query_target, query_folder, bad_query_files, tmp_path):
    folder, _ = query_folder
    bad_query_files(folder)
    target = query_target((32, 32, 3), 10)
    specs = [f"{folder}:0.02", "noise:uniform"]
    reference = label(OnnxOracle(target), specs, LABEL_BUDGET, tmp_path / "reference", seed=3,
                      shard_size=LABEL_SHARD, batch_size=LABEL_BATCH)
    out = tmp_path / "killed"
    rng = random.Random(SEED)
    chain = Chain(["label", target, "--queries", specs[0], "--queries", specs[1], "--budget", LABEL_BUDGET,
                   "--out", out, "--seed", 3, "--shard-size", LABEL_SHARD, "--batch-size", LABEL_BATCH],
                  tmp_path, rng)
    checks = FakeSetChecks(out, LABEL_SHARD)
    chain.after_kill.append(checks)
    points = label_points(rng, slow)
    for point in points:
        chain.kill_at(point, out)
    assert len(chain.landed) >= len(points) - 1, (chain.landed, chain.missed, chain.output())

    print(chain.summary())
    done = chain.finish()
    resumed = FakeSet.open(out)
    assert_same_fakeset(resumed, reference)
    assert reference.queries_spent == LABEL_BUDGET
    # Each kill re-buys exactly what it had paid for but not committed, never over one shard.
    assert resumed.queries_spent == LABEL_BUDGET + checks.wasted[-1], (checks.wasted, chain.output())
    assert resumed.queries_spent <= LABEL_BUDGET + len(chain.landed) * LABEL_SHARD
    assert f"queries   {resumed.queries_spent:,} spent" in done.stdout
    assert not leftovers(out)

    again = chain.finish()  # a finished dataset buys nothing more
    assert FakeSet.open(out).queries_spent == resumed.queries_spent
    assert f"labeled   {LABEL_BUDGET:,} images (complete)" in again.stdout


# ------------------------------------------------------------------------------------ train


TRAIN_EPOCHS = 4


def training_state(out: Path) -> dict | None:
    try:
        return read_json(out / "training.json")
    except (OSError, ValueError):
        return None


def stage(out: Path, name: str = "main") -> dict:
    state = training_state(out)
    return state["stages"][name] if state else {"epochs_done": 0, "starts": [], "finished": False}


def epochs_done_at_least(extra: int):
    def when(out):
        target = stage(out)["epochs_done"] + extra
        return lambda: stage(out)["epochs_done"] >= target

    return when


def training_started(out):
    before = len(stage(out)["starts"])
    return lambda: len(stage(out)["starts"]) > before


def train_points(rng: random.Random) -> list[KillPoint]:
    return [
        KillPoint("startup", after_seconds(0.1, 0.6, rng)),
        KillPoint("run folder opened", exists("training.json")),
        KillPoint("loading TensorFlow", exists("training.json"), jitter=2.0),
        KillPoint("first epoch", training_started, jitter=0.4),
        KillPoint("saving a checkpoint", either(exists("checkpoints/*.partial.keras"), epochs_done_at_least(1))),
        KillPoint("just after an epoch", epochs_done_at_least(1)),
        KillPoint("mid epoch", epochs_done_at_least(1), jitter=0.5),
        KillPoint("export", lambda out: lambda: stage(out)["finished"] or stage(out)["epochs_done"] >= TRAIN_EPOCHS,
                  jitter=0.3),
        KillPoint("writing the keras file", exists("copycat.partial.keras", "copycat.keras")),
        KillPoint("writing the onnx file", exists("copycat.onnx.tmp", "copycat.onnx")),
    ]


class TrainingChecks:
    """After each kill: ``training.json`` is whole and never claims an epoch that was not saved."""

    def __init__(self, out: Path, epochs: int = TRAIN_EPOCHS):
        self.out, self.epochs = out, epochs

    def __call__(self):
        state = training_state(self.out)
        if state is None:
            return
        main = state["stages"]["main"]
        assert main["epochs_done"] <= self.epochs
        if main["epochs_done"]:
            assert (self.out / "checkpoints" / "main.keras").is_file()
        for metric, values in main["history"].items():
            assert len(values) == main["epochs_done"], metric


def cosine_rates(learning_rate: float, epochs: int) -> list[float]:
    return [learning_rate * 0.5 * (1 + math.cos(math.pi * (e + 0.5) / epochs)) for e in range(epochs)]


def assert_trained_once_per_epoch(out: Path, epochs: int, reference: Path | None = None):
    state = read_json(out / "training.json")
    assert state["format"] == "copycat-tf.training" and state["finished"]
    main = state["stages"]["main"]
    assert main["finished"] and main["epochs_done"] == epochs
    for metric, values in main["history"].items():
        assert len(values) == epochs, metric  # each epoch recorded exactly once
        assert all(math.isfinite(v) for v in values), metric
    starts = main["starts"]
    # One start per run that reached training; a run killed after its last epoch was saved
    # but before the stage was marked finished starts again at ``epochs`` and trains nothing.
    assert starts[0] == 0 and starts == sorted(starts) and starts[-1] <= epochs
    expected = cosine_rates(state["config"]["learning_rate"], epochs)
    np.testing.assert_allclose(main["history"]["learning_rate"], expected, rtol=1e-5)
    if reference is not None:
        uninterrupted = read_json(reference / "training.json")
        assert uninterrupted["stages"]["main"]["starts"] == [0]
        assert set(main["history"]) == set(uninterrupted["stages"]["main"]["history"])
        np.testing.assert_allclose(main["history"]["learning_rate"],
                                   uninterrupted["stages"]["main"]["history"]["learning_rate"], rtol=1e-6)
        assert state["config"] == uninterrupted["config"]
        assert main["fakeset"] == uninterrupted["stages"]["main"]["fakeset"]
    copycat = OnnxOracle(out / "copycat.onnx")  # loads, passes the checker, answers
    answers = copycat.query(np.zeros((3, *copycat.contract.image_shape), np.uint8))
    assert answers.labels.shape == (3,)
    assert (out / "copycat.keras").is_file() and (out / "checkpoints" / "main.keras").is_file()
    assert not leftovers(out), leftovers(out)
    return state, copycat


@pytest.fixture(scope="module")
def train_fakeset(make_fakeset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fault-target")
    target = folder / "target.onnx"
    make_linear_classifier(target, image_shape=(12, 12, 1), num_classes=3, seed=0)
    return make_fakeset(target, ["noise:uniform"], 600)


@pytest.mark.slow
def test_train_killed_again_and_again_finishes_with_every_epoch_once(train_fakeset, tmp_path):
    args = ["train", train_fakeset.directory, "--epochs", TRAIN_EPOCHS, "--batch-size", 32]
    reference = tmp_path / "reference"
    Chain([*args, "--out", reference], tmp_path, random.Random(SEED)).finish()
    out = tmp_path / "killed"
    rng = random.Random(SEED)
    chain = Chain([*args, "--out", out], tmp_path, rng)
    chain.after_kill.append(TrainingChecks(out))
    points = train_points(rng)
    for point in points:
        chain.kill_at(point, out)
    assert len(chain.landed) >= len(points) - 2, (chain.landed, chain.missed, chain.output())
    print(chain.summary())
    done = chain.finish()
    _, copycat = assert_trained_once_per_epoch(out, TRAIN_EPOCHS, reference)
    reference_copycat = OnnxOracle(reference / "copycat.onnx")
    assert copycat.contract == reference_copycat.contract
    assert copycat.metadata == reference_copycat.metadata  # target sha256, queries, arch
    assert "copycat   " in done.stdout or "already holds this trained copycat" in done.stdout


# ------------------------------------------------------------------------------------ steal


STEAL_BUDGET = 1500  # the balanced strategy's two rounds of 750; paper: a shard of 1,024 and one of 476
STEAL_EPOCHS = 3


@pytest.fixture
def steal_inputs(digits_queries, tmp_path):
    target = tmp_path / "target.onnx"
    make_linear_classifier(target, image_shape=(8, 8, 1), num_classes=4, seed=1)
    images = np.random.default_rng(5).integers(0, 256, (60, 8, 8, 1), dtype=np.uint8)
    test = tmp_path / "test.npz"
    np.savez(test, x=images, y=np.arange(60) % 4)
    specs = [f"{digits_queries}:0.5", "noise:uniform"]
    args = ["steal", target, "--queries", specs[0], "--queries", specs[1], "--budget", STEAL_BUDGET,
            "--epochs", STEAL_EPOCHS, "--test-data", test, "--seed", 2]
    return target, specs, args, test


def in_fakeset(when):
    return lambda out: when(out / "fakeset")


def fakeset_count_at_least(count: int):
    return in_fakeset(lambda out: lambda: (manifest(out) or {"count": 0})["count"] >= count)


def steal_points(rng: random.Random, strategy: str) -> list[KillPoint]:
    in_copycat = lambda when: lambda out: when(out / "copycat")  # noqa: E731
    train = {p.name: p for p in train_points(rng)}
    labeling = [KillPoint("labeling", in_fakeset(paid_not_committed), jitter=0.005)]
    if strategy == "balanced":
        labeling += [
            KillPoint("training the scout", fakeset_count_at_least(STEAL_BUDGET // 2), jitter=1.5),
            KillPoint("scoring candidates", exists("fakeset/rounds/scout-00.keras"), jitter=0.2),
            KillPoint("labeling round 2", exists("fakeset/rounds/selection-01.json"), jitter=0.02),
        ]
    return [
        KillPoint("startup", after_seconds(0.1, 0.8, rng)),
        *labeling,
        KillPoint("between label and train", fakeset_count_at_least(STEAL_BUDGET), jitter=0.5),
        KillPoint("train: first epoch", in_copycat(train["first epoch"].when), jitter=0.4),
        KillPoint("train: export", in_copycat(train["export"].when), jitter=0.3),
        KillPoint("evaluating", exists("copycat/copycat.onnx"), jitter=0.3),
        KillPoint("writing the report", exists("report/*")),
    ]


@pytest.mark.parametrize("strategy, kills", [
    pytest.param("paper", 1, id="paper-1-kill"),
    pytest.param("balanced", 10, id="balanced-10-kills", marks=pytest.mark.slow),
])
def test_steal_killed_again_and_again_ends_like_an_uninterrupted_run(strategy, kills, steal_inputs, tmp_path):
    from copycat_tf.queries.spec import QuerySpec
    from copycat_tf.strategies import strategy_named
    from copycat_tf.training import TrainConfig

    target, specs, args, test_file = steal_inputs
    out = tmp_path / "run"
    rng = random.Random(SEED)
    chain = Chain([*args, "--strategy", strategy, "--out", out], tmp_path, rng)
    checks = FakeSetChecks(out / "fakeset", 1024)
    chain.after_kill += [checks, TrainingChecks(out / "copycat", STEAL_EPOCHS)]
    points = steal_points(rng, strategy)
    points = points if kills >= len(points) else [p for p in points if p.name == "labeling"]
    assert len(points) == kills
    for point in points:
        chain.kill_at(point, out)
    assert len(chain.landed) >= max(1, len(points) - 2), (chain.landed, chain.missed, chain.output())
    print(chain.summary())
    done = chain.finish()

    # The uninterrupted reference: the same collection in one go, as `steal` calls it.
    chosen = strategy_named(strategy)
    reference = chosen.collect(OnnxOracle(target), QuerySpec(specs), STEAL_BUDGET, tmp_path / "reference",
                               config=TrainConfig(balance=chosen.copycat_balance, seed=2)).fakeset
    fakeset = FakeSet.open(out / "fakeset")
    assert_same_fakeset(fakeset, reference)
    assert fakeset.queries_spent == STEAL_BUDGET + checks.wasted[-1], (checks.wasted, chain.output())
    assert_trained_once_per_epoch(out / "copycat", STEAL_EPOCHS)
    report = read_json(out / "report" / "report.json")
    assert report["queries"] == fakeset.queries_spent and report["count"] == 60
    # The target is deterministic, so its side of the report is exactly the uninterrupted one's.
    test = np.load(test_file)
    accuracy = float(np.mean(OnnxOracle(target).query(test["x"]).labels == test["y"]))
    assert report["target"]["accuracy"] == pytest.approx(accuracy)
    assert (out / "report" / "report.md").is_file()
    assert not leftovers(out), leftovers(out)
    assert done.stdout.strip().splitlines()[-1].startswith("copycat reaches ")
