"""Evaluation: run the target and its copycat on the same test images and compare them.

Both models are reached the same way, as black boxes through :class:`~copycat_tf.oracle.Oracle`.
The scores are those of the Copycat CNN papers: accuracy and macro-F1 for each model, the
*performance ratio* (copycat accuracy / target accuracy, the headline of Correia-Silva et
al. 2018/2021) and the *agreement* (how often both predict the same label). Unlabelled
test images still give the agreement.

The metric functions are plain numpy; :func:`evaluate` returns an :class:`Evaluation`
(data only; :mod:`copycat_tf.report` turns it into JSON, Markdown and plots).

Usage::

    target = OnnxOracle("target.onnx")
    copycat = OnnxOracle("runs/steal/copycat.onnx")
    result = evaluate(target, copycat, load_labelled("fashion-mnist:test"))
    result.performance_ratio, result.agreement
    # (0.931, 0.91)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from copycat_tf.contract import ARCH_KEY, QUERIES_KEY, TARGET_SHA256_KEY
from copycat_tf.datasets import LabelledImages
from copycat_tf.errors import CopycatError
from copycat_tf.oracle import Oracle

log = logging.getLogger(__name__)

#: ONNX metadata a copycat export carries about how it was made.


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of predictions equal to the true label.

    Example:

    >>> accuracy(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]))
    0.75
    """
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of images on which two models predict the same label.

    Example:

    >>> agreement(np.array([3, 1, 0, 0]), np.array([3, 1, 1, 2]))
    0.5
    """
    return accuracy(pred_a, pred_b)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) label pairs: rows are true classes, columns predictions.

    Example:

    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)
    array([[1, 0],
           [1, 1]])
    """
    y_true, y_pred = _pair(y_true, y_pred)
    for labels, what in ((y_true, "true"), (y_pred, "predicted")):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise CopycatError(
                f"{what} labels must lie in [0, {num_classes}); received values from "
                f"{labels.min()} to {labels.max()}"
            )
    pairs = y_true * num_classes + y_pred
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of every class from a confusion matrix (0 where undefined).

    Example:

    >>> precision, recall, f1 = per_class_scores(np.array([[1, 0], [1, 1]]))
    >>> precision.tolist(), recall.tolist()
    ([0.5, 1.0], [1.0, 0.5])
    """
    confusion = np.asarray(confusion, np.float64)
    hits = np.diag(confusion)
    precision = _ratio(hits, confusion.sum(axis=0))
    recall = _ratio(hits, confusion.sum(axis=1))
    # 2TP / (2TP + FP + FN) equals 2PR / (P + R) and is defined whenever the class occurs.
    f1 = _ratio(2 * hits, confusion.sum(axis=0) + confusion.sum(axis=1))
    return precision, recall, f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1: the papers' "macro average" (scikit-learn's ``macro``).

    The mean runs over the classes that occur in ``y_true`` or ``y_pred``, as scikit-learn
    does: a class absent from both has no F1 at all, and counting it as 0 would punish
    small test subsets for the classes they happen to lack.

    Example:

    >>> round(macro_f1(np.array([0, 1, 1]), np.array([0, 0, 1]), 3), 4)
    0.6667
    """
    return _macro_f1(confusion_matrix(y_true, y_pred, num_classes))


def _macro_f1(confusion: np.ndarray) -> float:
    occurring = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    return float(per_class_scores(confusion)[2][occurring].mean())


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.int64).ravel(), np.asarray(b, np.int64).ravel()
    if len(a) != len(b) or len(a) == 0:
        raise CopycatError(
            f"label arrays must be non-empty and of equal length; received {len(a)} and {len(b)}"
        )
    return a, b


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(
        numerator, denominator, out=np.zeros_like(numerator, np.float64), where=denominator > 0
    )


@dataclass(frozen=True)
class ModelScores:
    """One model's scores against the true labels.

    Attributes:
        accuracy: fraction correct.
        macro_f1: unweighted mean of per-class F1 (see :func:`macro_f1`).
        precision: ``(K,)`` per-class precision.
        recall: ``(K,)`` per-class recall.
        f1: ``(K,)`` per-class F1.
        confusion: ``(K, K)`` counts, rows true class, columns predicted class.
    """

    accuracy: float
    macro_f1: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    confusion: np.ndarray

    @classmethod
    def from_predictions(cls, y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> ModelScores:
        """Score ``y_pred`` against ``y_true``.

        Example:

        >>> ModelScores.from_predictions(np.array([0, 1]), np.array([0, 0]), 2).accuracy
        0.5
        """
        confusion = confusion_matrix(y_true, y_pred, num_classes)
        precision, recall, f1 = per_class_scores(confusion)
        return cls(
            accuracy=float(np.trace(confusion) / confusion.sum()),
            macro_f1=_macro_f1(confusion),
            precision=precision,
            recall=recall,
            f1=f1,
            confusion=confusion,
        )

    @property
    def support(self) -> np.ndarray:
        """``(K,)`` test images of each true class."""
        return self.confusion.sum(axis=1)

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {
                "precision": self.precision.tolist(),
                "recall": self.recall.tolist(),
                "f1": self.f1.tolist(),
                "support": self.support.tolist(),
            },
            "confusion": self.confusion.tolist(),
        }


@dataclass(frozen=True)
class Evaluation:
    """Target and copycat compared on one test set.

    Attributes:
        test_name: the test data spec.
        count: test images used.
        class_names: one name per class of the target's output (indices when unknown).
        target: the target's scores, or ``None`` for unlabelled test data.
        copycat: the copycat's scores, or ``None`` for unlabelled test data.
        agreement: fraction of images where both predict the same label.
        agreement_matrix: ``(K, K)`` counts, rows the target's label, columns the copycat's.
        queries: images the attack sent to the target to build the copycat, when known.
        target_sha256: the target file's identity.
        copycat_sha256: the copycat file's identity.
        arch: the copycat's architecture, when its metadata says.
    """

    test_name: str
    count: int
    class_names: list[str]
    target: ModelScores | None
    copycat: ModelScores | None
    agreement: float
    agreement_matrix: np.ndarray
    queries: int | None
    target_sha256: str
    copycat_sha256: str
    arch: str | None = None

    @property
    def labelled(self) -> bool:
        return self.target is not None

    @property
    def performance_ratio(self) -> float | None:
        """Copycat accuracy / target accuracy (``None`` without labels or a 0% target)."""
        return None if self.target is None else _safe_ratio(self.copycat.accuracy, self.target.accuracy)

    @property
    def macro_f1_ratio(self) -> float | None:
        """Copycat macro-F1 / target macro-F1 (``None`` without labels or a 0 target)."""
        return None if self.target is None else _safe_ratio(self.copycat.macro_f1, self.target.macro_f1)

    def to_dict(self) -> dict:
        """Nested JSON-ready values: ``target.accuracy`` is ``d["target"]["accuracy"]``.

        The keys are the same with or without labels; scores that need labels are ``None``.
        """
        models = {}
        for role, scores, sha256 in (
            ("target", self.target, self.target_sha256),
            ("copycat", self.copycat, self.copycat_sha256),
        ):
            models[role] = {
                **(scores.to_dict() if scores else {"accuracy": None, "macro_f1": None}),
                "sha256": sha256,
            }
        models["copycat"]["arch"] = self.arch
        return {
            "test_data": self.test_name,
            "count": self.count,
            "labelled": self.labelled,
            "class_names": list(self.class_names),
            **models,
            "performance_ratio": self.performance_ratio,
            "macro_f1_ratio": self.macro_f1_ratio,
            "agreement": self.agreement,
            "agreement_matrix": self.agreement_matrix.tolist(),
            "queries": self.queries,
        }


def _safe_ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def evaluate(
    target: Oracle,
    copycat: Oracle,
    test: LabelledImages,
    *,
    batch_size: int = 256,
    queries: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Query target and copycat with the same test images and compare their answers.

    Everything is checked before the first query: the two contracts must be
    interchangeable, the test images must have the target's image shape, the labels and
    class names must fit the target's classes, and a copycat that records which target it
    was stolen from must name this one.

    Args:
        target: the black-box target (no budget: these are test queries, not attack cost).
        copycat: the copycat, as an oracle too.
        test: the test images; labels give accuracies, without them only agreement.
        batch_size: images per query.
        queries: the attack's query count; default from the copycat's ONNX metadata.
        progress: called as ``progress(images_done, total)`` after each batch.

    Returns:
        An :class:`Evaluation`.

    Raises:
        CopycatError: any of the mismatches above, each saying what to fix.

    Usage::

        result = evaluate(OnnxOracle("target.onnx"), OnnxOracle("copycat.onnx"),
                          load_labelled("test.npz"), batch_size=128)
    """
    if batch_size < 1:
        raise CopycatError(f"batch_size must be >= 1; received {batch_size}")
    metadata = getattr(copycat, "metadata", {})  # provenance exists only where a file carries it
    _check_inputs(target, copycat, test, metadata)
    num_classes = target.contract.num_classes
    total = len(test.images)
    log.info("querying target and copycat with %d test images from %s", total, test.name)
    target_labels, copycat_labels = [], []
    for start in range(0, total, batch_size):
        batch = test.images[start : start + batch_size]
        target_labels.append(target.query(batch).labels)
        copycat_labels.append(copycat.query(batch).labels)
        if progress is not None:
            progress(start + len(batch), total)
    target_labels = np.concatenate(target_labels)
    copycat_labels = np.concatenate(copycat_labels)

    scores = {}
    if test.labels is not None:
        for role, predicted in (("target", target_labels), ("copycat", copycat_labels)):
            scores[role] = ModelScores.from_predictions(test.labels, predicted, num_classes)
    return Evaluation(
        test_name=test.name,
        count=total,
        class_names=list(test.class_names or (str(k) for k in range(num_classes))),
        target=scores.get("target"),
        copycat=scores.get("copycat"),
        agreement=agreement(target_labels, copycat_labels),
        agreement_matrix=confusion_matrix(target_labels, copycat_labels, num_classes),
        queries=queries if queries is not None else _recorded_queries(metadata),
        target_sha256=target.identity,
        copycat_sha256=copycat.identity,
        arch=metadata.get(ARCH_KEY),
    )


def _check_inputs(target: Oracle, copycat: Oracle, test: LabelledImages, metadata: dict) -> None:
    differences = target.contract.compatible_with(copycat.contract)
    if differences:
        raise CopycatError(
            f"COPYCAT does not fit TARGET's contract ({'; '.join(differences)}, target vs "
            "copycat); evaluate a copycat trained on this target's answers"
        )
    stolen_from = metadata.get(TARGET_SHA256_KEY)
    if stolen_from and stolen_from != target.identity:
        raise CopycatError(
            f"COPYCAT was stolen from another model (sha256 {stolen_from[:12]}...), not TARGET "
            f"(sha256 {target.identity[:12]}...); pass the target it was copied from"
        )
    if len(test.images) == 0:
        raise CopycatError(f"test data {test.name}: holds no images")
    expected = target.contract.image_shape
    if test.image_shape != expected:
        raise CopycatError(
            f"test data {test.name}: images are {_shape(test.image_shape)}, the target takes "
            f"{_shape(expected)}; give test images at the target's size (folders of image "
            "files are fitted automatically)"
        )
    num_classes = target.contract.num_classes
    if test.class_names is not None and len(test.class_names) != num_classes:
        raise CopycatError(
            f"test data {test.name}: has {len(test.class_names)} classes, the target outputs "
            f"{num_classes}; give one class subfolder per target class"
        )
    if test.labels is not None and test.labels.max() >= num_classes:
        raise CopycatError(
            f"test data {test.name}: labels go up to {test.labels.max()}, the target outputs "
            f"{num_classes} classes (labels 0..{num_classes - 1}); use the target's test set"
        )


def _shape(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))


def _recorded_queries(metadata: dict) -> int | None:
    text = metadata.get(QUERIES_KEY)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        log.warning("ignoring unreadable %s metadata %r", QUERIES_KEY, text)
        return None
