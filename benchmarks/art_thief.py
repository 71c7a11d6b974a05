"""The thief every ART reference attack trains (``benchmarks.research.art_reference``,
``benchmarks.perf.steal_vs_art``); ART is optional: ``pip install adversarial-robustness-toolbox``."""

from __future__ import annotations


def art_thief(arch: str, shape, classes: int, seed: int = 0):
    """An ART ``TensorFlowV2Classifier`` around a fresh ``copycat_tf.models.build(arch)``
    model, trained with the architecture's default Adam learning rate (the thief every ART
    reference attack here trains)."""
    import keras
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    from copycat_tf.models import build, default_training

    keras.utils.set_random_seed(seed)
    model = build(arch, shape, classes)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()  # ART reduces its one-hot labels for it
    optimizer = keras.optimizers.Adam(default_training(arch)["learning_rate"])

    @tf.function
    def train_step(model, images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))

    return TensorFlowV2Classifier(model, nb_classes=classes, input_shape=shape, loss_object=loss_fn,
                                  optimizer=optimizer, train_step=train_step, clip_values=(0, 255))
