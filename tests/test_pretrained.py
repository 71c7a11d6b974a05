"""Pretrained copycats: backbone weights from a local file, the backbone's own preprocessing
inside the model, the offline error of ``--weights imagenet``, the transfer schedule (head
on a frozen backbone, then the top block with BatchNorm in inference mode), export parity,
and weights checked before any query is bought."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from cli_runner import run_cli

from copycat_tf.errors import CopycatError
from copycat_tf.models import build
from copycat_tf.models.pretrained import BACKBONE, PRETRAINED_MIN_SIZE, ensure_weights, set_trainable
from copycat_tf.training import TrainConfig, train_copycat


def _save_backbone(application, path, seed):
    """A real weights file of ``application`` without its top (random weights, seeded)."""
    import keras

    keras.utils.set_random_seed(seed)
    backbone = getattr(keras.applications, application)(include_top=False, weights=None,
                                                         input_shape=(64, 64, 3), pooling="avg")
    backbone.save_weights(path)
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in backbone.layers if layer.get_weights()}


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "vgg16_notop.weights.h5"
    return path, _save_backbone("VGG16", path, seed=1)


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_notop.weights.h5"
    return path, _save_backbone("MobileNetV2", path, seed=2)


def _backbone_weights(model):
    return {layer.name: layer.get_weights() for layer in model.get_layer(BACKBONE).layers if layer.get_weights()}


def _pixels(shape, count=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *shape)).astype(np.float32)


def test_weights_file_is_loaded_into_the_backbone(vgg16_file):
    path, saved = vgg16_file
    model = build("vgg16", (32, 32, 3), 5, weights=str(path))
    loaded = _backbone_weights(model)
    assert set(loaded) == set(saved)
    for name, values in saved.items():
        for got, want in zip(loaded[name], values):
            np.testing.assert_array_equal(got, want)
    # Small inputs are upsampled to the size the filters were learnt for, inside the model.
    assert tuple(model.get_layer(BACKBONE).input_shape[1:3]) == (PRETRAINED_MIN_SIZE, PRETRAINED_MIN_SIZE)
    assert tuple(model.input_shape) == (None, 32, 32, 3)


@pytest.mark.parametrize("arch, application, channels", [
    ("vgg16", "vgg16", 3), ("vgg16", "vgg16", 1), ("mobilenet_v2", "mobilenet_v2", 3),
])
def test_front_applies_the_backbones_own_preprocessing(arch, application, channels, vgg16_file, mobilenet_file):
    """Raw pixels in; exactly keras.applications' preprocess_input out (grayscale replicated)."""
    import importlib

    import keras

    path = (vgg16_file if arch == "vgg16" else mobilenet_file)[0]
    model = build(arch, (64, 64, channels), 3, weights=str(path))
    front = keras.Model(model.input, model.get_layer("backbone_preprocessing").output)
    pixels = _pixels((64, 64, channels))
    rgb = np.repeat(pixels, 3, axis=-1) if channels == 1 else pixels
    expected = importlib.import_module(f"keras.applications.{application}").preprocess_input(rgb.copy())
    np.testing.assert_allclose(front.predict(pixels, verbose=0), expected, atol=1e-3)


def test_wrong_or_missing_weights_are_one_clear_error(tmp_path, mobilenet_file):
    with pytest.raises(CopycatError, match=r"--weights .*cannot load it into vgg16"):
        build("vgg16", (32, 32, 3), 5, weights=str(mobilenet_file[0]))
    with pytest.raises(CopycatError, match="no such file"):
        TrainConfig(arch="vgg16", weights=str(tmp_path / "missing.h5"))
    with pytest.raises(CopycatError, match="small_cnn always starts from random weights"):
        TrainConfig(arch="small_cnn", weights="imagenet")
    with pytest.raises(CopycatError, match="fine_tune must be one of top, all"):
        TrainConfig(arch="vgg16", fine_tune="head")


def test_imagenet_offline_is_one_line_naming_weights_path(tmp_path, make_fakeset, digits_target, digits_queries):
    """No cached file, and every download goes to a closed loopback port (an offline audit
    box): one error line saying where Keras looks and what to pass instead, before any
    training and, for steal, before any query is bought."""
    keras_home = tmp_path / "keras"
    closed = "http://127.0.0.1:9"
    env = {"KERAS_HOME": str(keras_home), "HTTPS_PROXY": closed, "https_proxy": closed,
           "HTTP_PROXY": closed, "http_proxy": closed, "NO_PROXY": "", "no_proxy": ""}
    fakeset = make_fakeset(digits_target.path, [digits_queries], 256)
    result = run_cli("train", fakeset.directory, "--arch", "vgg16", "--weights", "imagenet",
                     "--out", tmp_path / "train", env=env)
    result.assert_clean_error("--weights imagenet", "--weights PATH", str(keras_home / "models"))
    assert not list((tmp_path / "train").rglob("*.keras"))

    out = tmp_path / "steal"
    result = run_cli("steal", digits_target.path, "--queries", "noise:uniform", "--budget", "50",
                     "--arch", "vgg16", "--weights", "imagenet", "--out", out, env=env)
    result.assert_clean_error("--weights imagenet", "--weights PATH")
    assert not (out / "fakeset").exists()


def test_transfer_schedule_freezes_then_fine_tunes_the_top_with_batchnorm_in_inference(
        make_fakeset, digits_target, digits_queries, mobilenet_file, tmp_path):
    path, saved = mobilenet_file
    fakeset = make_fakeset(digits_target.path, [digits_queries], 256)
    config = TrainConfig(arch="mobilenet_v2", weights=str(path), head_epochs=1, epochs=1, batch_size=32)
    result = train_copycat(fakeset, tmp_path / "run", config)

    state = json.loads((tmp_path / "run" / "training.json").read_text())
    assert list(state["stages"]) == ["head", "main"]
    assert [len(s["history"]["loss"]) for s in state["stages"].values()] == [1, 1]

    import keras

    head = keras.models.load_model(tmp_path / "run" / "checkpoints" / "head.keras", safe_mode=True)
    for name, values in _backbone_weights(head).items():  # stage 1: the backbone did not move
        for got, want in zip(values, saved[name]):
            np.testing.assert_array_equal(got, want)
    final = _backbone_weights(result.model)
    top = [name for name in final if name.startswith(("block_16_", "Conv_1"))]
    assert top and any(not np.array_equal(final[name][0], saved[name][0]) for name in top)
    for name, values in final.items():
        layer = result.model.get_layer(BACKBONE).get_layer(name)
        if isinstance(layer, keras.layers.BatchNormalization):
            # moving mean and variance (the last two) keep the pretrained statistics
            np.testing.assert_array_equal(values[2], saved[name][2])
            np.testing.assert_array_equal(values[3], saved[name][3])
        elif name not in top:
            for got, want in zip(values, saved[name]):
                np.testing.assert_array_equal(got, want)

    # The export keeps the target's contract and matches Keras.
    assert result.max_abs_diff <= 1e-4
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    assert [d if isinstance(d, int) else None for d in session.get_inputs()[0].shape][1:] == [8, 8, 1]


@pytest.mark.slow
def test_the_semi_supervised_stage_trains_the_part_fine_tuning_trains(make_fakeset, digits_target, digits_queries,
                                                                       mobilenet_file, tmp_path):
    from copycat_tf.queries import open_query_source

    path, saved = mobilenet_file
    fakeset = make_fakeset(digits_target.path, [digits_queries], 256)
    config = TrainConfig(arch="mobilenet_v2", weights=str(path), head_epochs=1, epochs=1, batch_size=32,
                         semi_supervised=True, semi_epochs=1, pseudo_label_threshold=0.1, unlabelled_count=64)
    result = train_copycat(fakeset, tmp_path / "run", config,
                           unlabelled=open_query_source([str(digits_queries)], (8, 8, 1), seed=9))
    state = json.loads((tmp_path / "run" / "training.json").read_text())
    assert list(state["stages"]) == ["head", "main", "semi"]
    assert state["stages"]["semi"]["pseudo_labels"]["selected"] == 64  # every image passes a 0.1 threshold

    import keras

    main = _backbone_weights(keras.models.load_model(tmp_path / "run" / "checkpoints" / "main.keras", safe_mode=True))
    final = _backbone_weights(result.model)
    top = [name for name in final if name.startswith(("block_16_", "Conv_1"))]
    assert any(not np.array_equal(final[name][0], main[name][0]) for name in top)  # the top block moved on
    for name, values in final.items():
        layer = result.model.get_layer(BACKBONE).get_layer(name)
        if isinstance(layer, keras.layers.BatchNormalization):
            np.testing.assert_array_equal(values[2], saved[name][2])  # statistics stay pretrained
            np.testing.assert_array_equal(values[3], saved[name][3])
        elif name not in top:
            for got, want in zip(values, saved[name]):
                np.testing.assert_array_equal(got, want)  # the rest of the backbone stays frozen
    assert result.max_abs_diff <= 1e-4


def test_set_trainable_parts(vgg16_file):
    model = build("vgg16", (32, 32, 3), 4, weights=str(vgg16_file[0]))
    counts = {}
    for part in ("head", "top", "all", "top"):
        set_trainable(model, part)
        counts[part] = len(model.trainable_weights)
    assert counts == {"head": 2, "top": 2 + 6, "all": 2 + 26}
    assert not model.get_layer("backbone_preprocessing").trainable


def test_steal_checks_weights_before_buying_a_query(tmp_path, digits_target, mobilenet_file):
    out = tmp_path / "steal"
    result = run_cli("steal", digits_target.path, "--queries", "noise:uniform", "--budget", "50",
                     "--arch", "vgg16", "--weights", mobilenet_file[0], "--out", out)
    result.assert_clean_error("--weights", "cannot load it into vgg16")
    assert not (out / "fakeset").exists()
