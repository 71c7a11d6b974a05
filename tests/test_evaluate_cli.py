"""`copycat-tf evaluate` end to end through the real console script, and each bad input."""

import json

import numpy as np
import pytest
from cli_runner import run_cli
from onnx_factory import make_linear_classifier, reference_logits
from PIL import Image

from copycat_tf.evaluation import QUERIES_KEY, TARGET_SHA256_KEY
from copycat_tf.files import file_sha256

SHAPE = (8, 8, 3)


@pytest.fixture
def models(tmp_path):
    """A 4-class target, a perfect copycat of it (stolen with 3,000 queries), and its weights."""
    target = tmp_path / "target.onnx"
    weights, bias = make_linear_classifier(target, image_shape=SHAPE, num_classes=4)
    copycat = tmp_path / "copycat.onnx"
    make_linear_classifier(copycat, image_shape=SHAPE, num_classes=4,
                           metadata={TARGET_SHA256_KEY: file_sha256(target), QUERIES_KEY: "3000"})
    return target, copycat, weights, bias


def _npz(path, images, labels=None):
    arrays = {"x": images} if labels is None else {"x": images, "y": labels}
    np.savez(path, **arrays)
    return path


def _images(n, shape=SHAPE):
    return np.random.default_rng(3).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_evaluate_npz_writes_the_report(models, tmp_path):
    target, copycat, weights, bias = models
    images = _images(50)
    labels = reference_logits(images, weights, bias).argmax(1)
    labels[:5] = (labels[:5] + 1) % 4  # the target gets exactly 45 of 50 right
    test = _npz(tmp_path / "test.npz", images, labels)
    result = run_cli("evaluate", target, copycat, "--test-data", test, "--out", tmp_path / "eval",
                     "--batch-size", 16)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == (
        "copycat reaches 100.0% of the target's accuracy (agreement 100.0%) with 3,000 queries"
    )
    assert any(line.split()[:3] == ["accuracy", "90.0%", "90.0%"] for line in lines)
    assert "report.md" in result.stdout
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["target"]["accuracy"] == 0.9 and report["copycat"]["accuracy"] == 0.9
    assert report["performance_ratio"] == 1.0 and report["agreement"] == 1.0
    assert report["per_class_agreement"] == 1.0 and report["kappa"] == pytest.approx(1.0)
    assert report["queries"] == 3000 and report["count"] == 50
    for name in ("report.md", "confusion.png", "agreement.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0


def test_evaluate_folder_of_class_subfolders(models, tmp_path):
    target, copycat, _, _ = models
    folder = tmp_path / "test-images"
    for k, name in enumerate(["ant", "bee", "cat", "dog"]):
        (folder / name).mkdir(parents=True)
        for i, pixels in enumerate(_images(3, (12, 10, 3)) + k):  # fitted to 8x8 on load
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    result = run_cli("evaluate", target, copycat, "--test-data", folder, "--out", tmp_path / "eval",
                     "--limit", 10)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["class_names"] == ["ant", "bee", "cat", "dog"]
    assert report["count"] == 10 and report["agreement"] == 1.0
    assert report["target"]["accuracy"] is not None


def test_unlabelled_test_data_reports_agreement_only(models, tmp_path):
    target, copycat, _, _ = models
    test = _npz(tmp_path / "photos.npz", _images(20))
    result = run_cli("evaluate", target, copycat, "--test-data", test, "--out", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "copycat agrees with the target on 100.0% of 20 test images (3,000 queries)"
    )
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["performance_ratio"] is None and report["target"]["accuracy"] is None
    assert not (tmp_path / "eval" / "confusion.png").exists()


def test_classes_that_do_not_match_the_target(models, tmp_path):
    target, copycat, _, _ = models
    test = _npz(tmp_path / "test.npz", _images(10), np.arange(10) % 6)
    run_cli("evaluate", target, copycat, "--test-data", test, "--out", tmp_path / "eval") \
        .assert_clean_error("test.npz", "labels go up to 5", "outputs 4 classes")


def test_image_size_mismatch(models, tmp_path):
    target, copycat, _, _ = models
    test = _npz(tmp_path / "test.npz", _images(10, (28, 28, 1)), np.zeros(10, np.int64))
    run_cli("evaluate", target, copycat, "--test-data", test, "--out", tmp_path / "eval") \
        .assert_clean_error("images are 28x28x1, the target takes 8x8x3")


def test_copycat_with_a_different_contract(models, tmp_path):
    target, _, _, _ = models
    five = tmp_path / "five.onnx"
    make_linear_classifier(five, image_shape=SHAPE, num_classes=5)
    test = _npz(tmp_path / "test.npz", _images(10), np.zeros(10, np.int64))
    run_cli("evaluate", target, five, "--test-data", test, "--out", tmp_path / "eval") \
        .assert_clean_error("COPYCAT does not fit TARGET's contract", "4 vs 5 classes")


def test_copycat_stolen_from_another_target(models, tmp_path):
    _, copycat, _, _ = models
    other = tmp_path / "other.onnx"
    make_linear_classifier(other, image_shape=SHAPE, num_classes=4, seed=9)
    test = _npz(tmp_path / "test.npz", _images(10), np.zeros(10, np.int64))
    run_cli("evaluate", other, copycat, "--test-data", test, "--out", tmp_path / "eval") \
        .assert_clean_error("COPYCAT was stolen from another model", "not TARGET")


def test_help_teaches_with_examples():
    result = run_cli("evaluate", "--help")
    assert result.returncode == 0
    assert "--test-data fashion-mnist:test" in result.stdout and "performance ratio" in result.stdout
