"""How a copycat is trained: :class:`TrainConfig` and the epochs rule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from copycat_tf.errors import CopycatError, check_positive_number, check_whole
from copycat_tf.models import OPTIMIZERS, PRETRAINED_TRAINING, check_name, default_training
from copycat_tf.models.pretrained import TRAINABLE_PARTS, check_weights
from copycat_tf.training.batch_memory import bounded_batch_size
from copycat_tf.training.data import (
    check_options,
)

#: Fewest optimizer steps a copycat gets when no epochs are given. A small fake dataset is
#: otherwise under-trained: at 10,000 records `small_cnn`'s 4 default epochs are 284 steps,
#: and 8 epochs copy a Fashion-MNIST target better (0.819 against 0.797 performance ratio,
#: three seeds; BENCHMARKS.md) while changing nothing on digits.
MIN_TRAINING_STEPS = 500
#: ... but never more than this many times the architecture's default epochs.
MAX_EPOCHS_FACTOR = 10
#: Least probability that makes the copycat's answer a pseudo-label: FixMatch's (Sohn et al.
#: 2020), where lower thresholds let more wrong labels in than they add right ones.
PSEUDO_LABEL_THRESHOLD = 0.95


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
        deterministic: make TensorFlow's ops deterministic, so one seed gives one copycat to
            the bit (``tf.config.experimental.enable_op_determinism``; slower, and it stays
            on for the rest of the process).
        finetune_epochs: epochs on the fine-tuning fake dataset (default ``epochs``).
        finetune_learning_rate: its learning rate (default a tenth of ``learning_rate``,
            so fine-tuning refines what the first stage learned rather than overwriting it).
        weights: start a ``keras.applications`` copycat from pretrained backbone weights:
            ``"imagenet"`` or a weights file of the backbone without its top (``None``:
            random). Training then follows the transfer schedule: ``head_epochs`` on the new
            head with the backbone frozen, then ``epochs`` fine-tuning at ``learning_rate``
            (defaults: :data:`~copycat_tf.models.PRETRAINED_TRAINING`).
        head_epochs: epochs of the frozen-backbone stage (default 2 with ``weights``, else 0).
        fine_tune: what the fine-tuning stage trains besides the head: ``"top"`` (the
            backbone's last block: four times faster on a CPU and fewer weights to fit to a
            small fake dataset) or ``"all"`` (the Keras guide's choice). BatchNorm stays in
            inference mode either way.
        semi_supervised: after the labelled stages, pseudo-label images the oracle never
            saw and train on them too (:mod:`copycat_tf.training.semi_supervised`); the
            images are passed to :func:`~copycat_tf.training.train_copycat` as ``unlabelled``.
        semi_epochs: epochs of that stage (default the main stage's ``epochs``, as resolved:
            it sees the fake dataset again, plus the new images), at ``finetune_learning_rate``.
        pseudo_label_threshold: an unlabelled image gets the copycat's class as its label
            only when the copycat's probability for it reaches this (FixMatch's 0.95).
        unlabelled_count: unlabelled images to pseudo-label (default the fake dataset's size).

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
    deterministic: bool = False
    finetune_epochs: int | None = None
    finetune_learning_rate: float | None = None
    weights: str | None = None
    head_epochs: int | None = None
    fine_tune: str = "top"
    semi_supervised: bool = False
    semi_epochs: int | None = None
    pseudo_label_threshold: float = PSEUDO_LABEL_THRESHOLD
    unlabelled_count: int | None = None

    def __post_init__(self):
        check_name(self.arch)
        check_weights(self.arch, self.weights)
        if self.fine_tune not in TRAINABLE_PARTS[1:]:
            raise CopycatError(f"fine_tune must be one of {', '.join(TRAINABLE_PARTS[1:])}; "
                               f"received {self.fine_tune!r}")
        check_options(self.labels, self.balance, self.validation_fraction)
        for name in ("epochs", "batch_size", "finetune_epochs", "semi_epochs", "unlabelled_count"):
            check_whole(name, getattr(self, name), optional=True)
        check_whole("head_epochs", self.head_epochs, minimum=0, optional=True)
        check_whole("seed", self.seed, minimum=0)
        for name in ("learning_rate", "finetune_learning_rate"):
            check_positive_number(name, getattr(self, name), optional=True)
        threshold = self.pseudo_label_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise CopycatError(f"pseudo-label threshold must lie in (0, 1], a probability; received {threshold!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise CopycatError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; received {self.optimizer!r}")

    def resolved(self, records: int | None = None, image_shape: tuple[int, int, int] | None = None) -> TrainConfig:
        """This config with every ``None`` replaced by its default.

        With ``image_shape`` and no ``batch_size`` given, the architecture's default batch
        is lowered until a batch fits the training memory bound
        (:func:`~copycat_tf.training.batch_memory.bounded_batch_size`).

        With ``records`` (the fake dataset's size) and no ``epochs`` given, the
        architecture's default epochs are raised until training takes at least
        :data:`MIN_TRAINING_STEPS` optimizer steps, up to :data:`MAX_EPOCHS_FACTOR` times
        the default; ``finetune_epochs`` still defaults to the architecture's epochs, and
        ``semi_epochs`` to the main stage's.

        Example:

        >>> TrainConfig().resolved(records=10_000).epochs  # 71 steps an epoch
        8
        >>> TrainConfig().resolved(records=30_000).epochs  # enough steps already
        4
        >>> TrainConfig(semi_supervised=True).resolved(records=10_000).semi_epochs
        8
        """
        settings = training_settings(self.arch, pretrained=self.weights is not None, epochs=self.epochs,
                                     batch_size=self.batch_size, learning_rate=self.learning_rate,
                                     optimizer=self.optimizer)
        default_epochs = settings["epochs"]
        if self.batch_size is None and image_shape is not None:
            settings["batch_size"] = bounded_batch_size(self.arch, image_shape, settings["batch_size"])
        if self.epochs is None and records is not None:
            trained = records - round(records * self.validation_fraction)
            steps_per_epoch = max(1, math.ceil(trained / settings["batch_size"]))
            wanted = math.ceil(MIN_TRAINING_STEPS / steps_per_epoch)
            settings["epochs"] = min(max(default_epochs, wanted), MAX_EPOCHS_FACTOR * default_epochs)
        return replace(
            self,
            **settings,
            finetune_epochs=self.finetune_epochs or default_epochs,
            semi_epochs=self.semi_epochs or settings["epochs"],
            finetune_learning_rate=self.finetune_learning_rate or settings["learning_rate"] / 10,
            head_epochs=(self.head_epochs if self.head_epochs is not None
                         else PRETRAINED_TRAINING.head_epochs if self.weights is not None else 0),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def training_settings(arch: str, pretrained: bool = False, **overrides) -> dict:
    """The architecture's training defaults, each replaced by its override when one is given.

    >>> training_settings("small_cnn", epochs=2)
    {'epochs': 2, 'batch_size': 128, 'learning_rate': 0.002, 'optimizer': 'adam'}
    """
    defaults = default_training(arch, pretrained)
    return {name: overrides.get(name) or value for name, value in defaults.items()}


def make_optimizer(name: str, learning_rate: float):
    """A fresh Keras optimizer: ``"sgd"`` (momentum 0.9) or Adam."""
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    return keras.optimizers.Adam(learning_rate)
