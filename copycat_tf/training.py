"""Train the models of the attack: reproduction targets, and copycats from fake datasets.

:func:`train_target` trains a classifier on labelled data and exports it as the black-box
ONNX target (with a JSON card). :func:`train_copycat` is the attack's learning step
(Correia-Silva et al., "Copycat CNN: Stealing Knowledge by Persuading Confession with Random
Non-Labeled Data", IJCNN 2018, https://arxiv.org/abs/1806.05476): fit a copycat on the
oracle's answers, optionally fine-tune it on a second fake dataset from the same oracle
(the paper's NPD then PD-SL setting), and export it under the target's own input contract
so it is a drop-in replacement.

A copycat run owns its output folder::

    DIR/training.json     config, fake dataset identities, per-epoch history, finished flag
    DIR/checkpoints/      main.keras, finetune.keras: the last good epoch of each stage
    DIR/logs/             TensorBoard curves (when tensorboard is installed)
    DIR/copycat.keras     the final Keras model
    DIR/copycat.onnx      the exported copycat

Rerunning the same call after a kill resumes after the last finished epoch; rerunning it
after completion returns the finished copycat.

Example:

>>> fakeset = FakeSet.open("runs/fake")                                      # doctest: +SKIP
>>> result = train_copycat(fakeset, "runs/copycat", TrainConfig(arch="vgg16"))  # doctest: +SKIP
>>> result.onnx_path, result.validation_agreement                            # doctest: +SKIP
(PosixPath('runs/copycat/copycat.onnx'), 0.93)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from copycat_tf._version import __version__
from copycat_tf.datasets import NAMED, LabelledImages, load_labelled
from copycat_tf.errors import CopycatError
from copycat_tf.files import UnreadableJson, foreign_files, read_json, write_json
from copycat_tf.models import OPTIMIZERS, build, check_name, default_training
from copycat_tf.training_data import (
    IN_MEMORY_BYTES,
    check_options,
    make_training_data,
    require_probabilities,
)

log = logging.getLogger(__name__)

#: Share of a folder or ``.npz`` dataset held out to test a target (seeded).
TARGET_TEST_FRACTION = 0.2
TRAINING_JSON = "training.json"
STATE_FORMAT = "copycat-tf.training"
STATE_VERSION = 1
PARITY_IMAGES = 32
# What a rerun must share with the run it resumes; epochs and learning rates may change
# (more epochs, or a lower rate after a divergence).
_RESUME_KEYS = ("arch", "batch_size", "optimizer", "labels", "balance", "augment",
                "validation_fraction", "seed")
# With the partial files a kill can leave behind.
_OWN_FILES = (TRAINING_JSON, "copycat.keras", "copycat.onnx",
              TRAINING_JSON + ".tmp", "copycat.partial.keras", "copycat.onnx.tmp")
_OWN_FOLDERS = ("checkpoints", "logs")


# ------------------------------------------------------------------------------ targets


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

    Example:

    >>> train, test = load_target_data("digits")  # doctest: +SKIP
    >>> len(train.images), len(test.images)       # doctest: +SKIP
    (1438, 359)
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


def train_target(
    dataset: str | LabelledImages,
    arch: str,
    out_path: str | os.PathLike,
    *,
    test: LabelledImages | None = None,
    image_shape: tuple[int, int, int] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    fit_verbose: int = 0,
) -> TargetResult:
    """Train a classifier to play the black-box target, export it, and measure it.

    Writes ``out_path`` (ONNX, raw float32 NHWC pixels in, probabilities out) and the card
    ``out_path.with_suffix(".json")``: dataset, arch, test accuracy, classes, epochs,
    sha256 and image shape. The test accuracy is measured through the exported file with
    onnxruntime, as an attacker's evaluation would see it.

    Args:
        dataset: a dataset spec for :func:`load_target_data`, or training images.
        arch: a :data:`copycat_tf.models.ARCHITECTURES` name.
        out_path: the ``.onnx`` file to write.
        test: test images, required when ``dataset`` is a :class:`LabelledImages`.
        image_shape: ``(H, W, C)`` for folder datasets.
        epochs, batch_size, learning_rate: default from
            :func:`copycat_tf.models.default_training`.
        seed: weights, shuffling and the test hold-out.
        fit_verbose: Keras ``fit`` verbosity (0 silent; epochs are logged either way).

    Raises:
        CopycatError: unknown dataset or architecture, missing labels, divergence.

    Example:

    >>> result = train_target("fashion-mnist", "small_cnn", "target.onnx")  # doctest: +SKIP
    >>> round(result.test_accuracy, 2)                                      # doctest: +SKIP
    0.9
    """
    check_name(arch)
    _check_whole("epochs", epochs, minimum=1)
    _check_whole("batch_size", batch_size, minimum=1)
    _check_whole("seed", seed, minimum=0)
    _check_rate("learning_rate", learning_rate)
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise CopycatError(f"target file must end in .onnx; received {str(out_path)!r}")
    settings = _settings(arch, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
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

    from copycat_tf.callbacks import EpochLogger, cosine_decay
    from copycat_tf.export import export_onnx, native_contract

    keras.utils.set_random_seed(seed)
    model = build(arch, train.image_shape, len(classes))
    model.compile(
        optimizer=_optimizer(settings["optimizer"], settings["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log.info(
        "training a %s target on %d %s images (%d classes, %s), %d epochs",
        arch, len(train.images), train.name, len(classes), "x".join(map(str, train.image_shape)),
        settings["epochs"],
    )
    started = time.monotonic()
    history = model.fit(
        train.images.astype(np.float32), train.labels,
        epochs=settings["epochs"], batch_size=settings["batch_size"], shuffle=True,
        callbacks=[cosine_decay(settings["learning_rate"], settings["epochs"]),
                   keras.callbacks.TerminateOnNaN(), EpochLogger(settings["epochs"], "target")],
        verbose=fit_verbose,
    ).history
    if not all(math.isfinite(v) for v in history["loss"]):
        raise CopycatError(
            f"training the {arch} target diverged to NaN; lower the learning rate "
            f"(received {settings['learning_rate']:g})"
        )
    seconds = time.monotonic() - started
    metadata = {
        "copycat_tf.role": "target",
        "copycat_tf.dataset": spec,
        "copycat_tf.arch": arch,
        "copycat_tf.class_names": json.dumps(classes),
    }
    export = export_onnx(
        model, out_path, native_contract(train.image_shape, len(classes)),
        metadata=metadata, parity_images=test.images[:PARITY_IMAGES],
    )
    accuracy = _onnx_accuracy(out_path, test)
    from copycat_tf.oracle import file_sha256

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
    from copycat_tf.oracle import OnnxOracle

    oracle = OnnxOracle(path)
    predicted = np.concatenate([
        oracle.query(test.images[start : start + chunk]).labels
        for start in range(0, len(test.images), chunk)
    ])
    return float(np.mean(predicted == test.labels))


# ----------------------------------------------------------------------------- copycats


#: Fewest optimizer steps a copycat gets when no epochs are given. A small fake dataset is
#: otherwise under-trained: at 10,000 records `small_cnn`'s 4 default epochs are 284 steps,
#: and 8 epochs copy a Fashion-MNIST target better (0.819 against 0.797 performance ratio,
#: three seeds; BENCHMARKS.md) while changing nothing on digits.
MIN_TRAINING_STEPS = 500
#: ... but never more than this many times the architecture's default epochs.
MAX_EPOCHS_FACTOR = 10


@dataclass(frozen=True)
class TrainConfig:
    """How to train a copycat; ``None`` fields take the architecture's defaults.

    Args:
        arch: a :data:`copycat_tf.models.ARCHITECTURES` name.
        epochs: epochs on the main fake dataset (default: the architecture's, raised on
            small fake datasets, see :meth:`resolved`).
        batch_size: records per batch.
        learning_rate: the starting learning rate; it decays along a half cosine towards
            0 over the epochs.
        optimizer: ``"adam"`` or ``"sgd"`` (with momentum 0.9).
        labels: ``"hard"`` (the paper: the oracle's classes) or ``"soft"`` (its
            probabilities; the fake dataset must have kept them).
        balance: ``"none"``; ``"replicate"`` (the 2021 paper: repeat records of rare
            classes until each class matches the largest); ``"weights"`` (weight the loss
            per class instead); ``"sqrt-weights"`` (tempered weights, ``sqrt(max / n_c)``).
        augment: random shifts and zooms of training images.
        validation_fraction: share of records held out to measure agreement with the
            oracle, chosen by record index with ``seed``.
        seed: weights, shuffling, validation choice, replication, augmentation.
        finetune_epochs: epochs on the fine-tuning fake dataset (default ``epochs``).
        finetune_learning_rate: its learning rate (default a tenth of ``learning_rate``,
            so fine-tuning refines what the first stage learned rather than overwriting it).

    Example:

    >>> TrainConfig(arch="small_cnn", balance="replicate").resolved().epochs
    4
    """

    arch: str = "small_cnn"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    optimizer: str | None = None
    labels: str = "hard"
    balance: str = "none"
    augment: bool = False
    validation_fraction: float = 0.1
    seed: int = 0
    finetune_epochs: int | None = None
    finetune_learning_rate: float | None = None

    def __post_init__(self):
        check_name(self.arch)
        check_options(self.labels, self.balance, self.validation_fraction)
        for name in ("epochs", "batch_size", "finetune_epochs"):
            _check_whole(name, getattr(self, name), minimum=1)
        _check_whole("seed", self.seed, minimum=0)
        for name in ("learning_rate", "finetune_learning_rate"):
            _check_rate(name, getattr(self, name))
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise CopycatError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; received {self.optimizer!r}")

    def resolved(self, records: int | None = None) -> TrainConfig:
        """This config with every ``None`` replaced by its default.

        With ``records`` (the fake dataset's size) and no ``epochs`` given, the
        architecture's default epochs are raised until training takes at least
        :data:`MIN_TRAINING_STEPS` optimizer steps, up to :data:`MAX_EPOCHS_FACTOR` times
        the default; ``finetune_epochs`` still defaults to the architecture's epochs.

        Example:

        >>> TrainConfig().resolved(records=10_000).epochs  # 71 steps an epoch
        8
        >>> TrainConfig().resolved(records=30_000).epochs  # enough steps already
        4
        """
        settings = _settings(self.arch, epochs=self.epochs, batch_size=self.batch_size,
                             learning_rate=self.learning_rate, optimizer=self.optimizer)
        default_epochs = settings["epochs"]
        if self.epochs is None and records is not None:
            trained = records - round(records * self.validation_fraction)
            steps_per_epoch = max(1, math.ceil(trained / settings["batch_size"]))
            wanted = math.ceil(MIN_TRAINING_STEPS / steps_per_epoch)
            settings["epochs"] = min(max(default_epochs, wanted), MAX_EPOCHS_FACTOR * default_epochs)
        return replace(
            self,
            **settings,
            finetune_epochs=self.finetune_epochs or default_epochs,
            finetune_learning_rate=self.finetune_learning_rate or settings["learning_rate"] / 10,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _check_whole(name: str, value, *, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise CopycatError(f"{name.replace('_', '-')} must be a whole number >= {minimum}; received {value!r}")


def _check_rate(name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CopycatError(f"{name.replace('_', '-')} must be a number > 0; received {value!r}")


def _settings(arch: str, **overrides) -> dict:
    defaults = default_training(arch)
    return {name: overrides.get(name) or value for name, value in defaults.items()}


def _optimizer(name: str, learning_rate: float):
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    return keras.optimizers.Adam(learning_rate)


@dataclass(frozen=True)
class CopycatResult:
    """A trained, exported copycat.

    Attributes:
        out_dir: the run's folder.
        onnx_path: ``out_dir/copycat.onnx``.
        keras_path: ``out_dir/copycat.keras``.
        history: stage (``"main"``, ``"finetune"``) -> metric -> value per epoch.
        validation_agreement: share of held-out fake-dataset records (of the last stage)
            where the copycat agrees with the oracle; ``None`` without validation.
        max_abs_diff: largest |keras - onnx| probability difference on fake-dataset images.
        already_trained: the folder held a finished run and nothing was trained.
        model: the Keras model (read from ``keras_path`` on first use when the run was
            already finished, so a skipped run never loads TensorFlow).
    """

    out_dir: Path
    onnx_path: Path
    keras_path: Path
    history: dict[str, dict[str, list[float]]]
    validation_agreement: float | None
    max_abs_diff: float | None
    already_trained: bool = False
    _model: object = field(default=None, repr=False, compare=False)

    @property
    def model(self):
        if self._model is None:
            object.__setattr__(self, "_model", _load_model(self.keras_path))
        return self._model


@dataclass(frozen=True)
class _Stage:
    name: str
    fakeset: object
    epochs: int
    learning_rate: float
    what: str  # how log lines call it
    initial_model: Path | None = None


def train_copycat(
    fakeset,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    finetune=None,
    initial_model: str | os.PathLike | None = None,
    overwrite: bool = False,
    callbacks: Sequence = (),
    fit_verbose: int = 0,
    in_memory_bytes: int = IN_MEMORY_BYTES,
) -> CopycatResult:
    """Train a copycat on a fake dataset, fine-tune it if asked, and export it as ONNX.

    Args:
        fakeset: the :class:`~copycat_tf.fakeset.FakeSet` to learn from (complete).
        out_dir: the run's folder (see the module docstring); a rerun resumes there.
        config: a :class:`TrainConfig` (default: ``small_cnn`` with its defaults).
        finetune: a second fake dataset labelled by the same oracle (e.g. problem-domain
            images), trained on after ``fakeset`` starting from its model.
        initial_model: a ``.keras`` copycat to start from instead of random weights (an
            adaptive strategy's last round); loaded with ``safe_mode``.
        overwrite: delete an earlier run's files in ``out_dir`` (only those) and start over.
        callbacks: more Keras callbacks, run after the built-in ones.
        fit_verbose: Keras ``fit`` verbosity (0 silent; epochs are logged either way).
        in_memory_bytes: fake datasets up to this size train from memory, larger stream.

    Returns:
        A :class:`CopycatResult`; ``already_trained`` when ``out_dir`` held this finished run.

    Raises:
        CopycatError: an incomplete fake dataset, a fine-tuning set from another oracle,
            a folder holding a different run, or training diverging to NaN (the last good
            epoch stays in ``out_dir/checkpoints``; rerun with a lower learning rate to
            resume from it).

    Example:

    >>> result = train_copycat(FakeSet.open("runs/npd"), "runs/copycat",
    ...                        TrainConfig(arch="vgg16"), finetune=FakeSet.open("runs/pd"))  # doctest: +SKIP
    """
    config = (config or TrainConfig()).resolved(records=fakeset.count)
    _check_fakesets(fakeset, finetune, config)
    initial_model = None if initial_model is None else Path(initial_model)
    stages = [_Stage("main", fakeset, config.epochs, config.learning_rate, "copycat", initial_model)]
    if finetune is not None:
        stages.append(_Stage("finetune", finetune, config.finetune_epochs,
                             config.finetune_learning_rate, "fine-tune"))
    out_dir = Path(out_dir)
    for stage in stages:
        folder = Path(stage.fakeset.directory).resolve()
        if out_dir.resolve().is_relative_to(folder) or folder.is_relative_to(out_dir.resolve()):
            raise CopycatError(
                f"output folder {out_dir} and the fake dataset {stage.fakeset.directory} overlap; "
                "a copycat run never writes into its input, so choose another output folder"
            )
    run = _TrainingRun.open(out_dir, config, stages, overwrite)
    if run.finished:
        log.info("%s already holds this trained copycat; pass overwrite to train it again", run.out_dir)
        return run.result(already_trained=True)

    model = None
    for stage in stages:
        if not run.stage(stage.name)["finished"]:
            model = _train_stage(run, stage, model, config, callbacks, fit_verbose, in_memory_bytes)
    if model is None:  # every stage was done; only the export was missing
        model = _load_model(run.checkpoint(stages[-1].name))
    return _export(run, model, fakeset, stages)


def _check_fakesets(fakeset, finetune, config: TrainConfig) -> None:
    """Refuse what cannot train a drop-in copycat, before any TensorFlow loads."""
    for candidate, option in ((fakeset, "FAKESET_DIR"), (finetune, "--finetune")):
        if candidate is None:
            continue
        if not candidate.complete:
            raise CopycatError(
                f"fake dataset {candidate.directory} ({option}) is incomplete: "
                f"{candidate.count} of {candidate.manifest['budget']} records; finish it by "
                "rerunning the same `copycat-tf label` command"
            )
        if config.labels == "soft":
            require_probabilities(candidate, option)
    if finetune is None:
        return
    if finetune.oracle_sha256 != fakeset.oracle_sha256:
        raise CopycatError(
            f"--finetune {finetune.directory} was labelled by another oracle (sha256 "
            f"{finetune.oracle_sha256[:12]}...) than {fakeset.directory} "
            f"({fakeset.oracle_sha256[:12]}...); fine-tuning needs answers from the same target"
        )
    if finetune.contract != fakeset.contract:
        problems = fakeset.contract.compatible_with(finetune.contract) or ["preprocessing, layout or output"]
        raise CopycatError(
            f"--finetune {finetune.directory} was labelled under another input/output contract than "
            f"{fakeset.directory} ({'; '.join(problems)} differ); label both with the same options"
        )


def _train_stage(run, stage: _Stage, model, config: TrainConfig, callbacks, fit_verbose, in_memory_bytes):
    """Train one stage to its epoch count, resuming after its last good epoch."""
    import keras

    from copycat_tf.callbacks import EpochLogger, GoodEpochCheckpoint, cosine_decay

    keras.utils.set_random_seed(config.seed)
    done = run.stage(stage.name)["epochs_done"]
    if done:
        model = _load_model(run.checkpoint(stage.name))
    else:
        if model is None and stage.name == "finetune":
            model = _load_model(run.checkpoint("main"))
        elif model is None and stage.initial_model is not None:
            model = _load_model(stage.initial_model)
        elif model is None:
            model = build(config.arch, stage.fakeset.image_shape, stage.fakeset.num_classes)
        # Compiled afresh: a new model needs an optimizer, and fine-tuning starts its own at
        # its own rate rather than inheriting the first stage's momentum.
        _compile_copycat(model, config, stage.learning_rate)
    data = make_training_data(
        stage.fakeset, batch_size=config.batch_size, labels=config.labels, balance=config.balance,
        augment=config.augment, validation_fraction=config.validation_fraction, seed=config.seed,
        in_memory_bytes=in_memory_bytes,
    )
    log.info(
        "%s %s on %s: %d records to train on, %d held out (%s); epochs %d-%d, batch %d, %s from %g",
        stage.what, config.arch, stage.fakeset.directory, data.train_records, data.validation_records,
        "in memory" if data.in_memory else "streamed from disk", done + 1, stage.epochs,
        config.batch_size, config.optimizer, stage.learning_rate,
    )
    run.begin_stage(stage.name)
    checkpoint = GoodEpochCheckpoint(
        run.checkpoint(stage.name),
        on_saved=lambda epoch, logs: run.record_epoch(stage.name, epoch, logs),
    )
    with warnings.catch_warnings():
        # A streamed dataset's length is unknown until its first pass ends, which Keras
        # reports as "ran out of data"; here that is the expected end of an epoch.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            data.train,
            validation_data=data.validation,
            epochs=stage.epochs,
            initial_epoch=done,
            shuffle=False,  # the dataset shuffles itself each epoch
            callbacks=[cosine_decay(stage.learning_rate, stage.epochs), checkpoint,
                       EpochLogger(stage.epochs, stage.what),
                       *_tensorboard(run.out_dir / "logs" / stage.name), *callbacks],
            verbose=fit_verbose,
        )
    if checkpoint.diverged_epoch is not None:
        raise CopycatError(_divergence_message(run, stage, checkpoint.diverged_epoch))
    run.finish_stage(stage.name)
    return model


def _divergence_message(run, stage: _Stage, epoch: int) -> str:
    good = run.stage(stage.name)["epochs_done"]
    if good:
        kept = f"last good model kept at {run.checkpoint(stage.name)} (epoch {good})"
    elif stage.name == "finetune":
        kept = f"last good model kept at {run.checkpoint('main')} (end of the first stage)"
    else:
        kept = "no epoch finished before it, so there is no good model to keep"
    return (
        f"training diverged to NaN at epoch {epoch}; {kept}; lower the learning rate "
        f"(was {stage.learning_rate:g}) and rerun to resume"
    )


def _compile_copycat(model, config: TrainConfig, learning_rate: float) -> None:
    import keras

    if config.labels == "soft":
        loss = keras.losses.CategoricalCrossentropy()
        agreement = keras.metrics.CategoricalAccuracy(name="agreement")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        agreement = keras.metrics.SparseCategoricalAccuracy(name="agreement")
    model.compile(optimizer=_optimizer(config.optimizer, learning_rate), loss=loss, metrics=[agreement])


def _tensorboard(log_dir: Path) -> list:
    import keras

    if importlib.util.find_spec("tensorboard") is None:
        log.warning("tensorboard is not installed, so no training curves go to %s "
                    "(pip install tensorboard)", log_dir)
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)]


def _load_model(path: Path):
    import keras

    if not path.is_file():
        raise CopycatError(
            f"{path} is missing, so the run cannot resume; rerun with --overwrite to start again"
        )
    return keras.models.load_model(path, safe_mode=True)


def _export(run, model, fakeset, stages: list[_Stage]) -> CopycatResult:
    from copycat_tf.callbacks import save_model_atomically
    from copycat_tf.export import export_onnx

    save_model_atomically(model, run.out_dir / "copycat.keras")
    metadata = {
        "copycat_tf.role": "copycat",
        "copycat_tf.target_sha256": fakeset.oracle_sha256,
        "copycat_tf.queries": str(sum(stage.fakeset.queries_spent for stage in stages)),
        "copycat_tf.arch": run.config["arch"],
    }
    parity_images = next(fakeset.iter_shards())["images"][:PARITY_IMAGES]
    export = export_onnx(model, run.out_dir / "copycat.onnx", fakeset.contract,
                         metadata=metadata, parity_images=parity_images)
    run.finish(export.max_abs_diff)
    log.info("copycat exported to %s (max |keras - onnx| %.1e)", export.path, export.max_abs_diff)
    return run.result(model=model)


class _TrainingRun:
    """A copycat run's folder: ``training.json`` and where checkpoints and logs go.

    The state file is rewritten (atomically) after every good epoch, after the checkpoint
    it describes is on disk, so it never claims an epoch that was not saved.
    """

    def __init__(self, out_dir: Path, state: dict):
        self.out_dir = out_dir
        self.state = state

    @classmethod
    def open(cls, out_dir: Path, config: TrainConfig, stages: list[_Stage], overwrite: bool) -> _TrainingRun:
        if out_dir.exists() and not out_dir.is_dir():
            raise CopycatError(f"output folder {out_dir} is a file; give a folder for the copycat")
        if overwrite:
            _remove_own_files(out_dir)
        wanted = {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "tool_version": __version__,
            "config": config.to_dict(),
            "stages": {s.name: _new_stage_state(s) for s in stages},
            "finished": False,
            "validation_agreement": None,
            "export_max_abs_diff": None,
        }
        stored = _read_state(out_dir)
        if stored is None and not overwrite and out_dir.is_dir():
            foreign = foreign_files(out_dir, _OWN_FILES + _OWN_FOLDERS)
            if foreign:
                raise CopycatError(
                    f"output folder {out_dir} is not empty ({foreign}) and holds no copycat run; choose "
                    "another folder, or pass --overwrite to write beside those files (it deletes "
                    "only copycat-tf's own)"
                )
        state = wanted if stored is None else _resumed_state(out_dir, stored, wanted)
        if state["finished"] and not all((out_dir / name).is_file() for name in ("copycat.keras", "copycat.onnx")):
            state = {**state, "finished": False}  # trained, but the final files are gone: export again
        run = cls(out_dir, state)
        if not run.finished:
            (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            run.save()
        return run

    @property
    def finished(self) -> bool:
        return bool(self.state["finished"])

    @property
    def config(self) -> dict:
        return self.state["config"]

    def stage(self, name: str) -> dict:
        return self.state["stages"][name]

    def checkpoint(self, name: str) -> Path:
        return self.out_dir / "checkpoints" / f"{name}.keras"

    def begin_stage(self, name: str) -> None:
        stage = self.stage(name)
        stage["starts"].append(stage["epochs_done"])
        self.save()

    def record_epoch(self, name: str, epoch: int, logs: dict) -> None:
        stage = self.stage(name)
        stage["epochs_done"] = epoch
        for metric, value in logs.items():
            # A kill between the checkpoint and this file replays an epoch: overwrite it.
            stage["history"][metric] = stage["history"].get(metric, [])[: epoch - 1] + [value]
        self.save()

    def finish_stage(self, name: str) -> None:
        self.stage(name)["finished"] = True
        self.save()

    def finish(self, max_abs_diff: float | None) -> None:
        last = self.state["stages"][list(self.state["stages"])[-1]]
        agreement = last["history"].get("val_agreement")
        self.state.update(
            finished=True,
            validation_agreement=agreement[-1] if agreement else None,
            export_max_abs_diff=max_abs_diff,
        )
        self.save()

    def result(self, *, model=None, already_trained: bool = False) -> CopycatResult:
        return CopycatResult(
            out_dir=self.out_dir,
            onnx_path=self.out_dir / "copycat.onnx",
            keras_path=self.out_dir / "copycat.keras",
            history={name: s["history"] for name, s in self.state["stages"].items()},
            validation_agreement=self.state["validation_agreement"],
            max_abs_diff=self.state["export_max_abs_diff"],
            already_trained=already_trained,
            _model=model,
        )

    def save(self) -> None:
        write_json(self.out_dir / TRAINING_JSON, self.state)


def _new_stage_state(stage: _Stage) -> dict:
    fakeset = stage.fakeset
    return {
        "fakeset": {
            "directory": str(fakeset.directory),
            "oracle_sha256": fakeset.oracle_sha256,
            "count": fakeset.count,
            "queries_spent": fakeset.queries_spent,
            "label_histogram": fakeset.label_histogram,
        },
        "initial_model": None if stage.initial_model is None else _initial_model_sha256(stage.initial_model),
        "epochs": stage.epochs,
        "learning_rate": stage.learning_rate,
        "epochs_done": 0,
        "starts": [],
        "history": {},
        "finished": False,
    }


def _initial_model_sha256(path: Path) -> str:
    from copycat_tf.oracle import file_sha256

    if not path.is_file():
        raise CopycatError(f"initial model {path} does not exist")
    return file_sha256(path)


def _read_state(out_dir: Path) -> dict | None:
    path = out_dir / TRAINING_JSON
    try:
        state = read_json(path)
    except UnreadableJson as exc:
        raise CopycatError(f"{path} is unreadable ({exc}); rerun with --overwrite to start again") from exc
    if state is None:
        return None
    version = (state.get("format"), state.get("format_version")) if isinstance(state, dict) else None
    if version != (STATE_FORMAT, STATE_VERSION):
        raise CopycatError(
            f"{path} is not a copycat-tf {STATE_VERSION} training state; choose another output "
            "folder or rerun with --overwrite"
        )
    return state


def _same_fakeset(a: dict, b: dict) -> bool:
    # The folder may have moved; the records may not have changed.
    return {k: v for k, v in a.items() if k != "directory"} == {k: v for k, v in b.items() if k != "directory"}


def _resumed_state(out_dir: Path, stored: dict, wanted: dict) -> dict:
    """The stored state, checked against what is asked for and updated with new targets."""
    fix = "rerun with the same options to resume, or pass --overwrite to start again"
    old, new = stored["config"], wanted["config"]
    differences = [f"{key} {old.get(key)!r} vs now {new[key]!r}" for key in _RESUME_KEYS if old.get(key) != new[key]]
    for name in ("main", "finetune"):
        before, after = stored["stages"].get(name), wanted["stages"].get(name)
        if before is None and after is not None and name == "finetune":
            continue  # adding a fine-tuning stage to a trained copycat is allowed
        if (before is None) != (after is None):
            differences.append(
                f"{'with' if before else 'without'} a fine-tuning fake dataset vs now "
                f"{'with' if after else 'without'}"
            )
        elif before is not None and not _same_fakeset(before["fakeset"], after["fakeset"]):
            differences.append(f"{name} fake dataset {before['fakeset']['directory']} vs now "
                               f"{after['fakeset']['directory']} (other records)")
        elif before is not None and before.get("initial_model") != after.get("initial_model"):
            differences.append(f"{name} stage starting from another initial model")
    if differences:
        raise CopycatError(f"output folder {out_dir} holds a copycat run with other settings "
                           f"({'; '.join(differences)}); {fix}")
    if stored["finished"] and set(stored["stages"]) == set(wanted["stages"]):
        return stored
    state = {**stored, "config": new, "finished": False}
    state["stages"] = {}
    for name, target in wanted["stages"].items():
        stage = stored["stages"].get(name, target)
        if not stage["finished"]:
            stage = {**stage, "epochs": target["epochs"], "learning_rate": target["learning_rate"],
                     "fakeset": target["fakeset"]}
        state["stages"][name] = stage
    return state


def _remove_own_files(out_dir: Path) -> None:
    """``overwrite``: delete what a copycat run writes, nothing else."""
    for name in _OWN_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for name in _OWN_FOLDERS:
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name)


