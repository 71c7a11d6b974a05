"""``python -m benchmarks.perf gpu``: one line and exit 2 without a GPU; ``--cpu-smoke`` runs
both comparisons (fine-tuning float32 vs mixed precision, labeling through two providers)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.row import Row

ROOT = Path(__file__).resolve().parents[1]
#: Every GPU hidden from TensorFlow, whatever machine runs the tests.
NO_GPU = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def _gpu(*args, timeout):
    return subprocess.run([sys.executable, "-m", "benchmarks.perf", "gpu", *map(str, args)], cwd=ROOT,
                          env=NO_GPU, capture_output=True, text=True, timeout=timeout)


def test_without_a_gpu_it_stops_with_one_line_and_status_2():
    done = _gpu(timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        "gpu: no GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty); run this on a "
        "GPU machine with tensorflow[and-cuda], or pass --cpu-smoke to check the script on the CPU")
    assert "Traceback" not in done.stderr


def test_the_vgg16_copycat_keeps_a_float32_softmax_under_mixed_precision():
    import keras

    from copycat_tf.models import build

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build("vgg16", (32, 32, 1), 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("vgg16").get_layer("block1_conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"


@pytest.mark.slow
def test_cpu_smoke_measures_both_comparisons_as_ratios(tmp_path):
    rows_file = tmp_path / "gpu.jsonl"
    done = _gpu("--cpu-smoke", "--json", rows_file, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [Row.from_json(line) for line in rows_file.read_text().splitlines()]
    assert [row.case for row in rows] == [
        "vgg16 fine-tuning, 32 px, batch 4, float32",
        "vgg16 fine-tuning, 32 px, batch 4, mixed_float16",
        "labeling, OnnxOracle batch 512, CPUExecutionProvider",
        "labeling, OnnxOracle batch 512, CPUExecutionProvider in place of CUDA",
    ]
    assert all(row.benchmark == "gpu" and row.unit == "img/s" and row.value > 0 for row in rows)
    assert all(row.machine.startswith("CPU (--cpu-smoke); ") for row in rows)
    fp32, mixed, cpu, stand_in = rows
    assert fp32.reference is None and cpu.reference is None
    assert mixed.reference == fp32.value and mixed.ratio == pytest.approx(mixed.value / fp32.value)
    assert stand_in.reference == cpu.value and stand_in.ratio == pytest.approx(stand_in.value / cpu.value)
    assert "fine-tuning mixed_float16 (XLA on)" in done.stdout
    assert f"{mixed.case}: {mixed.ratio:.2f} x {fp32.value:.1f} img/s" in done.stdout
