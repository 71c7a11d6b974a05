"""Export a Keras classifier to ONNX under a given contract, and prove the export is faithful.

Every Keras model in this project takes NHWC pixel values in ``[0, 255]`` (RGB or
grayscale) and returns softmax probabilities. :func:`export_onnx` wraps it so the ONNX file
accepts exactly the tensor a contract describes — the target's input name, layout, dtype
and ``(pixel - mean) / std`` preprocessing — so a copycat is a drop-in replacement for its
target. The contract is stored in the ONNX metadata, and the export is checked against
Keras on real images at two batch sizes.

Usage::

    result = export_onnx(model, "copycat.onnx", target_oracle.contract,
                         parity_images=some_uint8_images)
    result.max_abs_diff < 1e-4
    # True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copycat_tf._version import __version__
from copycat_tf.contract import (
    METADATA_KEY,
    ClassOutput,
    Contract,
    ImageInput,
    Preprocessing,
)
from copycat_tf.errors import CopycatError
from copycat_tf.files import atomic_write
from copycat_tf.oracle import OnnxOracle

OPSET = 17
PARITY_TOLERANCE = 1e-4
#: Images of the training data an export is checked on.
PARITY_IMAGES = 32
_TF_DTYPES = {"float32": "float32", "float16": "float16", "float64": "float64", "uint8": "uint8",
              "int8": "int8", "int32": "int32", "int64": "int64"}


@dataclass(frozen=True)
class ExportResult:
    """Where the model went and how closely onnxruntime reproduces Keras.

    Attributes:
        path: the ONNX file.
        contract: the contract it was exported under.
        max_abs_diff: largest |keras - onnx| over the parity images' probabilities
            (``None`` when no parity images were given).
    """

    path: Path
    contract: Contract
    max_abs_diff: float | None


def native_contract(image_shape: tuple[int, int, int], num_classes: int) -> Contract:
    """The contract of models this project trains as targets: NHWC float32 raw pixels in,
    probabilities out (the rescaling lives inside the model)."""
    h, w, c = image_shape
    return Contract(
        input=ImageInput("pixels", (None, h, w, c), "float32", "NHWC"),
        output=ClassOutput("probabilities", num_classes, "probabilities"),
        preprocessing=Preprocessing(mean=(0.0,), std=(1.0,)),
    )


def export_onnx(
    model,
    path: str | os.PathLike,
    contract: Contract,
    *,
    metadata: dict[str, str] | None = None,
    parity_images: np.ndarray | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> ExportResult:
    """Write ``model`` as an ONNX file that honours ``contract``.

    Args:
        model: a Keras model mapping NHWC pixels in ``[0, 255]`` to probabilities, at the
            contract's image shape and class count.
        path: the ``.onnx`` file to write (atomically).
        contract: input name, layout, dtype and preprocessing to accept; the output is
            named after ``contract.output.name`` and holds log-probabilities when the
            contract's output kind is ``logits``, else probabilities.
        metadata: extra ``key -> value`` strings for the ONNX metadata.
        parity_images: uint8 ``(N, H, W, C)`` images to check the export on, at batch
            sizes 1 and N, through onnxruntime.
        tolerance: the largest allowed |keras - onnx| on probabilities.

    Raises:
        CopycatError: the model does not fit the contract, or parity fails.
    """
    import tensorflow as tf
    import tf2onnx

    expected = (None, *contract.image_shape)
    got = tuple(model.input_shape)
    if got != expected or model.output_shape[-1] != contract.num_classes:
        raise CopycatError(
            f"model takes {got} and gives {model.output_shape[-1]} classes; the contract needs "
            f"{expected} and {contract.num_classes} classes"
        )
    contract = _exported_contract(contract)
    prep = contract.preprocessing
    # numpy, not tf.constant: tensors captured from outside the tf.function would become
    # extra ONNX graph inputs instead of constants.
    mean = np.asarray(prep.mean, np.float32)
    std = np.asarray(prep.std, np.float32)
    reverse_channels = contract.image_shape[2] == 3 and prep.channel_order == "bgr"
    nchw = contract.input.layout == "NCHW"
    logits = contract.output.kind == "logits"

    def serve(model_input):
        x = tf.cast(model_input, tf.float32)
        if nchw:
            x = tf.transpose(x, [0, 2, 3, 1])
        if not prep.is_identity:
            x = x * std + mean
        if reverse_channels:
            x = x[..., ::-1]
        probabilities = model(x, training=False)
        if logits:
            probabilities = tf.math.log(tf.maximum(probabilities, 1e-30))
        return {contract.output.name: probabilities}

    spec_shape = [None, *contract.input.shape[1:]]
    signature = [tf.TensorSpec(spec_shape, _TF_DTYPES[contract.input.dtype], name="serving_input")]
    try:
        proto, _ = tf2onnx.convert.from_function(
            tf.function(serve), input_signature=signature, opset=OPSET
        )
    except Exception as exc:  # tf2onnx raises many types; the user needs the first line
        raise CopycatError(f"ONNX conversion failed: {type(exc).__name__}: {exc}") from exc
    _rename_input(proto, "serving_input", contract.input.name)
    proto.producer_name, proto.producer_version = "copycat-tf", __version__
    entries = {METADATA_KEY: json.dumps(contract.to_dict(), sort_keys=True), **(metadata or {})}
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, str(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(proto.SerializeToString()))
    max_diff = None
    if parity_images is not None:
        max_diff = check_parity(model, path, parity_images, tolerance)
    return ExportResult(path, contract, max_diff)


def _exported_contract(contract: Contract) -> Contract:
    """The contract the exported file will have: dynamic batch; scores become probabilities."""
    kind = "logits" if contract.output.kind == "logits" else "probabilities"
    return Contract(
        input=ImageInput(
            contract.input.name, (None, *contract.input.shape[1:]), contract.input.dtype,
            contract.input.layout,
        ),
        output=ClassOutput(contract.output.name, contract.num_classes, kind),
        preprocessing=contract.preprocessing,
    )


def _rename_input(proto, old: str, new: str) -> None:
    """Give the graph input the target's exact name (TF names cannot hold every ONNX name)."""
    if old == new:
        return
    for graph_input in proto.graph.input:
        if graph_input.name == old:
            graph_input.name = new
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def check_parity(model, path: str | os.PathLike, images: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> float:
    """Max |keras - onnxruntime| on probabilities over ``images`` at batch sizes 1 and N.

    Raises:
        CopycatError: above ``tolerance``.
    """

    images = np.asarray(images, np.uint8)
    expected = np.asarray(model.predict(images.astype(np.float32), verbose=0, batch_size=256))
    oracle = OnnxOracle(path)
    onnx_all = oracle.query(images, soft=True).probabilities
    onnx_one = np.concatenate([oracle.query(images[i : i + 1], soft=True).probabilities
                               for i in range(min(len(images), 8))])
    max_diff = float(max(np.abs(onnx_all - expected).max(),
                         np.abs(onnx_one - expected[: len(onnx_one)]).max()))
    if not max_diff <= tolerance:
        raise CopycatError(
            f"{path}: exported model disagrees with Keras by {max_diff:.2e} (max |keras - onnx| "
            f"on probabilities; limit {tolerance:.0e})"
        )
    return max_diff
