"""Keras callbacks for training: keep the last good epoch on disk, log epochs as lines, report them.

Imported only inside training functions, so importing :mod:`copycat_tf.training` (and
the CLI) never loads TensorFlow.

Usage::

    checkpoint = GoodEpochCheckpoint("checkpoints/main.keras", on_saved=record)
    model.fit(data, epochs=10, callbacks=[checkpoint, EpochLogger(10, "copycat")])
    checkpoint.diverged_epoch  # None, or the 1-based epoch whose loss went NaN
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras

log = logging.getLogger("copycat_tf.training")


def save_model_atomically(model, path: Path) -> None:
    """``model.save`` through a temporary file, so a kill leaves the old file or the new one."""
    path = Path(path)
    partial = path.with_name(path.stem + ".partial.keras")  # Keras insists on the suffix
    model.save(partial)
    os.replace(partial, path)


def cosine_decay(learning_rate: float, epochs: int) -> keras.callbacks.LearningRateScheduler:
    """Set each epoch's learning rate on a half cosine from ``learning_rate`` towards 0.

    A decaying rate reaches in four epochs what a constant one needs five for. Set per
    epoch from the epoch number alone, so a resumed run picks up exactly where it was, and
    a rerun with another learning rate (say after a divergence) takes effect at once.

    Usage::

        schedule = cosine_decay(1e-3, epochs=4)  # rates ~0.96, 0.69, 0.31, 0.04 x 1e-3
    """

    def rate(epoch, current=None):
        return learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch + 0.5) / epochs))

    return keras.callbacks.LearningRateScheduler(rate)


class GoodEpochCheckpoint(keras.callbacks.Callback):
    """After each epoch whose numbers are all finite, save the model (with its optimizer
    state) and report the epoch; after one that went NaN or infinite, stop training.

    The check runs once per epoch on the epoch's mean loss, which a single NaN batch
    poisons, so training steps never wait on a per-batch host sync.

    Args:
        path: the ``.keras`` file that always holds the last good epoch.
        on_saved: called with ``(epoch, logs)`` (1-based epoch, float logs) once the model
            is safely on disk.

    Attributes:
        diverged_epoch: the 1-based epoch that diverged, or ``None``.
    """

    def __init__(self, path: str | os.PathLike, on_saved: Callable[[int, dict], None]):
        super().__init__()
        self.path = Path(path)
        self.on_saved = on_saved
        self.diverged_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = {name: float(value) for name, value in (logs or {}).items()}
        if not all(math.isfinite(value) for value in logs.values()):
            self.diverged_epoch = epoch + 1
            self.model.stop_training = True
            return
        save_model_atomically(self.model, self.path)
        self.on_saved(epoch + 1, logs)


class EpochLogger(keras.callbacks.Callback):
    """Log one line per epoch: ``copycat epoch 3/10: loss 0.412, agreement 0.881 (12 s)``.

    By default every epoch's line is logged at DEBUG (shown with ``copycat-tf -v``) and the
    last one at INFO, so a default run says one line per training.

    Args:
        epochs: the epoch count to show after the slash.
        what: what is being trained (``"target"``, ``"copycat"``, ``"fine-tune"``).
        every_epoch: log every epoch at INFO (a long training that nothing else reports on).
    """

    def __init__(self, epochs: int, what: str, *, every_epoch: bool = False):
        super().__init__()
        self.epochs = epochs
        self.what = what
        self.every_epoch = every_epoch
        self._started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        numbers = ", ".join(
            f"{name.replace('_', ' ')} {float(value):.4g}"
            for name, value in (logs or {}).items()
            if name != "learning_rate"
        )
        log.log(
            logging.INFO if self.every_epoch or epoch + 1 == self.epochs else logging.DEBUG,
            "%s epoch %d/%d: %s (%.0f s)",
            self.what, epoch + 1, self.epochs, numbers, time.monotonic() - self._started,
        )


class EpochProgress(keras.callbacks.Callback):
    """Call ``report(epochs_done)`` after each epoch (1-based, counting a resumed run's
    earlier epochs), for a progress bar; once per epoch, so no training step waits on it.

    Usage::

        model.fit(data, epochs=10, callbacks=[EpochProgress(lambda done: print(f"{done}/10"))])
    """

    def __init__(self, report: Callable[[int], None]):
        super().__init__()
        self.report = report

    def on_epoch_end(self, epoch, logs=None):
        self.report(epoch + 1)
