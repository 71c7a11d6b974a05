"""Evaluation metrics against hand-computed values and scikit-learn, and evaluate()'s checks."""

import re

import numpy as np
import pytest
from onnx_factory import make_linear_classifier, reference_logits
from sklearn import metrics

from copycat_tf.datasets import LabelledImages
from copycat_tf.errors import CopycatError
from copycat_tf.evaluation import (
    QUERIES_KEY,
    TARGET_SHA256_KEY,
    ModelScores,
    accuracy,
    agreement,
    cohen_kappa,
    confusion_matrix,
    evaluate,
    macro_f1,
    per_class_agreement,
    per_class_scores,
)
from copycat_tf.files import file_sha256
from copycat_tf.oracle import OnnxOracle

# Three classes, eight images; worked out by hand below.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2, 2, 0])


def test_accuracy_by_hand():
    # Hits at positions 0, 1, 3, 5, 6: 5 of 8.
    assert accuracy(Y_TRUE, Y_PRED) == 5 / 8


def test_confusion_matrix_by_hand():
    expected = [
        [2, 1, 0],  # true 0: predicted 0, 0, 1
        [0, 1, 1],  # true 1: predicted 1, 2
        [1, 0, 2],  # true 2: predicted 2, 2, 0
    ]
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, 3), expected)


def test_per_class_scores_by_hand():
    precision, recall, f1 = per_class_scores(Y_TRUE, Y_PRED, 3)
    # Column sums (predicted) 3, 2, 3; row sums (true) 3, 2, 3; hits 2, 1, 2.
    np.testing.assert_allclose(precision, [2 / 3, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [2 / 3, 1 / 2, 2 / 3])
    np.testing.assert_allclose(f1, [2 / 3, 1 / 2, 2 / 3])


def test_macro_f1_by_hand():
    assert macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)


def test_agreement_by_hand():
    assert agreement([3, 1, 0, 0], [3, 1, 1, 2]) == 0.5


def test_undefined_scores_are_zero_without_warnings():
    # Class 1 is never predicted (precision 0/0) and class 2 never occurs (recall 0/0).
    with np.errstate(all="raise"):
        precision, recall, f1 = per_class_scores([0, 1], [0, 0], 3)
    np.testing.assert_allclose(precision, [0.5, 0.0, 0.0])
    np.testing.assert_allclose(recall, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(f1, [2 / 3, 0.0, 0.0])


def test_macro_f1_leaves_out_classes_absent_from_truth_and_prediction():
    # Class 2 of 3 occurs nowhere: the mean is over classes 0 and 1, as scikit-learn does.
    assert macro_f1([0, 1], [0, 0], 3) == pytest.approx((2 / 3 + 0.0) / 2)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    k = 6
    y_true = rng.integers(0, k, 200)
    # Mostly right, sometimes a class is never predicted: exercises zero_division.
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, k - 1, 200))
    labels = list(range(k))
    assert accuracy(y_true, y_pred) == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, k), metrics.confusion_matrix(y_true, y_pred, labels=labels)
    )
    assert macro_f1(y_true, y_pred, k) == pytest.approx(
        metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    ours = per_class_scores(y_true, y_pred, k)
    for mine, theirs in zip(ours, (precision, recall, f1)):
        np.testing.assert_allclose(mine, theirs)


def test_per_class_agreement_by_hand():
    # Target (rows) vs copycat: class 0 agrees on 2 of 3, class 1 on 1 of 2, class 2 on 2 of 3.
    assert per_class_agreement(Y_TRUE, Y_PRED) == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    # Classes the target never answers (3 here, though the copycat does) do not count.
    assert per_class_agreement([0, 0, 1, 1], [0, 3, 1, 1]) == pytest.approx((1 / 2 + 1) / 2)


def test_kappa_by_hand():
    # Agreement 5/8; chance (3*3 + 2*2 + 3*3) / 64 = 22/64.
    assert cohen_kappa(Y_TRUE, Y_PRED) == pytest.approx((5 / 8 - 22 / 64) / (1 - 22 / 64))
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)  # always the other answer


@pytest.mark.parametrize("k", [2, 3, 5])
def test_a_constant_copycat_has_kappa_zero_and_per_class_agreement_one_in_k(k):
    target_labels = np.arange(12 * k) % k  # each of k classes on 12 images
    constant = np.full_like(target_labels, 1)
    assert agreement(target_labels, constant) == pytest.approx(1 / k)
    assert per_class_agreement(target_labels, constant) == pytest.approx(1 / k)
    assert cohen_kappa(target_labels, constant) == pytest.approx(0.0, abs=1e-12)
    # On a skewed target the plain agreement rises with the majority class; neither of the two does.
    skewed = np.concatenate([np.zeros(10 * k, np.int64), np.arange(1, k)])
    majority = np.zeros_like(skewed)
    assert agreement(skewed, majority) > 0.9
    assert per_class_agreement(skewed, majority) == pytest.approx(1 / k)
    assert cohen_kappa(skewed, majority) == pytest.approx(0.0, abs=1e-12)


def test_kappa_is_undefined_when_both_models_give_one_answer_throughout():
    assert cohen_kappa([2, 2, 2], [2, 2, 2]) is None
    assert cohen_kappa([2, 2, 2], [1, 1, 1]) == pytest.approx(0.0)  # defined: chance agreement is 0


@pytest.mark.parametrize("seed", range(3))
def test_agreement_figures_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    target_labels = rng.integers(0, 5, 300)
    copycat_labels = np.where(rng.random(300) < 0.7, target_labels, rng.integers(0, 5, 300))
    assert cohen_kappa(target_labels, copycat_labels) == pytest.approx(
        metrics.cohen_kappa_score(target_labels, copycat_labels))
    assert per_class_agreement(target_labels, copycat_labels) == pytest.approx(
        metrics.balanced_accuracy_score(target_labels, copycat_labels))


@pytest.mark.parametrize("figure", [per_class_agreement, cohen_kappa])
def test_agreement_figures_refuse_bad_label_arrays(figure):
    with pytest.raises(CopycatError, match="equal length"):
        figure([0, 1], [0])


def test_model_scores_bundle_the_metrics():
    scores = ModelScores.from_predictions(Y_TRUE, Y_PRED, 3)
    assert scores.accuracy == 5 / 8
    assert scores.macro_f1 == pytest.approx(macro_f1(Y_TRUE, Y_PRED, 3))
    np.testing.assert_array_equal(scores.support, [3, 2, 3])


@pytest.mark.parametrize(
    "y_true, y_pred, fragment",
    [([0, 1], [0], "equal length"), ([], [], "non-empty"), ([0, 3], [0, 1], "[0, 3)")],
)
def test_bad_label_arrays_are_clear_errors(y_true, y_pred, fragment):
    with pytest.raises(CopycatError, match=re.escape(fragment)):
        confusion_matrix(y_true, y_pred, 3)


# --- evaluate() on tiny ONNX models --------------------------------------------------------

SHAPE = (8, 8, 3)


def _images(n, seed=7):
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


@pytest.fixture
def target(tmp_path):
    """A 4-class linear target, its weights and bias."""
    path = tmp_path / "target.onnx"
    weights, bias = make_linear_classifier(path, image_shape=SHAPE, num_classes=4, seed=0)
    return OnnxOracle(path), weights, bias


def _copycat(tmp_path, *, seed=0, num_classes=4, metadata=None, name="copycat.onnx"):
    path = tmp_path / name
    make_linear_classifier(path, image_shape=SHAPE, num_classes=num_classes, seed=seed,
                           metadata=metadata)
    return OnnxOracle(path)


def _labelled_test(weights, bias, n=40, wrong=10):
    """Test images labelled with the target's own answers, the first ``wrong`` ones shifted."""
    images = _images(n)
    labels = reference_logits(images, weights, bias).argmax(1)
    labels[:wrong] = (labels[:wrong] + 1) % 4
    return LabelledImages(images, labels.astype(np.int64), ["a", "b", "c", "d"], "tiny")


def test_a_perfect_copy_has_ratio_one_and_full_agreement(target, tmp_path):
    oracle, weights, bias = target
    copycat = _copycat(tmp_path, metadata={TARGET_SHA256_KEY: oracle.identity, QUERIES_KEY: "3000"})
    result = evaluate(oracle, copycat, _labelled_test(weights, bias), batch_size=16)
    assert result.target.accuracy == 30 / 40
    assert result.copycat.accuracy == 30 / 40
    assert result.performance_ratio == 1.0
    assert result.macro_f1_ratio == pytest.approx(1.0)
    assert result.agreement == 1.0
    assert result.per_class_agreement == 1.0 and result.kappa == pytest.approx(1.0)
    assert result.queries == 3000
    assert result.count == 40
    assert result.class_names == ["a", "b", "c", "d"]
    assert result.target_sha256 == file_sha256(tmp_path / "target.onnx")


def test_a_different_copycat_is_scored_on_its_own_answers(target, tmp_path):
    oracle, weights, bias = target
    copycat = _copycat(tmp_path, seed=1)
    test = _labelled_test(weights, bias)
    copy_weights, copy_bias = make_linear_classifier(tmp_path / "ref.onnx", image_shape=SHAPE, seed=1)
    copy_labels = reference_logits(test.images, copy_weights, copy_bias).argmax(1)
    target_labels = reference_logits(test.images, weights, bias).argmax(1)
    result = evaluate(oracle, copycat, test, queries=500)
    assert result.copycat.accuracy == pytest.approx(np.mean(copy_labels == test.labels))
    assert result.agreement == pytest.approx(np.mean(copy_labels == target_labels))
    assert result.performance_ratio == pytest.approx(result.copycat.accuracy / 0.75)
    assert result.per_class_agreement == pytest.approx(per_class_agreement(target_labels, copy_labels))
    assert result.kappa == pytest.approx(metrics.cohen_kappa_score(target_labels, copy_labels))
    assert result.to_dict()["kappa"] == result.kappa
    assert result.to_dict()["per_class_agreement"] == result.per_class_agreement
    assert result.queries == 500
    np.testing.assert_array_equal(
        result.agreement_matrix, confusion_matrix(target_labels, copy_labels, 4)
    )


def test_unlabelled_test_data_gives_agreement_only(target, tmp_path):
    oracle, _, _ = target
    result = evaluate(oracle, _copycat(tmp_path), LabelledImages(_images(9), None, None, "noise"))
    assert result.target is None and result.copycat is None
    assert result.performance_ratio is None and result.macro_f1_ratio is None
    assert result.agreement == 1.0
    assert result.class_names == ["0", "1", "2", "3"]
    assert result.queries is None


def test_progress_reports_every_batch(target, tmp_path):
    oracle, weights, bias = target
    seen = []
    evaluate(oracle, _copycat(tmp_path), _labelled_test(weights, bias, n=25), batch_size=10,
             progress=lambda done, total: seen.append((done, total)))
    assert seen == [(10, 25), (20, 25), (25, 25)]


def test_queries_are_not_charged_to_an_attack_budget(target, tmp_path):
    oracle, weights, bias = target
    evaluate(oracle, _copycat(tmp_path), _labelled_test(weights, bias, n=12))
    assert oracle.queries_spent == 12 and oracle.budget is None


def test_classes_that_do_not_match_the_target_are_refused(target, tmp_path):
    oracle, weights, bias = target
    test = _labelled_test(weights, bias)
    three_names = LabelledImages(test.images, test.labels % 3, ["a", "b", "c"], "three")
    with pytest.raises(CopycatError, match="has 3 classes, the target outputs 4"):
        evaluate(oracle, _copycat(tmp_path), three_names)
    big_labels = LabelledImages(test.images, test.labels + 2, None, "shifted")
    with pytest.raises(CopycatError, match="labels go up to 5, the target outputs 4"):
        evaluate(oracle, _copycat(tmp_path), big_labels)


def test_images_of_another_size_are_refused(target, tmp_path):
    oracle, _, _ = target
    small = LabelledImages(np.zeros((3, 6, 6, 3), np.uint8), None, None, "small")
    with pytest.raises(CopycatError, match="images are 6x6x3, the target takes 8x8x3"):
        evaluate(oracle, _copycat(tmp_path), small)


def test_a_copycat_with_another_contract_is_refused(target, tmp_path):
    oracle, weights, bias = target
    five = _copycat(tmp_path, num_classes=5)
    with pytest.raises(CopycatError, match="4 vs 5 classes"):
        evaluate(oracle, five, _labelled_test(weights, bias))


def test_a_copycat_of_another_target_is_refused(target, tmp_path):
    oracle, weights, bias = target
    stranger = _copycat(tmp_path, metadata={TARGET_SHA256_KEY: "f" * 64})
    with pytest.raises(CopycatError, match="stolen from another model .*ffffffffffff"):
        evaluate(oracle, stranger, _labelled_test(weights, bias))


def test_zero_batch_size_is_refused(target, tmp_path):
    oracle, weights, bias = target
    with pytest.raises(CopycatError, match="batch-size must be a whole number >= 1; received 0"):
        evaluate(oracle, _copycat(tmp_path), _labelled_test(weights, bias), batch_size=0)
