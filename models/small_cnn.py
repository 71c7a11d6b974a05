"""``small_cnn``: a CNN small enough to train a Fashion-MNIST target on two CPU cores."""

from __future__ import annotations

from copycat_tf.models._inputs import BN_MOMENTUM, pixel_input

# Two 2x poolings need at least 4 pixels a side to leave one.
MIN_SIZE = 4
#: Inputs of twice this size or more are averaged down towards it inside the model: the
#: two narrow conv blocks were made for 28-64 px, and at 240 px they held 13.6 GB RSS
#: training at batch 128 (BENCHMARKS.md, Large inputs).
WORKING_SIZE = 64


def build_small_cnn(input_shape: tuple[int, int, int], num_classes: int):
    """Two conv blocks (conv, BatchNorm, ReLU, max-pool), a dense layer, dropout, softmax.

    Reaches about 0.90 test accuracy on Fashion-MNIST in four epochs (about 30 s each on
    two CPU cores); narrow (16 and 32 filters) because on a CPU the time goes to the
    full-resolution layers. Large inputs (a 224 or 240 px vendor model) are averaged down
    to 64-127 px first (see :func:`~copycat_tf.models._inputs.pixel_input`).

    Usage::

        model = build_small_cnn((28, 28, 1), 10)
    """
    import keras
    from keras import layers

    inputs, x = pixel_input(input_shape, MIN_SIZE, WORKING_SIZE)
    for filters in (16, 32):
        # No conv bias: the BatchNorm right after it has its own offset.
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small_cnn")
