"""Reproduction targets: train a classifier on labelled data and export it as a black-box ONNX file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copycat_tf._version import __version__
from copycat_tf.contract import ARCH_KEY, CLASS_NAMES_KEY, DATASET_KEY, ROLE_KEY
from copycat_tf.datasets import NAMED, LabelledImages, load_labelled
from copycat_tf.errors import CopycatError
from copycat_tf.export import PARITY_IMAGES, export_onnx, native_contract
from copycat_tf.files import file_sha256, write_json
from copycat_tf.models import build
from copycat_tf.oracle import OnnxOracle
from copycat_tf.training.config import TrainConfig, make_optimizer, training_settings

log = logging.getLogger(__name__)


#: Share of a folder or ``.npz`` dataset held out to test a target (seeded).
TARGET_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class TargetResult:
    """A trained, exported reproduction target.

    Attributes:
        path: the ONNX file.
        card_path: its JSON card (``path`` with a ``.json`` suffix).
        test_accuracy: accuracy on the test images, measured through the ONNX file.
        card: the card's contents.
        max_abs_diff: largest |keras - onnx| probability difference on test images.
        history: Keras training history (metric -> value per epoch).
    """

    path: Path
    card_path: Path
    test_accuracy: float
    card: dict
    max_abs_diff: float | None
    history: dict


def load_target_data(
    dataset: str, *, image_shape: tuple[int, int, int] | None = None, seed: int = 0
) -> tuple[LabelledImages, LabelledImages]:
    """Training and test images for a target.

    Args:
        dataset: ``fashion-mnist``, ``digits`` or ``mnist`` (their own train/test splits),
            a ``.npz`` file with ``x``/``y`` arrays, or a folder of class subfolders; the
            last two get a seeded :data:`TARGET_TEST_FRACTION` test hold-out.
        image_shape: ``(H, W, C)`` to fit folder images to.
        seed: the hold-out choice.

    Returns:
        ``(train, test)``.

    Usage::

        train, test = load_target_data("digits")
        len(train.images), len(test.images)
        # (1438, 359)
    """
    name, has_split, _ = dataset.partition(":")
    if name in NAMED:
        if has_split:
            raise CopycatError(
                f"dataset {dataset!r}: give the name alone ({name!r}); the target trains on "
                "its train split and is measured on its test split"
            )
        return load_labelled(f"{name}:train"), load_labelled(f"{name}:test")
    data = load_labelled(dataset, image_shape=image_shape)
    if data.labels is None:
        raise CopycatError(
            f"dataset {dataset}: has no labels; a target needs a folder of class subfolders "
            "or a .npz file with a 'y' array"
        )
    return _hold_out(data, TARGET_TEST_FRACTION, seed)


def _hold_out(data: LabelledImages, fraction: float, seed: int):
    count = len(data.images)
    if count < 2:
        raise CopycatError(f"dataset {data.name}: {count} image(s); a target needs at least 2")
    order = np.random.default_rng(seed).permutation(count)
    test_count = min(max(1, int(round(fraction * count))), count - 1)
    parts = order[test_count:], order[:test_count]
    return tuple(
        LabelledImages(data.images[chosen], data.labels[chosen], data.class_names, data.name)
        for chosen in parts
    )


def target_settings(dataset: str, config: TrainConfig) -> dict:
    """How :func:`train_target` would train a target on ``dataset`` under ``config``, as its
    card records it: a card holding the same was trained the same way.

    >>> target_settings("fashion-mnist", TrainConfig(arch="small_cnn", epochs=2, seed=1))
    {'dataset': 'fashion-mnist', 'arch': 'small_cnn', 'epochs': 2, 'batch_size': 128, 'learning_rate': 0.002, 'seed': 1}
    """
    settings = training_settings(config.arch, epochs=config.epochs, batch_size=config.batch_size,
                                 learning_rate=config.learning_rate, optimizer=config.optimizer)
    return {"dataset": dataset, "arch": config.arch, "epochs": settings["epochs"],
            "batch_size": settings["batch_size"], "learning_rate": settings["learning_rate"], "seed": config.seed}


def train_target(
    dataset: str | LabelledImages,
    out_path: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    test: LabelledImages | None = None,
    image_shape: tuple[int, int, int] | None = None,
    fit_verbose: int = 0,
) -> TargetResult:
    """Train a classifier to play the black-box target, export it, and measure it.

    Writes ``out_path`` (ONNX, raw float32 NHWC pixels in, probabilities out) and the card
    ``out_path.with_suffix(".json")``: dataset, arch, test accuracy, classes, epochs,
    sha256 and image shape. The test accuracy is measured through the exported file with
    onnxruntime, as an attacker's evaluation would see it.

    Args:
        dataset: a dataset spec for :func:`load_target_data`, or training images.
        out_path: the ``.onnx`` file to write.
        config: a :class:`TrainConfig`: its ``arch``, ``epochs``, ``batch_size``,
            ``learning_rate``, ``optimizer`` (each defaulting to the architecture's
            :func:`copycat_tf.models.default_training`) and ``seed`` (weights, shuffling and
            the test hold-out); the copycat-only fields are not used.
        test: test images, required when ``dataset`` is a :class:`LabelledImages`.
        image_shape: ``(H, W, C)`` for folder datasets.
        fit_verbose: Keras ``fit`` verbosity (0 silent; epochs are logged either way).

    Raises:
        CopycatError: unknown dataset or architecture, missing labels, divergence.

    Usage::

        result = train_target("fashion-mnist", "target.onnx", TrainConfig(arch="small_cnn"))
        round(result.test_accuracy, 2)
        # 0.9
    """
    config = config or TrainConfig()  # checked when made: arch, epochs, batch, rate, seed
    arch, seed = config.arch, config.seed
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise CopycatError(f"target file must end in .onnx; received {str(out_path)!r}")
    settings = training_settings(arch, epochs=config.epochs, batch_size=config.batch_size,
                                 learning_rate=config.learning_rate, optimizer=config.optimizer)
    spec = dataset if isinstance(dataset, str) else dataset.name
    if isinstance(dataset, str):
        if test is not None:
            raise CopycatError("pass test images only with training images, not with a dataset spec")
        train, test = load_target_data(dataset, image_shape=image_shape, seed=seed)
    elif test is None:
        raise CopycatError("training images need test images too (test=...)")
    else:
        train = dataset
    classes = _class_names(train, test)

    import keras

    from copycat_tf.training.callbacks import EpochLogger, cosine_decay

    keras.utils.set_random_seed(seed)
    model = build(arch, train.image_shape, len(classes))
    model.compile(
        optimizer=make_optimizer(settings["optimizer"], settings["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log.info(
        "training a %s target on %d %s images (%d classes, %s), %d epoch%s",
        arch, len(train.images), train.name, len(classes), "x".join(map(str, train.image_shape)),
        settings["epochs"], "" if settings["epochs"] == 1 else "s",
    )
    started = time.monotonic()
    history = model.fit(
        train.images.astype(np.float32), train.labels,
        epochs=settings["epochs"], batch_size=settings["batch_size"], shuffle=True,
        callbacks=[cosine_decay(settings["learning_rate"], settings["epochs"]),
                   keras.callbacks.TerminateOnNaN(),
                   # A target trains for minutes with nothing else to show: every epoch says so.
                   EpochLogger(settings["epochs"], "target", every_epoch=True)],
        verbose=fit_verbose,
    ).history
    if not all(math.isfinite(v) for v in history["loss"]):
        raise CopycatError(
            f"training the {arch} target diverged to NaN; lower the learning rate "
            f"(received {settings['learning_rate']:g})"
        )
    seconds = time.monotonic() - started
    metadata = {
        ROLE_KEY: "target",
        DATASET_KEY: spec,
        ARCH_KEY: arch,
        CLASS_NAMES_KEY: json.dumps(classes),
    }
    export = export_onnx(
        model, out_path, native_contract(train.image_shape, len(classes)),
        metadata=metadata, parity_images=test.images[:PARITY_IMAGES],
    )
    accuracy = _onnx_accuracy(out_path, test)

    card = {
        "dataset": spec,
        "arch": arch,
        "test_accuracy": accuracy,
        "test_images": len(test.images),
        "train_images": len(train.images),
        "classes": classes,
        "epochs": settings["epochs"],
        "batch_size": settings["batch_size"],
        "learning_rate": settings["learning_rate"],
        "seed": seed,
        "training_seconds": round(seconds, 1),
        "image_shape": list(train.image_shape),
        "sha256": file_sha256(out_path),
        "tool_version": __version__,
    }
    card_path = out_path.with_suffix(".json")
    write_json(card_path, card)
    log.info("target test accuracy %.4f on %d images (through %s)", accuracy, len(test.images), out_path)
    return TargetResult(out_path, card_path, accuracy, card, export.max_abs_diff,
                        {k: [float(v) for v in vs] for k, vs in history.items()})


def _class_names(train: LabelledImages, test: LabelledImages) -> list[str]:
    for part, what in ((train, "training"), (test, "test")):
        if part.labels is None:
            raise CopycatError(f"{what} images of {part.name} have no labels")
    if train.image_shape != test.image_shape:
        raise CopycatError(
            f"training images are {train.image_shape} but test images are {test.image_shape}"
        )
    count = max(int(train.labels.max()), int(test.labels.max())) + 1
    if train.class_names is not None:
        if count > len(train.class_names):
            raise CopycatError(
                f"{train.name}: label {count - 1} but only {len(train.class_names)} class names"
            )
        return list(train.class_names)
    if count < 2:
        raise CopycatError(f"{train.name}: all images have label 0; a classifier needs 2 classes")
    return [str(i) for i in range(count)]


def _onnx_accuracy(path: Path, test: LabelledImages, chunk: int = 1024) -> float:

    oracle = OnnxOracle(path)
    predicted = np.concatenate([
        oracle.query(test.images[start : start + chunk]).labels
        for start in range(0, len(test.images), chunk)
    ])
    return float(np.mean(predicted == test.labels))
