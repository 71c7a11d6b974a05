"""`copycat-tf inspect` and the CLI's error contract, through the real console entry point."""

import json

import pytest
from cli_runner import run_cli
from onnx_factory import make_linear_classifier


def test_inspect_json_describes_an_nchw_model(tmp_path):
    path = tmp_path / "vendor.onnx"
    make_linear_classifier(path, layout="NCHW", dtype="uint8", output="logits", extra_outputs=True,
                           image_shape=(16, 12, 3), num_classes=5, input_name="input.1")
    result = run_cli("inspect", path, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["inputs"] == [{"name": "input.1", "shape": [None, 3, 16, 12], "dtype": "uint8", "layout": "NCHW"}]
    assert info["num_classes"] == 5
    assert info["output_kind"] == "logits"
    assert info["outputs"][0] == {"name": "logits", "num_classes": 5, "kind": "logits"}
    assert {o["name"] for o in info["outputs"][1:]} == {"label", "features"}
    assert len(info["sha256"]) == 64
    assert info["opsets"] == {"ai.onnx": 17}
    assert info["parameters"] == 16 * 12 * 3 * 5 + 5 + 1
    assert info["preprocessing"] == {"mean": [0.0], "std": [1.0], "channel_order": "rgb"}


def test_inspect_text_and_overrides(tmp_path):
    path = tmp_path / "m.onnx"
    make_linear_classifier(path, batch=1)
    result = run_cli("inspect", path, "--mean", "123.7,116.3,103.5", "--std", "58.4,57.1,57.4",
                     "--channel-order", "bgr", "--output-kind", "scores")
    assert result.returncode == 0, result.stderr
    assert "NHWC, 8x8, colour, batch 1" in result.stdout
    assert "(pixel - [123.7, 116.3, 103.5]) / [58.4, 57.1, 57.4], channel order bgr" in result.stdout
    assert "4 classes, scores" in result.stdout
    assert "sha256" in result.stdout and "producer copycat-tf-tests" in result.stdout


def test_version_and_help_on_every_command():
    result = run_cli("--version")
    assert result.returncode == 0 and "copycat-tf" in result.stdout
    top = run_cli("--help")
    assert top.returncode == 0
    commands = ["inspect", "train-target", "label", "train", "evaluate", "steal", "demo"]
    for command in commands:
        assert command in top.stdout
        help_result = run_cli(command, "--help")
        assert help_result.returncode == 0, (command, help_result.stderr)
        assert "Usage: copycat-tf " + command in help_result.stdout


@pytest.mark.parametrize("content,fragment", [
    (None, "no such file"),
    (b"", "empty file"),
    (b"\x08\x07garbage\xff\xfe" * 50, "not an ONNX model"),
])
def test_inspect_bad_files_exit_2_with_one_line(tmp_path, content, fragment):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    run_cli("inspect", path).assert_clean_error(str(path), fragment)


def test_bad_option_values_are_usage_errors(tmp_path):
    path = tmp_path / "m.onnx"
    make_linear_classifier(path)
    result = run_cli("inspect", path, "--mean", "abc")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--mean" in result.stderr
    run_cli("inspect", path, "--mean", "1,2").assert_clean_error("mean and std take 1 or 3 values")


def test_usage_errors_are_one_line(tmp_path):
    for args, fragment in ((["steal", "--overwrit"], "No such option '--overwrit'"),
                           (["inspect"], "Missing argument 'TARGET'"),
                           (["label", "m.onnx", "--queries", "photos", "--labels", "fuzzy", "--out", "x"], "fuzzy")):
        result = run_cli(*args, cwd=tmp_path)
        result.assert_clean_error(fragment, "--help")
        assert "Usage:" not in result.stderr


def test_an_unavailable_execution_provider_is_one_clear_line(tmp_path):
    path = tmp_path / "m.onnx"
    make_linear_classifier(path)
    run_cli("inspect", path, "--provider", "CUDAExecutionProvider").assert_clean_error(
        "CUDAExecutionProvider is not available", "CPUExecutionProvider")
