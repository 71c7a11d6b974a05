"""The attack's learning step: fit a copycat on the oracle's answers and export it.

:func:`train_copycat` (Correia-Silva et al., "Copycat CNN: Stealing Knowledge by Persuading
Confession with Random Non-Labeled Data", IJCNN 2018, https://arxiv.org/abs/1806.05476)
fits a copycat on a fake dataset, optionally fine-tunes it on a second one from the same
oracle (the paper's NPD then PD-SL setting) and on images the oracle never labelled
(:mod:`copycat_tf.training.semi_supervised`), and exports it under the target's own input
contract so it is a drop-in replacement. The run's folder is kept by
:mod:`copycat_tf.training.run_state`; a rerun after a kill resumes after the last good epoch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from copycat_tf.contract import ARCH_KEY, QUERIES_KEY, ROLE_KEY, TARGET_SHA256_KEY
from copycat_tf.errors import CopycatError
from copycat_tf.execution import Execution
from copycat_tf.export import PARITY_IMAGES, export_onnx
from copycat_tf.models import PRETRAINED_TRAINING, build
from copycat_tf.models.pretrained import set_trainable
from copycat_tf.training.config import TrainConfig, make_optimizer
from copycat_tf.training.data import (
    IN_MEMORY_BYTES,
    make_training_data,
    require_probabilities,
)
from copycat_tf.training.devices import training_strategy
from copycat_tf.training.run_state import CopycatResult, TrainingRun, TrainingStage, load_keras_model
from copycat_tf.training.semi_supervised import semi_supervised_stage, with_pseudo_labels

log = logging.getLogger(__name__)




def train_copycat(
    fakeset,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    finetune=None,
    initial_model: str | os.PathLike | None = None,
    callbacks: Sequence = (),
    in_memory_bytes: int = IN_MEMORY_BYTES,
    execution: Execution | None = None,
    unlabelled=None,
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
        callbacks: more Keras callbacks, run after the built-in ones.
        in_memory_bytes: fake datasets up to this size train from memory, larger stream.
        execution: :class:`~copycat_tf.execution.Execution`: ``overwrite`` deletes an earlier
            run's files in ``out_dir`` (only those) and starts over; ``fit_verbose`` is Keras
            ``fit`` verbosity (0 silent; epochs are logged either way); ``devices`` trains on
            this many GPUs of this machine (or ``"all"``) under a ``MirroredStrategy``
            (:mod:`copycat_tf.training.devices`; ``None``: one device): the global batch stays
            ``config.batch_size``, and a run resumes on any number.
        unlabelled: a :class:`~copycat_tf.queries.QuerySource` of images the oracle never
            labelled, for ``config.semi_supervised`` (and only for it): a last stage trains on
            the fake dataset plus those the copycat labels confidently. No query is spent.

    Returns:
        A :class:`CopycatResult`; ``already_trained`` when ``out_dir`` held this finished run.

    Raises:
        CopycatError: an incomplete fake dataset, a fine-tuning set from another oracle,
            semi-supervised training without unlabelled images (or the reverse),
            a folder holding a different run, or training diverging to NaN (the last good
            epoch stays in ``out_dir/checkpoints``; rerun with a lower learning rate to
            resume from it).

    Usage::

        result = train_copycat(FakeSet.open("runs/npd"), "runs/copycat",
                               TrainConfig(arch="vgg16"), finetune=FakeSet.open("runs/pd"))
    """
    config = (config or TrainConfig()).resolved(records=fakeset.count, image_shape=fakeset.image_shape)
    _check_fakesets(fakeset, finetune, config)
    stages = _stages(fakeset, finetune, config, None if initial_model is None else Path(initial_model), unlabelled)
    out_dir = Path(out_dir)
    for stage in stages:
        folder = Path(stage.fakeset.directory).resolve()
        if out_dir.resolve().is_relative_to(folder) or folder.is_relative_to(out_dir.resolve()):
            raise CopycatError(
                f"output folder {out_dir} and the fake dataset {stage.fakeset.directory} overlap; "
                "a copycat run never writes into its input, so choose another output folder"
            )
    execution = execution or Execution()
    run = TrainingRun.open(out_dir, config, stages, execution.overwrite)
    if run.finished:
        log.info("copycat complete in %s, reused (--overwrite trains it again)", run.out_dir)
        return run.result(already_trained=True)

    strategy = training_strategy(execution.devices)
    model = None
    for stage in stages:
        if not run.stage(stage.name)["finished"]:
            model = _train_stage(run, stage, model, config, callbacks, execution.fit_verbose, in_memory_bytes,
                                 strategy, progress=_epochs_reported(execution, stage))
    if model is None or strategy is not None:
        # Every stage was done and only the export was missing; or the model's weights are
        # mirrored, and its last checkpoint is the same model on one device to export.
        model = load_keras_model(run.checkpoint(stages[-1].name))
    return _export(run, model, fakeset, stages)


def _stages(fakeset, finetune, config: TrainConfig, initial_model: Path | None, unlabelled) -> list[TrainingStage]:
    """The run's stages: with pretrained weights, first the new head on the frozen backbone
    (the transfer schedule); then the main fake dataset; then the fine-tuning one if given;
    then, semi-supervised, the last of them plus pseudo-labelled ``unlabelled`` images."""
    fine_tune = config.fine_tune if config.weights is not None else None
    stages = []
    if config.head_epochs:
        stages.append(TrainingStage("head", fakeset, config.head_epochs, PRETRAINED_TRAINING.head_learning_rate,
                                    "head (backbone frozen)", initial_model, trainable="head"))
    stages.append(TrainingStage("main", fakeset, config.epochs, config.learning_rate, "copycat",
                                None if stages else initial_model, after=stages[-1].name if stages else None,
                                trainable=fine_tune))
    if finetune is not None:
        stages.append(TrainingStage("finetune", finetune, config.finetune_epochs, config.finetune_learning_rate,
                                    "fine-tune", after="main", trainable=fine_tune))
    if config.semi_supervised or unlabelled is not None:
        stages.append(semi_supervised_stage(stages[-1], config, unlabelled))
    return stages


def _check_fakesets(fakeset, finetune, config: TrainConfig) -> None:
    """Refuse what cannot train a drop-in copycat, before any TensorFlow loads."""
    for candidate, option in ((fakeset, "FAKESET_DIR"), (finetune, "--finetune")):
        if candidate is None:
            continue
        if not candidate.complete:
            raise CopycatError(
                f"fake dataset {candidate.directory} ({option}) is incomplete: "
                f"{candidate.count} of {candidate.budget} records; finish it by "
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


def _epochs_reported(execution: Execution, stage: TrainingStage):
    return lambda done: execution.step(f"training {stage.what}", done, stage.epochs, "epoch")


def _train_stage(run, stage: TrainingStage, model, config: TrainConfig, callbacks, fit_verbose, in_memory_bytes,
                 strategy=None, progress=None):
    """Train one stage to its epoch count, resuming after its last good epoch; ``progress`` is
    called with the epochs done, first before training starts."""
    import keras

    from copycat_tf.training.callbacks import (
        EpochLogger,
        EpochProgress,
        GoodEpochCheckpoint,
        cosine_decay,
    )

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    done = run.stage(stage.name)["epochs_done"]
    # Under several devices, weights and optimizer state are made in the strategy's scope.
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if done:
            model = load_keras_model(run.checkpoint(stage.name))
        else:
            if model is None and stage.after is not None:
                model = load_keras_model(run.checkpoint(stage.after))
            elif model is None and stage.initial_model is not None:
                model = load_keras_model(stage.initial_model)
            elif model is None:
                model = build(config.arch, stage.fakeset.image_shape, stage.fakeset.num_classes, config.weights)
            if stage.trainable is not None:
                set_trainable(model, stage.trainable)
            # Compiled afresh: a new model needs an optimizer, and each stage starts its own at
            # its own rate rather than inheriting the previous stage's momentum.
            compile_copycat(model, config, stage.learning_rate)
    data = make_training_data(
        stage.fakeset, batch_size=config.batch_size, labels=config.labels, balance=config.balance,
        augment=config.augment, validation_fraction=config.validation_fraction, seed=config.seed,
        in_memory_bytes=in_memory_bytes,
    )
    if stage.unlabelled is not None:
        data = with_pseudo_labels(run, stage, model, data, config)
    if progress is not None:
        progress(done)
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
                       # The bar first: a console closes a finished bar before the last epoch's line.
                       *([EpochProgress(progress)] if progress else []), EpochLogger(stage.epochs, stage.what),
                       *_tensorboard(run.out_dir / "logs" / stage.name), *callbacks],
            verbose=fit_verbose,
        )
    if checkpoint.diverged_epoch is not None:
        raise CopycatError(_divergence_message(run, stage, checkpoint.diverged_epoch))
    run.finish_stage(stage.name)
    return model


def _divergence_message(run, stage: TrainingStage, epoch: int) -> str:
    good = run.stage(stage.name)["epochs_done"]
    if good:
        kept = f"last good model kept at {run.checkpoint(stage.name)} (epoch {good})"
    elif stage.after is not None:
        kept = f"last good model kept at {run.checkpoint(stage.after)} (end of the {stage.after} stage)"
    else:
        kept = "no epoch finished before it, so there is no good model to keep"
    return (
        f"training diverged to NaN at epoch {epoch}; {kept}; lower the learning rate "
        f"(was {stage.learning_rate:g}) and rerun to resume"
    )


def compile_copycat(model, config: TrainConfig, learning_rate: float) -> None:
    """Compile ``model`` as a copycat under ``config``: its labels' loss, its optimizer at
    ``learning_rate``, and agreement with the oracle as the metric."""
    import keras

    if config.labels == "soft":
        loss = keras.losses.CategoricalCrossentropy()
        agreement = keras.metrics.CategoricalAccuracy(name="agreement")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        agreement = keras.metrics.SparseCategoricalAccuracy(name="agreement")
    model.compile(optimizer=make_optimizer(config.optimizer, learning_rate), loss=loss, metrics=[agreement])


def _tensorboard(log_dir: Path) -> list:
    import keras

    if importlib.util.find_spec("tensorboard") is None:
        log.warning("tensorboard is not installed, so no training curves go to %s "
                    "(pip install tensorboard)", log_dir)
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)]


def _export(run, model, fakeset, stages: list[TrainingStage]) -> CopycatResult:
    from copycat_tf.training.callbacks import save_model_atomically

    save_model_atomically(model, run.out_dir / "copycat.keras")
    metadata = {
        ROLE_KEY: "copycat",
        TARGET_SHA256_KEY: fakeset.oracle_sha256,
        # The semi-supervised stage reuses a labelled stage's fake dataset and buys nothing.
        QUERIES_KEY: str(sum(stage.fakeset.queries_spent for stage in stages if stage.unlabelled is None)),
        ARCH_KEY: run.config["arch"],
    }
    parity_images = next(fakeset.iter_shards())["images"][:PARITY_IMAGES]
    export = export_onnx(model, run.out_dir / "copycat.onnx", fakeset.contract,
                         metadata=metadata, parity_images=parity_images)
    run.finish(export.max_abs_diff)
    log.info("copycat exported to %s (max |keras - onnx| %.1e)", export.path, export.max_abs_diff)
    return run.result(model=model)
