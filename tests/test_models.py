"""Architectures: every one builds for grayscale and RGB inputs of any size and returns
probabilities; names, shapes and class counts are checked; models survive a safe reload and
an ONNX export with parity."""

import numpy as np
import pytest

from copycat_tf.errors import CopycatError
from copycat_tf.models import (
    ARCHITECTURES,
    OPTIMIZERS,
    build,
    check_name,
    default_training,
)

SHAPES = [(8, 8, 1), (40, 36, 3)]  # below every minimum size (upsampled), and above it


def _pixels(shape, count=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *shape)).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=["gray8x8", "rgb40x36"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_gives_probabilities(name, shape):
    model = build(name, shape, 7)
    assert tuple(model.input_shape) == (None, *shape)
    probabilities = model.predict(_pixels(shape), verbose=0)
    assert probabilities.shape == (3, 7)
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_defaults_suit_each_architecture(name):
    settings = default_training(name)
    assert set(settings) == {"epochs", "batch_size", "learning_rate", "optimizer"}
    assert settings["epochs"] >= 1 and settings["batch_size"] >= 1
    assert 0 < settings["learning_rate"] < 1
    assert settings["optimizer"] in OPTIMIZERS


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(CopycatError) as error:
        build("lenet", (28, 28, 1), 10)
    assert "'lenet'" in str(error.value)
    for name in ARCHITECTURES:
        assert name in str(error.value)
    with pytest.raises(CopycatError):
        default_training("lenet")
    assert check_name("vgg16") == "vgg16"


@pytest.mark.parametrize("shape, classes, fragment", [
    ((28, 28, 2), 10, "1 or 3 channels"),
    ((28, 28), 10, "(height, width, channels)"),
    ((0, 28, 1), 10, "received (0, 28, 1)"),
    ((28, 28, 1), 1, "at least 2"),
])
def test_impossible_shapes_and_class_counts_are_refused(shape, classes, fragment):
    with pytest.raises(CopycatError) as error:
        build("small_cnn", shape, classes)
    assert fragment in str(error.value)


# mobilenet_v2 and resnet50 are made of the same stock keras.applications layers as vgg16
# and take several times longer to save and load.
@pytest.mark.parametrize("name", ["small_cnn", "alexnet", "vgg16"])
def test_saved_models_reload_in_safe_mode(name, tmp_path):
    import keras

    model = build(name, (8, 8, 1), 3)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    images = _pixels((8, 8, 1))
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_upsampling_model_exports_with_parity(tmp_path):
    from copycat_tf.export import export_onnx, native_contract

    model = build("mobilenet_v2", (8, 8, 1), 4)
    images = _pixels((8, 8, 1), count=5).astype(np.uint8)
    result = export_onnx(model, tmp_path / "m.onnx", native_contract((8, 8, 1), 4), parity_images=images)
    assert result.max_abs_diff <= 1e-4


def test_small_cnn_trains_a_large_input_at_its_working_size_and_exports_it_whole(tmp_path):
    """A 240 px vendor input is averaged down 3x inside the model (80 px), so the copycat's
    memory and time follow the size its layers were made for; the file still takes 240 px."""
    from copycat_tf.export import export_onnx, native_contract

    model = build("small_cnn", (240, 240, 3), 4)
    assert tuple(model.get_layer("downscale").output.shape) == (None, 80, 80, 3)
    images = _pixels((240, 240, 3), count=4).astype(np.uint8)
    result = export_onnx(model, tmp_path / "m.onnx", native_contract((240, 240, 3), 4), parity_images=images)
    assert result.max_abs_diff <= 1e-4
    # At the sizes it was made for nothing changes: no downscaling up to 127 px.
    assert "downscale" not in [layer.name for layer in build("small_cnn", (127, 127, 1), 4).layers]
