"""The two protocols' JSON: request bodies, answers, and the tensors a metadata answer declares.

- Open Inference Protocol v2: ``{"inputs": [{"name", "shape", "datatype", "data"}],
  "outputs": [{"name"}]}`` with ``data`` flat in row-major order; answers
  ``{"outputs": [{"name", "shape", "datatype", "data"}]}``.
- TF Serving REST, row format (KServe V1 too): ``{"instances": [image, ...]}`` with each
  image nested like the tensor; answers ``{"predictions": [row | label | {output: row}]}``.

Bodies are written by :func:`number_list`, which prints each distinct value once; answers
are read into numpy arrays of numbers (float64) or of class names (object) for the oracle
to check, and anything else becomes :class:`BadAnswer`.

Example:

>>> V2Codec.encode(np.zeros((1, 1, 1, 3), np.float32), "x", "probs")
b'{"inputs":[{"name":"x","shape":[1,1,1,3],"datatype":"FP32","data":[0.0,0.0,0.0]}],"outputs":[{"name":"probs"}]}'
>>> V2Codec.decode({"outputs": [{"name": "probs", "shape": [1, 2], "datatype": "FP32",
...                                "data": [0.25, 0.75]}]}, "probs", 1)
array([[0.25, 0.75]])
"""

from __future__ import annotations

import json
import math

import numpy as np

#: At most this many distinct values are formatted through a lookup table (fast path).
_TABLE_LIMIT = 4096
_V2_TYPES = {"FP32": "float32", "FP16": "float16", "FP64": "float64", "UINT8": "uint8",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
             "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64", "BYTES": "bytes",
             "BOOL": "bool"}
_TF_TYPES = {"DT_FLOAT": "float32", "DT_HALF": "float16", "DT_DOUBLE": "float64",
             "DT_UINT8": "uint8", "DT_INT8": "int8", "DT_INT16": "int16", "DT_INT32": "int32",
             "DT_INT64": "int64", "DT_STRING": "bytes", "DT_BOOL": "bool"}
#: Input dtypes a request can carry.
SENDABLE = ("float32", "float16", "float64", "uint8", "int8", "int32", "int64")
_V2_NAME = {dtype: name for name, dtype in _V2_TYPES.items()}


class BadAnswer(Exception):
    """A 2xx answer that cannot be read; the oracle turns it into a CopycatError naming the request."""


def number_list(values: np.ndarray) -> str:
    """JSON text of a numeric array's values, nested like the array.

    Model inputs come from uint8 pixels through a per-channel affine map, so they hold few
    distinct values; each is formatted once (shortest text that reads back to the same
    float32) and the text is assembled by lookup, ten times faster than ``json.dumps``.

    >>> number_list(np.array([[0.5, 1.0], [0.0, 0.5]], np.float32))
    '[[0.5,1.0],[0.0,0.5]]'
    >>> number_list(np.array([3, 250], np.uint8))
    '[3,250]'
    """
    distinct, inverse = np.unique(values, return_inverse=True)
    if len(distinct) > _TABLE_LIMIT:
        return json.dumps(values.tolist(), allow_nan=False)
    if values.dtype.kind == "f":
        words = [np.format_float_positional(v, unique=True, trim="0") for v in distinct]
    else:
        words = [str(int(v)) for v in distinct]
    table = np.asarray(words, dtype=object)[inverse.reshape(values.shape)]
    return _nest(table)


def _nest(words: np.ndarray) -> str:
    """JSON array text of a (non-empty) array of number words, nested like the array."""
    if words.ndim == 1:
        return "[" + ",".join(words.tolist()) + "]"
    # One join over words and separators: after the word that ends c nested blocks comes
    # "]" * c + "," + "[" * c (a per-row join costs one Python call per innermost row).
    ends = np.zeros(words.size, np.int64)
    block = 1
    for size in reversed(words.shape):
        block *= size
        ends[block - 1 :: block] += 1
    separators = np.asarray([","] + ["]" * c + "," + "[" * c for c in range(1, words.ndim + 1)], dtype=object)
    parts = np.empty(2 * words.size, dtype=object)
    parts[0::2] = words.ravel()
    parts[1::2] = separators[ends]
    parts[-1] = "]" * words.ndim
    return "[" * words.ndim + "".join(parts.tolist())


class V2Codec:
    """Open Inference Protocol v2, JSON encoding."""

    @staticmethod
    def encode(x: np.ndarray, input_name: str, output_name: str | None) -> bytes:
        tensor = (f'{{"name":{json.dumps(input_name)},"shape":{json.dumps(list(x.shape), separators=(",", ":"))},'
                  f'"datatype":"{_V2_NAME[x.dtype.name]}","data":{number_list(x.ravel())}}}')
        outputs = f',"outputs":[{{"name":{json.dumps(output_name)}}}]' if output_name else ""
        return f'{{"inputs":[{tensor}]{outputs}}}'.encode()

    @staticmethod
    def decode(doc, output_name: str | None, n: int) -> np.ndarray:
        outputs = doc.get("outputs") if isinstance(doc, dict) else None
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, dict) for o in outputs):
            raise BadAnswer("it has no \"outputs\" list of tensors")
        chosen = [o for o in outputs if o.get("name") == output_name] if output_name else []
        if not chosen:
            if len(outputs) > 1:
                names = ", ".join(repr(o.get("name")) for o in outputs)
                raise BadAnswer(f"it has outputs {names} and none is {output_name!r}")
            chosen = outputs
        tensor = chosen[0]
        data, shape = tensor.get("data"), tensor.get("shape")
        if not isinstance(data, list):
            raise BadAnswer(f"output {tensor.get('name')!r} has no \"data\" list")
        labels = str(tensor.get("datatype", "")).upper() == "BYTES"
        array = _as_array(data, labels)
        if isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape):
            if math.prod(shape) != array.size:
                raise BadAnswer(f"output {tensor.get('name')!r} declares shape {shape} but holds "
                                 f"{array.size} values")
            array = array.reshape(shape)
        elif array.ndim == 1 and not labels and n and array.size % n == 0 and array.size != n:
            array = array.reshape(n, -1)
        return array


class TFServingCodec:
    """TF Serving REST (row format), which KServe V1 shares."""

    @staticmethod
    def encode(x: np.ndarray, input_name: str, output_name: str | None) -> bytes:
        return f'{{"instances":{number_list(x)}}}'.encode()

    @staticmethod
    def decode(doc, output_name: str | None, n: int) -> np.ndarray:
        predictions = doc.get("predictions") if isinstance(doc, dict) else None
        if predictions is None and isinstance(doc, dict) and "outputs" in doc:
            predictions = doc["outputs"]
            if isinstance(predictions, dict):
                predictions = _pick(predictions, output_name)
        if not isinstance(predictions, list):
            raise BadAnswer("it has no \"predictions\" list")
        if predictions and all(isinstance(p, dict) for p in predictions):
            predictions = [_pick(p, output_name) for p in predictions]
        labels = bool(predictions) and all(isinstance(p, str) or (isinstance(p, list) and len(p) == 1
                                                                   and isinstance(p[0], str))
                                           for p in predictions)
        return _as_array(predictions, labels)


def _pick(outputs: dict, name: str | None):
    if name in outputs:
        return outputs[name]
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    raise BadAnswer(f"it has outputs {sorted(outputs)} and none is {name!r}")


def _as_array(data: list, labels: bool) -> np.ndarray:
    try:
        if labels:
            array = np.asarray(data, dtype=object)
            if not all(isinstance(v, str) for v in array.ravel()):
                raise ValueError("mixed")
            return array
        array = np.asarray(data)
        if array.dtype.kind in "U" and array.ndim in (1, 2):
            return array.astype(object)
        if array.dtype.kind not in "biuf":
            raise ValueError("not numbers")
        return array.astype(np.float64)
    except (ValueError, TypeError, OverflowError):
        raise BadAnswer("its values are not a rectangular array of numbers or class names") from None


def metadata_tensors(metadata: dict, protocol: str) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of a metadata answer as ``{"name", "dtype", "shape"}`` dicts
    (dtype a numpy name, ``"bytes"`` or ``None``; shape with ``None`` for dynamic axes)."""
    if protocol == "v2":
        def read(items):
            tensors = []
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    tensors.append({"name": item["name"],
                                    "dtype": _dtype(_V2_TYPES, item.get("datatype")),
                                    "shape": _dims(item.get("shape"))})
            return tensors

        return read(metadata.get("inputs")), read(metadata.get("outputs"))
    signatures = metadata.get("metadata", {}).get("signature_def", {})
    signatures = signatures.get("signature_def", signatures) if isinstance(signatures, dict) else {}
    if not isinstance(signatures, dict) or not signatures:
        return [], []
    signature = signatures.get("serving_default") or next(iter(signatures.values()))

    def read_tf(items):
        tensors = []
        for key, item in (items.items() if isinstance(items, dict) else []):
            if not isinstance(item, dict):
                continue
            shape = item.get("tensor_shape", {})
            dims = None if not isinstance(shape, dict) or shape.get("unknown_rank") else _dims(
                [d.get("size", -1) if isinstance(d, dict) else d for d in shape.get("dim", [])])
            tensors.append({"name": key, "dtype": _dtype(_TF_TYPES, item.get("dtype")), "shape": dims})
        return tensors

    if not isinstance(signature, dict):
        return [], []
    return read_tf(signature.get("inputs")), read_tf(signature.get("outputs"))


def _dtype(table: dict, raw) -> str | None:
    """A numpy dtype name (or ``"bytes"``) for a declared type; unknown ones keep their text."""
    if not isinstance(raw, str) or not raw:
        return None
    return table.get(raw.upper(), raw)


def _dims(shape) -> list[int | None] | None:
    if not isinstance(shape, list):
        return None
    dims = []
    for d in shape:
        try:
            d = int(d)
        except (TypeError, ValueError):
            return None
        dims.append(None if d < 0 else d)
    return dims


def is_float_type(dtype: str | None) -> bool:
    """Float outputs hold class rows; ``None`` (type unknown) is taken as float."""
    return dtype is None or dtype.startswith("float")
