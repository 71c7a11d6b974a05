"""The default training batch is bounded by an estimate of its memory (large inputs)."""

import pytest

from copycat_tf.training import TrainConfig
from copycat_tf.training.batch_memory import (
    BATCH_MEMORY_BYTES,
    BYTES_PER_OUTPUT_FLOAT,
    bounded_batch_size,
    output_floats,
)


def test_output_floats_count_every_layer_of_a_nested_backbone():
    # VGG16's 13 conv layers at 224 px output about 15 M floats an image (the keras.applications
    # model sits inside ours as one layer; its layers must be counted, not just its output).
    assert 14e6 < output_floats("vgg16", (224, 224, 3)) < 17e6
    # small_cnn at 28x28x1: input and scaling (784 each), two blocks, the head.
    assert 40_000 < output_floats("small_cnn", (28, 28, 1)) < 80_000


def test_small_inputs_keep_the_architectures_batch_and_large_ones_get_a_fitting_power_of_two():
    assert bounded_batch_size("small_cnn", (28, 28, 1), 128) == 128
    batch = bounded_batch_size("resnet50", (224, 224, 3), 32)
    per_image = output_floats("resnet50", (224, 224, 3)) * BYTES_PER_OUTPUT_FLOAT
    assert batch in (1, 2, 4, 8, 16) and batch * per_image <= BATCH_MEMORY_BYTES < 2 * batch * per_image
    # A tighter bound halves again; nothing goes below one image.
    assert bounded_batch_size("resnet50", (224, 224, 3), 32, memory_bytes=BATCH_MEMORY_BYTES // 4) == batch // 4
    assert bounded_batch_size("resnet50", (224, 224, 3), 32, memory_bytes=1) == 1


@pytest.mark.parametrize("given, expected", [(None, 4), (32, 32)])
def test_the_bound_applies_to_the_default_batch_only(given, expected):
    config = TrainConfig(arch="resnet50", batch_size=given).resolved(records=1000, image_shape=(224, 224, 3))
    assert config.batch_size == expected
    assert TrainConfig(arch="resnet50").resolved(records=1000).batch_size == 32  # no shape: no bound
