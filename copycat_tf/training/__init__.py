"""Train the models of the attack: reproduction targets, and copycats from fake datasets.

Files: ``config.py`` (:class:`TrainConfig`, the epochs rule), ``target.py``
(:func:`train_target`), ``copycat.py`` (:func:`train_copycat`, the learning step),
``run_state.py`` (a copycat run's resumable folder), ``semi_supervised.py`` (pseudo-labels
for images the oracle never labelled), ``data.py`` (fake dataset to
``tf.data``: balancing, validation hold-out, streaming), ``callbacks.py`` (checkpoints,
learning-rate schedule, epoch logging). TensorFlow is imported only when training starts.

Example:

>>> TrainConfig(arch="small_cnn").resolved(records=10_000).epochs
8
"""

from copycat_tf.training.config import (
    MAX_EPOCHS_FACTOR,
    MIN_TRAINING_STEPS,
    PSEUDO_LABEL_THRESHOLD,
    TrainConfig,
)
from copycat_tf.training.copycat import CopycatResult, train_copycat
from copycat_tf.training.data import BALANCE_MODES, IN_MEMORY_BYTES, LABEL_MODES
from copycat_tf.training.semi_supervised import unlabelled_seed
from copycat_tf.training.target import (
    TARGET_TEST_FRACTION,
    TargetResult,
    load_target_data,
    target_settings,
    train_target,
)

__all__ = ["BALANCE_MODES", "IN_MEMORY_BYTES", "LABEL_MODES", "MAX_EPOCHS_FACTOR", "MIN_TRAINING_STEPS",
           "PSEUDO_LABEL_THRESHOLD",
           "TARGET_TEST_FRACTION", "CopycatResult", "TargetResult", "TrainConfig", "load_target_data",
           "target_settings", "train_copycat", "train_target", "unlabelled_seed"]
