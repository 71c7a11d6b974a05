"""The oracle: the target model as a black box that answers image queries with labels.

:class:`Oracle` is the interface every stage talks to (uint8 images in, labels and
optionally probabilities out, every query counted against an optional budget).
:class:`OnnxOracle` is the first implementation: a target ONNX file reached only through
``onnxruntime.InferenceSession`` — inputs in, outputs out; no weights, no gradients.

Example:

>>> oracle = OnnxOracle("target.onnx", budget=10_000)        # doctest: +SKIP
>>> print(oracle.contract.describe())                          # doctest: +SKIP
>>> answers = oracle.query(images, soft=True)                  # doctest: +SKIP
>>> answers.labels, answers.probabilities, oracle.queries_spent  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from copycat_tf.contract import (
    LAYOUTS,
    METADATA_KEY,
    OUTPUT_KINDS,
    SUPPORTED_INPUT_DTYPES,
    ClassOutput,
    Contract,
    ImageInput,
    Preprocessing,
    detect_output_kind,
    to_probabilities,
)
from copycat_tf.errors import BudgetExceeded, CopycatError, first_line
from copycat_tf.files import file_sha256

log = logging.getLogger(__name__)

#: Largest image (height x width) an input may declare; bigger is treated as hostile.
MAX_INPUT_PIXELS = 4096 * 4096
#: Largest fixed batch an input may declare (the probe sends one whole batch); and the most
#: pixels one fixed batch may hold in all.
MAX_FIXED_BATCH = 4096
MAX_BATCH_PIXELS = 4 * MAX_INPUT_PIXELS
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}


@dataclass(frozen=True)
class Answers:
    """The oracle's answers to one batch of queries.

    Attributes:
        labels: int64 ``(N,)`` predicted classes (argmax).
        probabilities: float32 ``(N, K)`` class probabilities when asked for (softmax of
            logits; normalised scores for ``scores`` outputs), else ``None``.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None = None


class Oracle(ABC):
    """A black-box classifier: uint8 images ``(N, H, W, C)`` in, classes out.

    Subclasses implement :meth:`_infer` (model-input tensor in, raw class rows out) and set
    ``contract`` and ``identity``; this class converts images, counts queries and enforces
    the budget, so every implementation (ONNX today, HTTP later) charges the same way.

    Attributes:
        contract: the :class:`~copycat_tf.contract.Contract` images are sent under.
        identity: a stable identifier of the target (the ONNX file's sha256).
        budget: the most images that may be sent, or ``None`` for no limit.
        queries_spent: images sent so far.
    """

    contract: Contract
    identity: str

    def __init__(self, budget: int | None = None):
        if budget is not None and budget < 0:
            raise CopycatError(f"budget must be >= 0; received {budget}")
        self.budget = budget
        self.queries_spent = 0
        self._cap: int | None = None  # a total set by capped(), below the budget


    @property
    def queries_left(self) -> int | None:
        return None if self.budget is None else self.budget - self.queries_spent

    @contextmanager
    def capped(self, limit: int) -> Iterator[Oracle]:
        """Within the block, refuse to send more than ``limit`` further images.

        A stage that must not overspend (the labeling loop) caps the oracle without touching
        the caller's ``budget``; caps nest, the tighter one wins.

        Example:

        >>> with oracle.capped(1_000):   # doctest: +SKIP
        ...     oracle.query(images)     # BudgetExceeded past 1,000 more images
        """
        saved = self._cap
        cap = self.queries_spent + limit
        self._cap = cap if saved is None else min(saved, cap)
        try:
            yield self
        finally:
            self._cap = saved

    def query(self, images: np.ndarray, *, soft: bool = False) -> Answers:
        """Send ``images`` to the model and return its answers.

        Args:
            images: uint8 ``(N, H, W, C)`` at the contract's image shape.
            soft: also return float32 probabilities.

        Raises:
            BudgetExceeded: the batch would exceed the budget (nothing is sent).
        """
        images = self.contract.check_images(images)
        n = len(images)
        for limit in (self.budget, self._cap):
            if limit is not None and self.queries_spent + n > limit:
                raise BudgetExceeded(
                    f"query budget exhausted: {self.queries_spent} of {limit} images spent, "
                    f"{n} more asked for"
                )
        if n == 0:
            return Answers(np.zeros(0, np.int64), np.zeros((0, self.contract.num_classes), np.float32) if soft else None)
        model_input = self.contract.to_model_input(images)
        # Counted when sent, not when answered: a paid API charges a request that then fails.
        self.queries_spent += n
        raw = self._infer(model_input)
        if raw.shape != (n, self.contract.num_classes):
            raise CopycatError(
                f"model output {self.contract.output.name!r} has shape {raw.shape}; "
                f"expected ({n}, {self.contract.num_classes})"
            )
        if not np.all(np.isfinite(raw)):
            raise CopycatError(f"model output {self.contract.output.name!r} holds NaN or inf values")
        labels = raw.argmax(axis=1).astype(np.int64)
        probs = to_probabilities(raw, self.contract.output.kind) if soft else None
        return Answers(labels, probs)

    @abstractmethod
    def _infer(self, model_input: np.ndarray) -> np.ndarray:
        """Run the model on a model-input tensor; return raw class rows ``(N, K)``."""


@dataclass(frozen=True)
class ModelInfo:
    """What ``copycat-tf inspect`` shows about an ONNX file."""

    path: str
    sha256: str
    ir_version: int
    opsets: dict[str, int]
    producer: str
    parameters: int
    metadata: dict[str, str]
    contract: Contract
    #: The image height/width are dynamic; ``contract`` shows them at the size given or probed.
    dynamic_size: bool = False

    def to_dict(self) -> dict:
        contract = self.contract
        inputs = [contract.input.to_dict()]
        return {
            "path": self.path,
            "sha256": self.sha256,
            "ir_version": self.ir_version,
            "opsets": self.opsets,
            "producer": self.producer,
            "parameters": self.parameters,
            "inputs": inputs,
            "outputs": [contract.output.to_dict()]
            + [{"name": name, "used": False} for name in contract.extra_outputs],
            "num_classes": contract.num_classes,
            "output_kind": contract.output.kind,
            "preprocessing": contract.preprocessing.to_dict(),
            "metadata": self.metadata,
            "dynamic_size": self.dynamic_size,
        }


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


class OnnxOracle(Oracle):
    """A target ONNX model queried through onnxruntime only.

    The contract is read from the session (input name, shape, dtype), completed from the
    ONNX metadata this project writes, then from these arguments, then from defaults and a
    probe of a few noise images (output kind).

    Args:
        path: the ``.onnx`` file.
        preprocessing: the pixel preprocessing: a :class:`~copycat_tf.contract.Preprocessing`,
            or a dict overriding some of its fields (``mean``, ``std``, ``channel_order``)
            while the others keep the metadata's values or the input type's default.
        layout: ``"NHWC"`` or ``"NCHW"``; default detected from the channel axis.
        output: name of the class output when the model has several candidates.
        output_kind: ``"probabilities"``, ``"logits"`` or ``"scores"``; default probed.
        input_size: ``(height, width)`` for models whose image axes are dynamic.
        probe_size: ``(height, width)`` to read the contract at when the image axes are
            dynamic and no ``input_size`` is given (``inspect`` shows such models this way);
            without it such a model is refused, since queries need a real size.
        budget: most images that may be sent; ``None`` for no limit.
        providers: onnxruntime execution providers, default ``["CPUExecutionProvider"]``.
        session_options: an ``onnxruntime.SessionOptions``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        preprocessing: Preprocessing | dict | None = None,
        layout: str | None = None,
        output: str | None = None,
        output_kind: str | None = None,
        input_size: tuple[int, int] | None = None,
        probe_size: tuple[int, int] | None = None,
        budget: int | None = None,
        providers: list[str] | None = None,
        session_options=None,
    ):
        super().__init__(budget)
        import onnxruntime as ort

        self.path = Path(path)
        self.model = load_checked_model(self.path)
        self.identity = file_sha256(self.path)
        self.metadata = {prop.key: prop.value for prop in self.model.metadata_props}
        self.providers = list(providers or ["CPUExecutionProvider"])
        if session_options is None:
            session_options = ort.SessionOptions()
            # onnxruntime's own log lines are not the user's problem: a failing model becomes
            # one CopycatError naming it, not a coloured C++ log line on stderr as well.
            session_options.log_severity_level = 4
            # Spinning worker threads would take the CPU from the threads decoding the next batch.
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=session_options, providers=self.providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CopycatError(f"{self.path}: onnxruntime cannot load it: {first_line(exc)}") from exc
        self.probe_size = probe_size
        #: The model's image height/width are dynamic (set by ``input_size`` or ``probe_size``).
        self.dynamic_size = False
        stored = self._stored_contract()
        self.contract = self._read_contract(
            stored, preprocessing, layout, output, output_kind, input_size
        )

    def _stored_contract(self) -> dict:
        text = self.metadata.get(METADATA_KEY)
        if not text:
            return {}
        try:
            stored = json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError, huge numbers, deep nesting
            log.warning("%s: ignoring unreadable %s metadata", self.path, METADATA_KEY)
            return {}
        if not isinstance(stored, dict):
            return {}
        for part in ("input", "output", "preprocessing"):
            if not isinstance(stored.get(part, {}), dict):
                raise CopycatError(
                    f"{self.path}: its {METADATA_KEY} metadata is malformed ({part!r} is a "
                    f"{type(stored[part]).__name__}, not an object); remove that metadata entry "
                    "or describe the input with --mean/--std/--layout"
                )
        return stored

    def _read_contract(self, stored, preprocessing, layout, output, output_kind, input_size):
        image_input = self._read_input(stored, layout, input_size)
        if not isinstance(preprocessing, Preprocessing):
            overrides = dict(preprocessing or {})
            unknown = set(overrides) - {"mean", "std", "channel_order"}
            if unknown:
                raise CopycatError(f"preprocessing overrides take mean, std and channel_order; "
                                   f"received {sorted(unknown)}")
            base = None
            if "preprocessing" in stored:
                try:
                    base = Preprocessing.from_dict(stored["preprocessing"])
                except (CopycatError, TypeError, ValueError) as exc:
                    if not {"mean", "std"} <= set(overrides):
                        raise CopycatError(
                            f"{self.path}: the preprocessing in its {METADATA_KEY} metadata is unusable "
                            f"({first_line(exc)}); pass --mean and --std to give it yourself"
                        ) from exc
            # Each override replaces its own field only: a lone --channel-order bgr must not
            # reset a float model's [0, 1] scaling (a silent 255x input error).
            preprocessing = replace(base or Preprocessing.default_for(image_input.dtype), **overrides)
        stored_output = stored.get("output", {})
        output_meta, extra = self._choose_output(output or stored_output.get("name"))
        partial = Contract(
            input=image_input,
            output=ClassOutput(output_meta.name, 2, "scores"),
            preprocessing=preprocessing,
            extra_outputs=extra,
        )
        probe = self._probe(partial)
        num_classes = probe.shape[1]
        if num_classes < 2:
            raise CopycatError(
                f"{self.path}: output {output_meta.name!r} has {num_classes} column(s); "
                "a classifier needs at least 2 classes"
            )
        if output_kind is None:
            output_kind = stored_output.get("kind") or detect_output_kind(probe)
        if output_kind not in OUTPUT_KINDS:
            raise CopycatError(f"output kind must be one of {OUTPUT_KINDS}; received {output_kind!r}")
        return Contract(
            input=image_input,
            output=ClassOutput(output_meta.name, num_classes, output_kind),
            preprocessing=preprocessing,
            extra_outputs=extra,
        )

    def _read_input(self, stored, layout, input_size) -> ImageInput:
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs) or "none"
            raise CopycatError(
                f"{self.path}: expected one image input, found {len(inputs)} ({names})"
            )
        meta = inputs[0]
        dtype = _ORT_DTYPES.get(meta.type)
        if dtype is None:
            raise CopycatError(
                f"{self.path}: input {meta.name!r} has type {meta.type}; an image input must be "
                f"one of {', '.join(SUPPORTED_INPUT_DTYPES)}"
            )
        shape = [d if isinstance(d, int) and d > 0 else None for d in meta.shape]
        if len(shape) != 4:
            raise CopycatError(
                f"{self.path}: input {meta.name!r} has shape {meta.shape}; expected a rank-4 "
                "image batch (N, H, W, C) or (N, C, H, W)"
            )
        layout = layout or stored.get("input", {}).get("layout") or _detect_layout(shape)
        if layout is None:
            raise CopycatError(
                f"{self.path}: input {meta.name!r} of shape {meta.shape} has no channel axis of "
                "size 1 or 3; pass --layout NHWC or --layout NCHW"
            )
        if layout not in LAYOUTS:
            raise CopycatError(f"layout must be one of {LAYOUTS}; received {layout!r}")
        channel_axis, spatial_axes = (3, (1, 2)) if layout == "NHWC" else (1, (2, 3))
        if shape[channel_axis] not in (1, 3):
            raise CopycatError(
                f"{self.path}: input {meta.name!r} of shape {meta.shape} read as {layout} has "
                f"{shape[channel_axis]} channels; only grayscale (1) or colour (3) images work"
            )
        for axis, size in zip(spatial_axes, input_size or (None, None)):
            if size is not None and not 1 <= int(size) <= 65535:
                raise CopycatError(f"input size must be two whole numbers >= 1; received {input_size}")
            if size is not None:
                if shape[axis] is not None and shape[axis] != size:
                    raise CopycatError(
                        f"{self.path}: input {meta.name!r} is fixed at {meta.shape}; "
                        f"cannot use input size {input_size}"
                    )
                shape[axis] = int(size)
        self.dynamic_size = any(shape[axis] is None for axis in spatial_axes) or input_size is not None
        if any(shape[axis] is None for axis in spatial_axes) and self.probe_size is not None:
            for axis, size in zip(spatial_axes, self.probe_size):
                shape[axis] = shape[axis] or int(size)
        if any(shape[axis] is None for axis in spatial_axes):
            raise CopycatError(
                f"{self.path}: input {meta.name!r} of shape {meta.shape} has a dynamic image "
                "size; pass --input-size HEIGHT,WIDTH"
            )
        height, width = (shape[axis] for axis in spatial_axes)
        if height * width > MAX_INPUT_PIXELS:
            raise CopycatError(
                f"{self.path}: input {meta.name!r} declares {height}x{width} images, over the "
                f"{MAX_INPUT_PIXELS} pixel limit"
            )
        batch = shape[0]
        if batch is not None and (batch > MAX_FIXED_BATCH or batch * height * width > MAX_BATCH_PIXELS):
            raise CopycatError(
                f"{self.path}: input {meta.name!r} declares a fixed batch of {batch} images of "
                f"{height}x{width}, over the limit of {MAX_FIXED_BATCH} images and "
                f"{MAX_BATCH_PIXELS} pixels per batch; export the model with a smaller or dynamic batch"
            )
        return ImageInput(meta.name, tuple(shape), dtype, layout)

    def _choose_output(self, wanted: str | None):
        outputs = self.session.get_outputs()
        candidates = [
            o for o in outputs if o.type in ("tensor(float)", "tensor(double)", "tensor(float16)")
            and len(o.shape) == 2
        ]
        if wanted is not None:
            chosen = [o for o in outputs if o.name == wanted]
            if not chosen:
                raise CopycatError(
                    f"{self.path}: no output named {wanted!r}; outputs are "
                    f"{', '.join(o.name for o in outputs) or 'none'}"
                )
            if chosen[0] not in candidates:
                raise CopycatError(
                    f"{self.path}: output {wanted!r} is {chosen[0].type} {chosen[0].shape}; "
                    "expected rank-2 float class rows (N, classes)"
                )
        elif not candidates:
            described = ", ".join(f"{o.name} {o.type} {o.shape}" for o in outputs) or "none"
            raise CopycatError(
                f"{self.path}: no rank-2 float output (N, classes) to read classes from; "
                f"outputs are: {described}"
            )
        else:
            chosen = candidates[:1]
        chosen = chosen[0]
        return chosen, tuple(o.name for o in outputs if o.name != chosen.name)

    def _probe(self, contract: Contract) -> np.ndarray:
        """Run a few noise images to learn the class count and the output kind (not charged)."""
        rng = np.random.default_rng(0)
        batch = contract.input.batch_size or 4
        images = rng.integers(0, 256, (batch, *contract.image_shape), dtype=np.uint8)
        self.contract = contract
        try:
            raw = self._infer(contract.to_model_input(images))
        except CopycatError:
            raise
        except Exception as exc:
            raise CopycatError(f"{self.path}: the model fails on a test batch: {first_line(exc)}") from exc
        if raw.ndim != 2 or raw.shape[0] != batch:
            raise CopycatError(
                f"{self.path}: output {contract.output.name!r} gave shape {raw.shape} for "
                f"{batch} images; expected ({batch}, classes)"
            )
        if not np.all(np.isfinite(raw)):
            raise CopycatError(f"{self.path}: output {contract.output.name!r} holds NaN or inf values")
        return raw

    def _infer(self, model_input: np.ndarray) -> np.ndarray:
        fixed = self.contract.input.batch_size
        if fixed is None:
            return self._run(model_input)
        rows = []
        for start in range(0, len(model_input), fixed):
            chunk = model_input[start : start + fixed]
            missing = fixed - len(chunk)
            if missing:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], missing, axis=0)])
            rows.append(self._run(chunk)[: fixed - missing])
        return np.concatenate(rows)

    def _run(self, model_input: np.ndarray) -> np.ndarray:
        output = self.session.run(
            [self.contract.output.name], {self.contract.input.name: model_input}
        )[0]
        return np.asarray(output, dtype=np.float32)

    def info(self) -> ModelInfo:
        """The file's identity, provenance and contract, for ``inspect``."""
        parameters = _parameter_count(self.model.graph)
        producer = " ".join(p for p in (self.model.producer_name, self.model.producer_version) if p)
        return ModelInfo(
            path=str(self.path),
            sha256=self.identity,
            ir_version=int(self.model.ir_version),
            opsets={(o.domain or "ai.onnx"): int(o.version) for o in self.model.opset_import},
            producer=producer or "unknown",
            parameters=parameters,
            metadata=self.metadata,
            contract=self.contract,
            dynamic_size=self.dynamic_size,
        )


def _parameter_count(graph) -> int:
    """Weights held as initializers or as Constant nodes (some exporters, PaddlePaddle's
    among them, store every weight as a Constant), subgraphs included."""
    count = sum(int(np.prod(t.dims)) for t in graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Constant" and attribute.name == "value":
                count += int(np.prod(attribute.t.dims))
            count += sum(_parameter_count(g) for g in [attribute.g, *attribute.graphs] if g.node or g.initializer)
    return count


def _detect_layout(shape: list[int | None]) -> str | None:
    nhwc = shape[3] in (1, 3)
    nchw = shape[1] in (1, 3)
    if nhwc and nchw:
        log.warning("input shape %s is ambiguous; reading it as NHWC (override with layout)", shape)
        return "NHWC"
    if nhwc:
        return "NHWC"
    if nchw:
        return "NCHW"
    return None
