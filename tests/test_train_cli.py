"""`copycat-tf train-target` and `copycat-tf train` as a user runs them: real subprocesses,
real files, a real SIGKILL."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from cli_runner import run_cli
from onnx_factory import make_linear_classifier


@pytest.fixture(scope="module")
def fakesets(make_fakeset, tmp_path_factory):
    """Fake datasets from a tiny linear target: a complete one, an incomplete one, and one
    from another oracle."""
    folder = tmp_path_factory.mktemp("cli-targets")
    target, other = folder / "target.onnx", folder / "other.onnx"
    make_linear_classifier(target, image_shape=(12, 12, 1), num_classes=3, seed=0)
    make_linear_classifier(other, image_shape=(12, 12, 1), num_classes=3, seed=1)
    return {
        "complete": make_fakeset(target, ["noise:uniform"], 800),
        "incomplete": make_fakeset(target, ["noise:uniform"], 300, oracle_budget=100),
        "foreign": make_fakeset(other, ["noise:uniform"], 100),
    }


def test_train_target_on_digits_writes_target_and_card(tmp_path):
    out = tmp_path / "t" / "digits.onnx"
    result = run_cli("train-target", "--dataset", "digits", "--arch", "small_cnn", "--out", out, "--epochs", "10")
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", result.stdout).group(1)) / 100
    assert accuracy > 0.8
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert card["dataset"] == "digits" and card["arch"] == "small_cnn" and len(card["classes"]) == 10
    assert "target epoch 10/10" in result.stderr  # progress is logged


@pytest.mark.parametrize("args, fragments", [
    (["--dataset", "digits", "--arch", "lenet"], ["unknown architecture 'lenet'", "small_cnn", "vgg16"]),
    (["--dataset", "cifar10"], ["unknown dataset 'cifar10'", "fashion-mnist"]),
    (["--dataset", "missing.npz"], ["unknown dataset 'missing.npz'"]),
])
def test_train_target_bad_names(args, fragments, tmp_path):
    run_cli("train-target", *args, "--out", tmp_path / "t.onnx").assert_clean_error(*fragments)


def test_train_bad_inputs_fail_cleanly(fakesets, tmp_path):
    complete, incomplete, foreign = (str(fakesets[k].directory) for k in ("complete", "incomplete", "foreign"))
    out = str(tmp_path / "out")
    cases = [
        ([str(tmp_path / "nowhere"), "--out", out], ["nowhere: no such folder"]),
        ([str(tmp_path), "--out", out], ["no manifest.json", "copycat-tf label"]),
        ([incomplete, "--out", out], ["incomplete: 100 of 300 records"]),
        ([complete, "--finetune", foreign, "--out", out], ["labelled by another oracle"]),
        ([complete, "--arch", "lenet", "--out", out], ["unknown architecture 'lenet'"]),
        ([complete, "--labels", "soft", "--out", out], ["holds hard labels only"]),
        ([complete, "--epochs", "0", "--out", out], ["epochs must be a whole number >= 1"]),
    ]
    for args, fragments in cases:
        run_cli("train", *args).assert_clean_error(*fragments)
    assert not (tmp_path / "out").exists()


def test_help_teaches_and_loads_no_tensorflow():
    code = ("import sys; from copycat_tf.cli.main import main\n"
            "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "main_loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
            "print('LOADED', main_loaded)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in done.stdout, done.stdout + done.stderr
    assert "copycat-tf train runs/fake --out runs/copycat" in done.stdout


def test_sigkilled_training_resumes_from_the_saved_epoch(fakesets, tmp_path):
    out = tmp_path / "copycat"
    args = ["train", fakesets["complete"].directory, "--out", out, "--epochs", "8", "--batch-size", "16"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "copycat_tf.cli.main", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    state_file = out / "training.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if state_file.exists() and json.loads(state_file.read_text())["stages"]["main"]["epochs_done"] >= 2:
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "training ended before it could be killed"
    killed = json.loads(state_file.read_text())["stages"]["main"]
    saved = killed["epochs_done"]
    assert 2 <= saved < 8 and not killed["finished"]

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert f"epochs {saved + 1}-8" in result.stderr  # it says where it resumes
    state = json.loads(state_file.read_text())
    main = state["stages"]["main"]
    assert main["starts"] == [0, saved]  # resumed from the saved epoch, did not start over
    assert main["epochs_done"] == 8 and len(main["history"]["loss"]) == 8
    assert state["finished"]
    assert "copycat   " in result.stdout and "agreement" in result.stdout

    again = run_cli(*args)
    assert again.returncode == 0 and "already holds this trained copycat" in again.stdout
