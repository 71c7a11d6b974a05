"""Label-free evaluation: `--eval-data` on `steal`, `evaluate` and `audit`, on a real digits target."""

import json

import numpy as np
import pytest
from cli_runner import run_cli
from PIL import Image

from copycat_tf.datasets import load_labelled
from copycat_tf.evaluation import evaluate
from copycat_tf.oracle import OnnxOracle
from copycat_tf.attack import Measurement
from copycat_tf.pipeline import steal
from copycat_tf.training import TrainConfig


@pytest.fixture(scope="module")
def flat_folder(tmp_path_factory):
    """60 digits test images as PNG files in one flat folder: images without labels."""
    folder = tmp_path_factory.mktemp("eval-images")
    for index, image in enumerate(load_labelled("digits:test").images[:60]):
        Image.fromarray(image[..., 0]).save(folder / f"{index:03d}.png")
    return folder


@pytest.fixture(scope="module")
def labelled_npz(tmp_path_factory):
    test = load_labelled("digits:test")
    path = tmp_path_factory.mktemp("eval-npz") / "held.npz"
    np.savez(path, x=test.images[:80], y=test.labels[:80])
    return path


@pytest.fixture(scope="module")
def stolen(digits_target, digits_queries, flat_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("steal-eval")
    args = ("steal", digits_target.path, "--queries", digits_queries, "--budget", 300, "--epochs", 2,
            "--eval-data", flat_folder, "--out", out)
    return out, args, run_cli(*args)


def test_steal_reports_agreement_on_unlabelled_images_beside_the_headline(stolen, digits_target, flat_folder):
    out, _, result = stolen
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["labelled"] is False and report["count"] == 60
    assert report["target"]["accuracy"] is None and report["performance_ratio"] is None
    # the same figure as evaluating the exported copycat on those images afterwards
    again = evaluate(OnnxOracle(digits_target.path), OnnxOracle(out / "copycat" / "copycat.onnx"),
                     load_labelled(str(flat_folder), image_shape=(8, 8, 1)))
    assert report["agreement"] == again.agreement
    assert last.startswith("copycat agrees with the target on ") and "of held-out queries (300 queries)" in last
    assert last.endswith(f"; on 60 images of {flat_folder}: agreement {again.agreement:.1%}")
    assert "pass --test-data" not in last
    assert (out / "eval" / "report.md").is_file()
    assert json.loads((out / "steal.json").read_text())["eval_data"] == str(flat_folder)


def test_eval_data_can_join_a_finished_run_without_buying_again(stolen, labelled_npz):
    out, args, _ = stolen
    spent = json.loads((out / "fakeset" / "manifest.json").read_text())["queries_spent"]
    swapped = list(args)
    swapped[swapped.index("--eval-data") + 1] = labelled_npz
    result = run_cli(*swapped, "--test-data", "digits:test")
    # --test-data is part of the run's arguments: a finished run refuses a new one ...
    result.assert_clean_error("test_data None vs now 'digits:test'")
    # ... but new held-out images only measure the copy
    result = run_cli(*swapped)
    assert result.returncode == 0, result.stderr
    assert "already trained" in result.stdout
    assert json.loads((out / "fakeset" / "manifest.json").read_text())["queries_spent"] == spent
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["labelled"] is True and report["count"] == 80
    last = result.stdout.strip().splitlines()[-1]
    assert f"on 80 images of {labelled_npz}: agreement " in last and ", accuracy target " in last


def test_library_steal_with_test_and_eval_data(digits_target, digits_queries, labelled_npz, tmp_path):
    result = steal(digits_target.path, [str(digits_queries)], tmp_path / "run", budget=200,
                   train_config=TrainConfig(balance="sqrt-weights", seed=1),
                   measure=Measurement(test_data="digits:test", eval_data=str(labelled_npz)))
    assert result.evaluation.labelled and result.eval_evaluation.labelled
    assert result.eval_evaluation.count == 80 and result.evaluation.count == 359
    assert result.headline.startswith("copycat reaches ")
    assert result.headline.endswith(
        f"on 80 images of {labelled_npz}: agreement {result.eval_evaluation.agreement:.1%}, accuracy target "
        f"{result.eval_evaluation.target.accuracy:.1%}, copycat {result.eval_evaluation.copycat.accuracy:.1%}")
    assert set(result.eval_report_files) >= {"json", "markdown"}
    assert result.eval_report_files["json"].parent == tmp_path / "run" / "eval"


def test_a_bad_eval_spec_fails_before_any_query_is_bought(digits_target, tmp_path):
    out = tmp_path / "run"
    run_cli("steal", digits_target.path, "--queries", "noise:uniform", "--budget", 100,
            "--eval-data", tmp_path / "missing", "--out", out).assert_clean_error("missing")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((5, 10, 10, 1), np.uint8))
    run_cli("steal", digits_target.path, "--queries", "noise:uniform", "--budget", 100,
            "--eval-data", wrong, "--out", out).assert_clean_error("images are 10x10x1, the target takes 8x8x1")
    assert not (out / "fakeset").exists()


def test_evaluate_takes_eval_data(stolen, digits_target, flat_folder, tmp_path):
    out, _, _ = stolen
    copycat = out / "copycat" / "copycat.onnx"
    result = run_cli("evaluate", digits_target.path, copycat, "--eval-data", flat_folder, "--out", tmp_path / "e")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["labelled"] is False and report["count"] == 60
    assert result.stdout.strip().splitlines()[-1].startswith("copycat agrees with the target on ")
    for extra in ((), ("--test-data", "digits:test")):
        run_cli("evaluate", digits_target.path, copycat, *extra, *(("--eval-data", flat_folder) if extra else ()),
                "--out", tmp_path / "x").assert_clean_error("--test-data SPEC or --eval-data SPEC",
                                                            "both" if extra else "neither")


def test_audit_refuses_both_test_and_eval_data(digits_target, flat_folder, tmp_path):
    run_cli("audit", digits_target.path, "--queries", "noise:uniform", "--test-data", "digits:test",
            "--eval-data", flat_folder, "--out", tmp_path / "a").assert_clean_error("not both")


@pytest.mark.slow
def test_audit_scores_on_eval_data(digits_target, digits_queries, flat_folder, tmp_path):
    result = run_cli("audit", digits_target.path, "--queries", digits_queries, "--budgets", "100,200",
                     "--defences", "none,top1", "--no-detection", "--epochs", 1, "--eval-data", flat_folder,
                     "--out", tmp_path / "a")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["eval_queries_spent"] == 0  # the given images replace the fresh queries
    assert report["metric"] == "agreement" and report["evaluation_images"] == 60
    assert report["queries_spent"] == 200
    assert all(row["performance_ratio"] is None and 0 <= row["agreement"] <= 1 for row in report["results"])
