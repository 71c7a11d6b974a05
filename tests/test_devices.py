"""`--devices`: one copycat trained on several devices of one machine (``MirroredStrategy``).

The machine has no GPU, so a subprocess splits its CPU into two logical devices
(``tf.config.set_logical_device_configuration``) and trains the same copycat on one and
on two of them (``tests/devices_cases.py``): the copy must be as good within noise, and a
two-device run stopped mid-way must resume from its checkpoint.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from copycat_tf.errors import CopycatError
from copycat_tf.training.devices import parse_devices, training_strategy


@pytest.mark.slow
def test_two_devices_copy_as_well_as_one_and_resume(digits_target, digits_queries, make_fakeset, tmp_path):
    fakeset = make_fakeset(digits_target.path, [digits_queries], 1200)
    done = subprocess.run(
        [sys.executable, Path(__file__).with_name("devices_cases.py"), fakeset.directory, tmp_path,
         tmp_path / "results.json"],
        check=False, capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert any("training on 2 CPU devices (MirroredStrategy)" in line for line in results["log"])
    # 120 held-out records: one standard error of an agreement near 0.85 is about 0.03.
    assert results["one"] > 0.7 and results["two"] > 0.7
    assert abs(results["one"] - results["two"]) <= 0.08, results
    assert results["stopped_at"] == 3
    assert results["starts"] == [0, 3] and results["epochs_logged"] == 6
    assert abs(results["resumed"] - results["two"]) <= 0.08, results
    assert "more devices than this machine has (2 CPU" in results["three"]


def test_one_device_is_the_plain_path_and_bad_requests_are_refused():
    assert training_strategy(None) is None and training_strategy(1) is None and training_strategy("1") is None
    for bad in ("0", "two", "-1", 1.5, True):
        with pytest.raises(CopycatError, match="whole number >= 1 or 'all'"):
            parse_devices(bad)


def test_devices_option_refuses_what_is_not_a_count(tmp_path):
    from cli_runner import run_cli

    run_cli("steal", tmp_path / "target.onnx", "--queries", "photos", "--out", tmp_path / "run",
            "--devices", "two").assert_clean_error("--devices", "whole number >= 1 or 'all'", "'two'")
