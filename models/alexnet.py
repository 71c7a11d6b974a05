"""``alexnet``: AlexNet's layer plan (Krizhevsky et al., 2012), sized for any input.

The 2021 Copycat CNN study (Correia-Silva et al., "Copycat CNN: Are random non-Labeled data
enough to steal knowledge from black-box models?") copies targets across architectures,
AlexNet among them.
"""

from __future__ import annotations

from copycat_tf.models._inputs import BN_MOMENTUM, pixel_input

# Three stride-2 poolings of a 32x32 image still leave a 4x4 map.
MIN_SIZE = 32
# From this size up the first layer is AlexNet's own 11x11 stride-4 convolution; below it a
# stride-4 layer would discard most of a small image, so it is 5x5 stride 1 instead.
LARGE_INPUT = 128


def build_alexnet(input_shape: tuple[int, int, int], num_classes: int):
    """Five conv layers (96/64, 192, 384, 256, 256 filters), three max-pools, two dense
    layers of 1,024 units with dropout, softmax. BatchNorm replaces local response
    normalisation, which Keras does not have and which later work found unnecessary.

    Usage::

        model = build_alexnet((32, 32, 3), 10)
    """
    import keras
    from keras import layers

    inputs, x = pixel_input(input_shape, MIN_SIZE)
    if min(input_shape[:2]) >= LARGE_INPUT:
        x = layers.Conv2D(96, 11, strides=4, padding="same", activation="relu")(x)
    else:
        x = layers.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Conv2D(192, 5, padding="same", activation="relu")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for filters in (384, 256, 256):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    for _ in range(2):
        x = layers.Dense(1024, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="alexnet")
