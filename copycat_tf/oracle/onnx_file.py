"""Reading an ONNX file nobody vouches for: parse limits, ``onnx.checker``, external data kept
inside the model's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from copycat_tf.errors import CopycatError, first_line


def load_checked_model(path: str | os.PathLike):
    """Parse an ONNX file safely and run ``onnx.checker`` on it.

    External-data tensors must live inside the model's folder (no absolute paths, no
    ``..``, no symlinks out of it); the file is parsed without following them.

    Returns:
        The ``onnx.ModelProto`` (external data not loaded).
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise CopycatError(f"{path}: no such file")
    if not path.is_file():
        raise CopycatError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise CopycatError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise CopycatError(f"{path}: not an ONNX model (cannot parse it: {first_line(exc)})") from exc
    if not model.graph.node and not model.graph.output:
        raise CopycatError(f"{path}: not an ONNX model (no graph found)")
    _check_external_data(model, path)
    try:
        # By path, so external data resolves against the model's folder (checked above).
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx raises ValidationError and others from C++
        raise CopycatError(f"{path}: fails onnx.checker: {first_line(exc)}") from exc
    return model


def _check_external_data(model, path: Path) -> None:
    from onnx import TensorProto

    folder = path.resolve().parent
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or not target.is_relative_to(folder):
            raise CopycatError(
                f"{path}: tensor {tensor.name!r} points at external data {location!r} outside "
                "the model's folder; refusing to read it"
            )
        if not target.is_file():
            raise CopycatError(
                f"{path}: tensor {tensor.name!r} needs external data file {location!r}, "
                "which is missing"
            )


def _all_tensors(graph):
    from onnx import AttributeProto

    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == AttributeProto.TENSOR:
                yield attribute.t
            elif attribute.type == AttributeProto.TENSORS:
                yield from attribute.tensors
            elif attribute.type == AttributeProto.SPARSE_TENSOR:
                yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
            elif attribute.type == AttributeProto.SPARSE_TENSORS:
                for sparse in attribute.sparse_tensors:
                    yield from (sparse.values, sparse.indices)
            elif attribute.type == AttributeProto.GRAPH:
                yield from _all_tensors(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _all_tensors(subgraph)


def parameter_count(graph) -> int:
    """Weights held as initializers or as Constant nodes (some exporters, PaddlePaddle's
    among them, store every weight as a Constant), subgraphs included."""
    count = sum(int(np.prod(t.dims)) for t in graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Constant" and attribute.name == "value":
                count += int(np.prod(attribute.t.dims))
            count += sum(parameter_count(g) for g in [attribute.g, *attribute.graphs] if g.node or g.initializer)
    return count
