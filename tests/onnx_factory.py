"""Tiny ONNX classifiers built with onnx.helper, in every input/output contract a vendor might ship.

The classifier is linear over the flattened NHWC float pixels (after the model's own
preprocessing), so tests can compute what it must answer with plain numpy.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_ELEM = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "uint8": TensorProto.UINT8,
    "float64": TensorProto.DOUBLE,
}


def linear_weights(image_shape, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    h, w, c = image_shape
    weights = rng.normal(0, 1, (h * w * c, num_classes)).astype(np.float32)
    bias = rng.normal(0, 0.1, num_classes).astype(np.float32)
    return weights, bias


def reference_logits(images_uint8, weights, bias, *, mean=0.0, std=255.0, bgr=False):
    """What the linear model computes for uint8 NHWC RGB images fed as (pixel - mean) / std."""
    x = images_uint8.astype(np.float32)
    if bgr:
        x = x[..., ::-1]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.reshape(len(x), -1) @ weights + bias


def make_linear_classifier(
    path,
    *,
    image_shape=(8, 8, 3),
    num_classes=4,
    layout="NHWC",
    dtype="float32",
    batch=None,
    output="probabilities",
    extra_outputs=False,
    input_name="input",
    seed=0,
    metadata=None,
    opset=17,
):
    """Write a linear classifier ONNX file and return (weights, bias).

    The model expects float inputs already scaled to [0, 1] (or raw uint8 pixels, which it
    divides by 255 itself), in ``layout``; ``output`` is ``probabilities`` (softmax),
    ``logits`` or ``scores`` (non-negative, not normalised).
    """
    h, w, c = image_shape
    weights, bias = linear_weights(image_shape, num_classes, seed)
    shape = [batch if batch else "N"] + ([h, w, c] if layout == "NHWC" else [c, h, w])
    graph_input = helper.make_tensor_value_info(input_name, _ELEM[dtype], shape)
    nodes = [helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT)]
    current = "as_float"
    if dtype == "uint8":
        nodes.append(helper.make_node("Div", [current, "pixel_scale"], ["scaled"]))
        current = "scaled"
    if layout == "NCHW":
        nodes.append(helper.make_node("Transpose", [current], ["nhwc"], perm=[0, 2, 3, 1]))
        current = "nhwc"
    nodes += [
        helper.make_node("Flatten", [current], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
    ]
    initializers = [
        numpy_helper.from_array(weights, "W"),
        numpy_helper.from_array(bias, "B"),
    ]
    if dtype == "uint8":
        initializers.append(numpy_helper.from_array(np.array(255.0, np.float32), "pixel_scale"))
    if output == "probabilities":
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        out_name = "probs"
    elif output == "scores":
        # exp(logits) keeps the argmax and is positive, but rows do not sum to 1.
        nodes.append(helper.make_node("Exp", ["logits"], ["scores"]))
        out_name = "scores"
    else:
        out_name = "logits"
    outputs = []
    if extra_outputs:
        nodes.append(helper.make_node("ArgMax", [out_name], ["label"], axis=1, keepdims=0))
        outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, [shape[0]]))
        nodes.append(helper.make_node("Identity", [current], ["features"]))
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, [shape[0], h, w, c]))
    outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [shape[0], num_classes]))
    graph = helper.make_graph(nodes, "linear", [graph_input], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="copycat-tf-tests")
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weights, bias
