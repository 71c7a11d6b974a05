"""The front every architecture shares: raw ``[0, 255]`` pixels in, model-ready tensor out."""

from __future__ import annotations

# BatchNorm's moving statistics must settle within the few hundred steps a small fake
# dataset gives; Keras's default momentum (0.99) leaves them far off, and the model then
# predicts much worse than it trained.
BN_MOMENTUM = 0.9


def pixel_input(input_shape: tuple[int, int, int], min_size: int = 1, working_size: int | None = None):
    """A Keras input for raw pixels, scaled to ``[0, 1]`` and resized to the layers' range.

    The scaling lives in the model (not in a data pipeline) so that exported files take
    raw pixels; weights are never ImageNet's, so ImageNet-specific preprocessing would
    buy nothing.

    Args:
        input_shape: ``(height, width, channels)``.
        min_size: the smallest height and width the layers after this one accept;
            smaller images are resized up (bilinear), larger ones pass unchanged.
        working_size: images at least twice this size a side are averaged down by a
            whole factor (``min(height, width) // working_size``), so a 240 px vendor
            model's copycat trains at 80 px: memory and time follow the size the layers
            were made for, not the target's, and the exported file still takes the
            target's full-size pixels (an ``AveragePool`` in ONNX).

    Returns:
        ``(inputs, x)``: the ``keras.Input`` and the scaled (and resized) tensor.

    Usage::

        inputs, x = pixel_input((8, 8, 1), min_size=32)
        tuple(x.shape)
        # (None, 32, 32, 1)
        inputs, x = pixel_input((240, 240, 3), working_size=64)
        tuple(x.shape)
        # (None, 80, 80, 3)
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
    factor = min(height, width) // working_size if working_size else 1
    if factor >= 2:
        x = keras.layers.AveragePooling2D(factor, name="downscale")(x)
    return inputs, x
