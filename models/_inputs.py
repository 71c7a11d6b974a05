"""The front every architecture shares: raw ``[0, 255]`` pixels in, model-ready tensor out."""

from __future__ import annotations

# BatchNorm's moving statistics must settle within the few hundred steps a small fake
# dataset gives; Keras's default momentum (0.99) leaves them far off, and the model then
# predicts much worse than it trained.
BN_MOMENTUM = 0.9


def pixel_input(input_shape: tuple[int, int, int], min_size: int = 1):
    """A Keras input for raw pixels, scaled to ``[0, 1]`` and upsampled to ``min_size``.

    The scaling lives in the model (not in a data pipeline) so that exported files take
    raw pixels; weights are never ImageNet's, so ImageNet-specific preprocessing would
    buy nothing.

    Args:
        input_shape: ``(height, width, channels)``.
        min_size: the smallest height and width the layers after this one accept;
            smaller images are resized up (bilinear), larger ones pass unchanged.

    Returns:
        ``(inputs, x)``: the ``keras.Input`` and the scaled (and resized) tensor.

    Usage::

        inputs, x = pixel_input((8, 8, 1), min_size=32)
        tuple(x.shape)
        # (None, 32, 32, 1)
    """
    import keras

    inputs = keras.Input(shape=input_shape, name="pixels")
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale_to_unit")(inputs)
    height, width, _ = input_shape
    if height < min_size or width < min_size:
        x = keras.layers.Resizing(
            max(height, min_size), max(width, min_size), interpolation="bilinear",
            name="upsample",
        )(x)
    return inputs, x
