"""The ONNX oracle: contracts vendors ship, query counting, preprocessing and bad models."""

import json

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx_factory import make_linear_classifier, reference_logits

from copycat_tf.contract import METADATA_KEY, Preprocessing
from copycat_tf.errors import BudgetExceeded, CopycatError
from copycat_tf.oracle import OnnxOracle


def images(n, shape=(8, 8, 3), seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", ["float32", "uint8", "float16"])
@pytest.mark.parametrize("batch", [None, 1])
def test_labels_match_the_model_for_every_layout_dtype_and_batch(tmp_path, layout, dtype, batch):
    path = tmp_path / "m.onnx"
    weights, bias = make_linear_classifier(path, layout=layout, dtype=dtype, batch=batch)
    oracle = OnnxOracle(path)
    assert oracle.contract.input.layout == layout
    assert oracle.contract.input.dtype == dtype
    assert oracle.contract.input.batch_size == batch
    assert oracle.contract.image_shape == (8, 8, 3)
    x = images(13)
    answers = oracle.query(x)
    np.testing.assert_array_equal(answers.labels, reference_logits(x, weights, bias).argmax(1))
    assert oracle.queries_spent == 13


def test_fixed_batch_larger_than_one_pads_the_last_chunk(tmp_path):
    path = tmp_path / "m.onnx"
    weights, bias = make_linear_classifier(path, batch=4)
    oracle = OnnxOracle(path)
    x = images(10)
    answers = oracle.query(x, soft=True)
    assert answers.labels.shape == (10,) and answers.probabilities.shape == (10, 4)
    np.testing.assert_array_equal(answers.labels, reference_logits(x, weights, bias).argmax(1))
    assert oracle.queries_spent == 10


@pytest.mark.parametrize("kind", ["probabilities", "logits", "scores"])
def test_output_kind_is_probed_and_soft_answers_are_probabilities(tmp_path, kind):
    path = tmp_path / "m.onnx"
    weights, bias = make_linear_classifier(path, output=kind)
    oracle = OnnxOracle(path)
    assert oracle.contract.output.kind == kind
    x = images(6)
    probabilities = oracle.query(x, soft=True).probabilities
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    logits = reference_logits(x, weights, bias)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    # softmax of logits, and exp-scores normalised, are the same distribution
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_output_kind_override(tmp_path):
    path = tmp_path / "m.onnx"
    make_linear_classifier(path, output="logits")
    assert OnnxOracle(path, output_kind="scores").contract.output.kind == "scores"


def test_extra_outputs_are_listed_and_the_class_output_is_chosen(tmp_path):
    path = tmp_path / "m.onnx"
    make_linear_classifier(path, extra_outputs=True)
    oracle = OnnxOracle(path)
    assert oracle.contract.output.name == "probs"
    assert set(oracle.contract.extra_outputs) == {"label", "features"}
    with pytest.raises(CopycatError, match="'label'.*rank-2"):
        OnnxOracle(path, output="label")
    with pytest.raises(CopycatError, match="no output named 'nope'"):
        OnnxOracle(path, output="nope")


def test_preprocessing_mean_std_and_bgr(tmp_path):
    path = tmp_path / "m.onnx"
    weights, bias = make_linear_classifier(path)
    spec = Preprocessing(mean=(120.0, 110.0, 100.0), std=(60.0, 50.0, 40.0), channel_order="bgr")
    oracle = OnnxOracle(path, preprocessing=spec)
    x = images(20)
    expected = reference_logits(x, weights, bias, mean=spec.mean, std=spec.std, bgr=True)
    np.testing.assert_array_equal(oracle.query(x).labels, expected.argmax(1))
    # and the default [0, 1] scaling really differs from it on these images
    default = reference_logits(x, weights, bias).argmax(1)
    assert (default != expected.argmax(1)).any()


def test_contract_in_metadata_is_used_automatically(tmp_path):
    path = tmp_path / "m.onnx"
    stored = {"preprocessing": {"mean": [128.0], "std": [64.0], "channel_order": "rgb"},
              "output": {"name": "probs", "num_classes": 4, "kind": "probabilities"}}
    weights, bias = make_linear_classifier(path, metadata={METADATA_KEY: json.dumps(stored)})
    oracle = OnnxOracle(path)
    assert oracle.contract.preprocessing == Preprocessing(mean=(128.0,), std=(64.0,))
    x = images(20)
    expected = reference_logits(x, weights, bias, mean=128.0, std=64.0).argmax(1)
    np.testing.assert_array_equal(oracle.query(x).labels, expected)


def test_grayscale_input(tmp_path):
    path = tmp_path / "m.onnx"
    weights, bias = make_linear_classifier(path, image_shape=(6, 5, 1), layout="NCHW")
    oracle = OnnxOracle(path)
    assert oracle.contract.image_shape == (6, 5, 1)
    x = images(9, (6, 5, 1))
    np.testing.assert_array_equal(oracle.query(x).labels, reference_logits(x, weights, bias).argmax(1))


def test_budget_is_enforced_before_anything_is_sent(tmp_path):
    path = tmp_path / "m.onnx"
    make_linear_classifier(path)
    oracle = OnnxOracle(path, budget=10)
    oracle.query(images(6))
    with pytest.raises(BudgetExceeded, match="6 of 10"):
        oracle.query(images(5))
    assert oracle.queries_spent == 6
    oracle.query(images(4))
    assert oracle.queries_spent == 10 and oracle.queries_left == 0


def test_wrong_image_shape_or_dtype_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    make_linear_classifier(path)
    oracle = OnnxOracle(path)
    with pytest.raises(CopycatError, match=r"uint8 of shape \(N, 8, 8, 3\)"):
        oracle.query(images(2, (8, 8, 1)))
    with pytest.raises(CopycatError, match="float32"):
        oracle.query(images(2).astype(np.float32))
    assert oracle.queries_spent == 0


def test_dynamic_image_size_needs_input_size(tmp_path):
    path = tmp_path / "m.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
             helper.make_node("Softmax", ["m"], ["y"], axis=1)]
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [axes]),
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, path)
    with pytest.raises(CopycatError, match="--input-size"):
        OnnxOracle(path)
    oracle = OnnxOracle(path, input_size=(20, 30))
    assert oracle.contract.image_shape == (20, 30, 3)
    assert oracle.contract.input.layout == "NCHW"
    red = np.zeros((1, 20, 30, 3), np.uint8)
    red[..., 0] = 255
    assert oracle.query(red).labels.tolist() == [0]


def _save(tmp_path, graph, opset=17, name="bad.onnx", check=True):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if check:
        onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_bad_models_give_clear_errors(tmp_path):
    # Two inputs
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4, 4, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4, 4, 3])
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, 4, 4, 3])
    path = _save(tmp_path, helper.make_graph([helper.make_node("Add", ["a", "b"], ["o"])], "g", [a, b], [out]))
    with pytest.raises(CopycatError, match="expected one image input, found 2"):
        OnnxOracle(path)
    # Rank-2 input
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 10])
    o2 = helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, 10])
    path = _save(tmp_path, helper.make_graph([helper.make_node("Relu", ["v"], ["o"])], "g", [v], [o2]))
    with pytest.raises(CopycatError, match="rank-4 image batch"):
        OnnxOracle(path)
    # String and bool inputs
    for elem, label in ((TensorProto.STRING, "string"), (TensorProto.BOOL, "bool")):
        s = helper.make_tensor_value_info("s", elem, [1, 4, 4, 3])
        so = helper.make_tensor_value_info("o", elem, [1, 4, 4, 3])
        path = _save(tmp_path, helper.make_graph([helper.make_node("Identity", ["s"], ["o"])], "g", [s], [so]))
        with pytest.raises(CopycatError, match=f"tensor\\({label}\\)"):
            OnnxOracle(path)
    # Output not rank 2
    i4 = helper.make_tensor_value_info("i", TensorProto.FLOAT, [None, 4, 4, 3])
    o4 = helper.make_tensor_value_info("o", TensorProto.FLOAT, [None, 4, 4, 3])
    path = _save(tmp_path, helper.make_graph([helper.make_node("Relu", ["i"], ["o"])], "g", [i4], [o4]))
    with pytest.raises(CopycatError, match="no rank-2 float output"):
        OnnxOracle(path)
    # No channel axis of 1 or 3
    i5 = helper.make_tensor_value_info("i", TensorProto.FLOAT, [None, 5, 5, 5])
    path = _save(tmp_path, helper.make_graph([helper.make_node("Relu", ["i"], ["o"])], "g", [i5], [o4]))
    with pytest.raises(CopycatError, match="--layout"):
        OnnxOracle(path)
    # Absurd declared size
    huge = helper.make_tensor_value_info("i", TensorProto.FLOAT, [1, 100000, 100000, 3])
    path = _save(tmp_path, helper.make_graph([helper.make_node("Relu", ["i"], ["o"])], "g", [huge], [o4]))
    with pytest.raises(CopycatError, match="pixel limit"):
        OnnxOracle(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(CopycatError, match="no such file"):
        OnnxOracle(tmp_path / "missing.onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(CopycatError, match="empty file"):
        OnnxOracle(empty)
    text = tmp_path / "text.onnx"
    text.write_text("this is not a model\n" * 10)
    with pytest.raises(CopycatError, match="not an ONNX model"):
        OnnxOracle(text)
    good = tmp_path / "good.onnx"
    make_linear_classifier(good)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CopycatError, match="truncated.onnx"):
        OnnxOracle(truncated)


def test_checker_failure_and_unknown_op(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("NoSuchOperator", ["x"], ["y"])], "g", [x], [y])
    path = _save(tmp_path, graph, check=False)
    with pytest.raises(CopycatError, match="onnx.checker"):
        OnnxOracle(path)
    custom = helper.make_node("Mystery", ["x"], ["y"], domain="com.vendor.secret")
    model = helper.make_model(helper.make_graph([custom], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.vendor.secret", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    with pytest.raises(CopycatError, match="onnxruntime cannot load"):
        OnnxOracle(path)


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "sub/../../outside.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 64)
    path = folder / "m.onnx"
    make_linear_classifier(path)
    model = onnx.load(path)
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)
    with pytest.raises(CopycatError, match="outside the model's folder"):
        OnnxOracle(path)


def test_external_data_inside_the_folder_works(tmp_path):
    path = tmp_path / "m.onnx"
    weights, bias = make_linear_classifier(path)
    model = onnx.load(path)
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    oracle = OnnxOracle(path)
    x = images(5)
    np.testing.assert_array_equal(oracle.query(x).labels, reference_logits(x, weights, bias).argmax(1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=st.sampled_from(["NHWC", "NCHW"]),
    dtype=st.sampled_from(["float32", "uint8"]),
    fixed_batch=st.sampled_from([None, 1, 2, 5]),
    count=st.integers(1, 12),
    seed=st.integers(0, 1000),
)
def test_any_batching_and_contract_answers_like_one_by_one(tmp_path_factory, layout, dtype, fixed_batch, count, seed):
    path = tmp_path_factory.mktemp("prop") / "m.onnx"
    weights, bias = make_linear_classifier(path, layout=layout, dtype=dtype, batch=fixed_batch, seed=seed % 7)
    oracle = OnnxOracle(path)
    x = images(count, seed=seed)
    together = oracle.query(x, soft=True)
    alone = [oracle.query(x[i : i + 1], soft=True) for i in range(count)]
    np.testing.assert_array_equal(together.labels, [a.labels[0] for a in alone])
    np.testing.assert_allclose(together.probabilities, np.concatenate([a.probabilities for a in alone]), atol=1e-6)
    np.testing.assert_array_equal(together.labels, reference_logits(x, weights, bias).argmax(1))
    assert oracle.queries_spent == 2 * count


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=st.sampled_from(["NHWC", "NCHW"]),
    dtype=st.sampled_from(["float32", "float16", "uint8"]),
    channels=st.sampled_from([1, 3]),
    fixed_batch=st.sampled_from([None, 1, 2, 3, 7]),
    output=st.sampled_from(["probabilities", "logits", "scores"]),
    chunks=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    bgr=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_any_cut_into_calls_and_any_contract_answers_like_one_by_one(
        tmp_path_factory, layout, dtype, channels, fixed_batch, output, chunks, bgr, seed):
    path = tmp_path_factory.mktemp("prop-cuts") / "m.onnx"
    shape = (6, 5, channels)
    weights, bias = make_linear_classifier(path, image_shape=shape, layout=layout, dtype=dtype,
                                           batch=fixed_batch, output=output, seed=seed % 7)
    preprocessing = None
    if dtype != "uint8":  # integer inputs take raw pixels only
        preprocessing = Preprocessing(mean=(100.0,), std=(50.0,), channel_order="bgr" if bgr else "rgb")
    oracle = OnnxOracle(path, preprocessing=preprocessing)
    count = sum(chunks)
    x = np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)
    parts, start = [], 0
    for size in chunks:
        parts.append(oracle.query(x[start:start + size], soft=True))
        start += size
    alone = [oracle.query(x[i:i + 1], soft=True) for i in range(count)]
    labels = np.concatenate([p.labels for p in parts])
    np.testing.assert_array_equal(labels, [a.labels[0] for a in alone])
    np.testing.assert_allclose(np.concatenate([p.probabilities for p in parts]),
                               np.concatenate([a.probabilities for a in alone]), atol=1e-6)
    if dtype == "float32":  # float16 rounding may flip near-ties against a float32 reference
        mean, std = (100.0, 50.0)
        expected = reference_logits(x, weights, bias, mean=mean, std=std, bgr=bgr and channels == 3)
        np.testing.assert_array_equal(labels, expected.argmax(1))
    assert oracle.queries_spent == 2 * count


@pytest.mark.parametrize("shape, arena", [((16, 16, 3), True), ((240, 240, 3), False)])
def test_large_images_run_without_the_arena_that_would_keep_their_peak(query_target, shape, arena):
    oracle = OnnxOracle(query_target(shape, 3))
    assert oracle.session.get_session_options().enable_cpu_mem_arena is arena
