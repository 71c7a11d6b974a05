"""Evaluation: run the target and its copycat on the same test images and compare them.

Both models are reached the same way, as black boxes through :class:`~copycat_tf.oracle.Oracle`.
The scores are those of the Copycat CNN papers: accuracy and macro-F1 for each model, the
*performance ratio* (copycat accuracy / target accuracy, the headline of Correia-Silva et
al. 2018/2021) and the *agreement* (how often both predict the same label), with two
readings of the agreement that a dominant class cannot inflate: the *per-class agreement*
and Cohen's kappa. Unlabelled test images still give the three agreement figures.

The metrics are scikit-learn's (:mod:`sklearn.metrics`), behind checks that turn bad label
arrays into one-line errors; :func:`evaluate` returns an :class:`Evaluation` (data only;
:mod:`copycat_tf.report` turns it into JSON, Markdown and plots).

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
from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.oracle import Oracle
from copycat_tf.queries.batch_memory import query_batch_size

log = logging.getLogger(__name__)

# sklearn.metrics is imported inside the functions below: it loads SciPy (about a second),
# and `copycat-tf --help` imports this module (through the report stage, which the commands'
# output helpers use).


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of predictions equal to the true label.

    Example:

    >>> accuracy(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]))
    0.75
    """
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(*_pair(y_true, y_pred)))


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of images on which two models predict the same label.

    Example:

    >>> agreement(np.array([3, 1, 0, 0]), np.array([3, 1, 1, 2]))
    0.5
    """
    return accuracy(pred_a, pred_b)


def per_class_agreement(target_labels: np.ndarray, copycat_labels: np.ndarray) -> float:
    """Mean, over the classes the target answers, of the share of that class's images on which
    the copycat gives the same answer.

    Plain agreement is dominated by the target's most frequent answers: a copycat that
    always answers the target's majority class agrees on that class's share of the images,
    but its per-class agreement is 1 / (classes the target answers).

    Example:

    >>> per_class_agreement(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))  # agreement 0.75
    0.5
    """
    from sklearn.metrics import recall_score

    # Recall with the target's answers as the truth, over the classes the target gives (each
    # has images, so no share is undefined).
    target_labels, copycat_labels = _pair(target_labels, copycat_labels)
    return float(recall_score(target_labels, copycat_labels, labels=np.unique(target_labels),
                              average="macro", zero_division=0))


def cohen_kappa(target_labels: np.ndarray, copycat_labels: np.ndarray) -> float | None:
    """Cohen's kappa between the two models' answers: agreement beyond what chance gives.

    1 is full agreement, 0 what two models answering independently with the same label
    frequencies would reach, below 0 less than that. ``None`` when both models give one and
    the same answer to every image (chance then explains all agreement: kappa is 0 / 0).

    Example:

    >>> cohen_kappa(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]))
    1.0
    >>> cohen_kappa(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]))  # a constant copycat
    0.0
    >>> cohen_kappa(np.array([2, 2]), np.array([2, 2])) is None
    True
    """
    from sklearn.metrics import cohen_kappa_score

    target_labels, copycat_labels = _pair(target_labels, copycat_labels)
    if len(np.unique(np.concatenate([target_labels, copycat_labels]))) == 1:
        return None
    return float(cohen_kappa_score(target_labels, copycat_labels))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) label pairs: rows are true classes, columns predictions.

    Example:

    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)
    array([[1, 0],
           [1, 1]])
    """
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

    y_true, y_pred = _class_pair(y_true, y_pred, num_classes)
    return sklearn_confusion_matrix(y_true, y_pred, labels=range(num_classes))


def per_class_scores(y_true: np.ndarray, y_pred: np.ndarray,
                     num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of each of the ``num_classes`` classes (0 where undefined).

    Example:

    >>> precision, recall, f1 = per_class_scores(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)
    >>> precision.tolist(), recall.tolist()
    ([0.5, 1.0], [1.0, 0.5])
    """
    from sklearn.metrics import precision_recall_fscore_support

    y_true, y_pred = _class_pair(y_true, y_pred, num_classes)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=range(num_classes), zero_division=0
    )
    return precision, recall, f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1: the papers' "macro average" (scikit-learn's ``macro``).

    The mean runs over the classes that occur in ``y_true`` or ``y_pred`` (scikit-learn's
    default labels, hence no ``labels=range(num_classes)`` here): a class absent from both
    has no F1 at all, and counting it as 0 would punish small test subsets for the classes
    they happen to lack. ``num_classes`` bounds the labels.

    Example:

    >>> round(macro_f1(np.array([0, 1, 1]), np.array([0, 0, 1]), 3), 4)
    0.6667
    """
    from sklearn.metrics import f1_score

    y_true, y_pred = _class_pair(y_true, y_pred, num_classes)
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def _class_pair(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays checked like :func:`_pair`, and every label a class index below ``num_classes``
    (scikit-learn would silently leave other values out of a confusion matrix)."""
    y_true, y_pred = _pair(y_true, y_pred)
    for labels, what in ((y_true, "true"), (y_pred, "predicted")):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise CopycatError(
                f"{what} labels must lie in [0, {num_classes}); received values from "
                f"{labels.min()} to {labels.max()}"
            )
    return y_true, y_pred


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.int64).ravel(), np.asarray(b, np.int64).ravel()
    if len(a) != len(b) or len(a) == 0:
        raise CopycatError(
            f"label arrays must be non-empty and of equal length; received {len(a)} and {len(b)}"
        )
    return a, b


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
        precision, recall, f1 = per_class_scores(y_true, y_pred, num_classes)
        return cls(
            accuracy=accuracy(y_true, y_pred),
            macro_f1=macro_f1(y_true, y_pred, num_classes),
            precision=precision,
            recall=recall,
            f1=f1,
            confusion=confusion_matrix(y_true, y_pred, num_classes),
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
        per_class_agreement: the agreement within each class the target answers, averaged
            over those classes (see :func:`per_class_agreement`).
        kappa: Cohen's kappa between the two models' answers, ``None`` when undefined (see
            :func:`cohen_kappa`).
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
    per_class_agreement: float
    kappa: float | None
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
            "per_class_agreement": self.per_class_agreement,
            "kappa": self.kappa,
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
    batch_size: int | None = None,
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
        batch_size: images per query; default sized for the target's input by
            :func:`~copycat_tf.queries.batch_memory.query_batch_size`.
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
    check_whole("batch_size", batch_size, optional=True)
    batch_size = query_batch_size(target.contract.image_shape, batch_size, metered=target.metered)
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
        per_class_agreement=per_class_agreement(target_labels, copycat_labels),
        kappa=cohen_kappa(target_labels, copycat_labels),
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
