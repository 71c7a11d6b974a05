"""Scouts: short trainings between an adaptive strategy's rounds, under the run's TrainConfig.

A scout is a copycat trained for a few epochs on the answers bought so far, to choose the
next round's queries. It trains the way the copycat does (the run's architecture, labels,
batch, optimizer, determinism and devices), only shorter, from the previous scout's weights
and with no validation hold-out; a scout that diverges to NaN is an error, as for a copycat.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from copycat_tf.errors import CopycatError
from copycat_tf.models import build
from copycat_tf.models.pretrained import set_trainable
from copycat_tf.training.config import TrainConfig
from copycat_tf.training.copycat import compile_copycat
from copycat_tf.training.data import make_training_data
from copycat_tf.training.devices import training_strategy

log = logging.getLogger(__name__)


def train_scout(fakeset, path: str | os.PathLike, config: TrainConfig, *, epochs: int, learning_rate: float,
                start_from: str | os.PathLike | None = None, devices: int | str | None = None,
                progress: Callable[[int], None] | None = None):
    """Train a scout on ``fakeset`` and save it to ``path`` (a ``.keras`` file); return the model.

    Args:
        fakeset: the answers so far (a :class:`~copycat_tf.fakeset.FakeSet`).
        path: where the scout is saved (atomically); an existing file is loaded instead.
        config: the run's :class:`TrainConfig` (architecture, weights, labels, balance, batch,
            optimizer, seed, determinism); its epochs, learning rate and hold-out are not used.
            A pretrained scout trains its head only.
        epochs: epochs to train.
        learning_rate: the scout's constant learning rate.
        start_from: the previous scout to warm-start from (``None``: fresh weights).
        devices: GPUs of this machine to train on (as :func:`~copycat_tf.training.train_copycat`).
        progress: called with the epochs done after each epoch.

    Raises:
        CopycatError: training diverged to NaN.
    """
    import keras

    from copycat_tf.training.callbacks import EpochProgress, save_model_atomically

    path = Path(path)
    if path.is_file():
        return keras.models.load_model(path, safe_mode=True)
    config = replace(config.resolved(records=fakeset.count, image_shape=fakeset.image_shape),
                     validation_fraction=0.0)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    strategy = training_strategy(devices)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = (keras.models.load_model(start_from, safe_mode=True) if start_from is not None
                 else build(config.arch, fakeset.image_shape, fakeset.num_classes, config.weights))
        if config.weights is not None:
            set_trainable(model, "head")  # a scout only chooses queries: pretrained features suffice
        compile_copycat(model, config, learning_rate)
    data = make_training_data(fakeset, batch_size=config.batch_size, labels=config.labels,
                              balance=config.balance, validation_fraction=0.0, seed=config.seed)
    history = model.fit(data.train, epochs=epochs, shuffle=False, verbose=0,  # the dataset shuffles itself
                        callbacks=[keras.callbacks.TerminateOnNaN(),
                                   *([EpochProgress(progress)] if progress is not None else [])])
    losses = history.history.get("loss", [])
    if not losses or any(loss != loss for loss in losses):  # NaN is the one value unequal to itself
        raise CopycatError(f"a scout diverged to NaN while training on {fakeset.count} records; lower the "
                           f"scouts' learning rate (was {learning_rate:g}) and rerun to resume")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model_atomically(model, path)
    return model
