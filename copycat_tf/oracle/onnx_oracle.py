""":class:`OnnxOracle`: a target ONNX file queried through onnxruntime only (inputs in, outputs
out; no weights, no gradients), its contract read from the session, the metadata this
project writes, the caller's overrides and a probe of a few noise images.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from copycat_tf.contract import (
    CLASS_NAMES_KEY,
    LAYOUTS,
    METADATA_KEY,
    OUTPUT_KINDS,
    SUPPORTED_INPUT_DTYPES,
    ClassOutput,
    Contract,
    ImageInput,
    Preprocessing,
    detect_output_kind,
)
from copycat_tf.errors import CopycatError, first_line
from copycat_tf.files import file_sha256
from copycat_tf.oracle.base import MAX_BATCH_PIXELS, MAX_FIXED_BATCH, MAX_INPUT_PIXELS, Oracle
from copycat_tf.oracle.info import TargetInfo
from copycat_tf.oracle.onnx_file import load_checked_model, parameter_count

log = logging.getLogger(__name__)


#: Input values per image (height x width x channels) above which onnxruntime runs without
#: its CPU memory arena. The arena never gives back what its largest batch took: a VGG16 at
#: 240 px kept 670 MB after batches of 8 (2.2 GB after 64), 240 MB without it, at the same
#: speed within a busy host's noise (each tensor is megabytes, mapped and unmapped whole).
#: For small images the arena's reuse matters: a 32 px conv net took 0.05 ms of CPU an
#: image with it and 0.09 ms without (BENCHMARKS.md, Large targets). 2**16 is about 148 px
#: in colour, between the two.
ARENA_IMAGE_VALUES = 2**16

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}


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
        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            # onnxruntime would only warn and fall back to the CPU: say it once, clearly.
            raise CopycatError(
                f"execution provider {', '.join(missing)} is not available in this onnxruntime "
                f"(available: {', '.join(ort.get_available_providers())}); install the matching "
                "onnxruntime build or drop --provider"
            )
        if session_options is None:
            session_options = ort.SessionOptions()
            # onnxruntime's own log lines are not the user's problem: a failing model becomes
            # one CopycatError naming it, not a coloured C++ log line on stderr as well.
            session_options.log_severity_level = 4
            # Spinning worker threads would take the CPU from the threads decoding the next batch.
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # The arena keeps its largest batch's buffers for the session's life, beside the
            # copycat's training later in the same process; large images do without it.
            session_options.enable_cpu_mem_arena = image_values(self.model, input_size) <= ARENA_IMAGE_VALUES
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
        #: One name per class when the model's metadata gives them (as copycat-tf's targets
        #: do), else ``None``.
        self.class_names = _class_names(self.metadata, self.contract.num_classes)

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

    def info(self) -> TargetInfo:
        """The file's identity, provenance and contract (``inspect`` shows it)."""
        producer = " ".join(p for p in (self.model.producer_name, self.model.producer_version) if p)
        return TargetInfo(
            kind="onnx",
            location=str(self.path),
            identity=self.identity,
            contract=self.contract,
            producer=producer or None,
            parameters=parameter_count(self.model.graph),
            metadata=self.metadata,
            class_names=tuple(self.class_names) if self.class_names else None,
            details={
                "path": str(self.path),
                "sha256": self.identity,
                "ir_version": int(self.model.ir_version),
                "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in self.model.opset_import},
                "dynamic_size": self.dynamic_size,
            },
        )


def image_values(model, input_size: tuple[int, int] | None = None) -> int:
    """Values in one image of ``model``'s first input, as far as the file (or ``input_size``,
    for dynamic image axes) declares them.

    >>> from onnx import TensorProto, helper
    >>> image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 240, 240, 3])
    >>> image_values(helper.make_model(helper.make_graph([], "g", [image], [])))
    172800
    >>> dynamic = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    >>> image_values(helper.make_model(helper.make_graph([], "g", [dynamic], [])), (240, 240))
    172800
    """
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        return 0
    declared = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim[1:]]
    values = math.prod(v for v in declared if v > 0)
    if input_size is not None and 0 in declared:
        values *= math.prod(int(v) for v in input_size)
    return values


def _class_names(metadata: dict[str, str], num_classes: int) -> list[str] | None:
    try:
        names = json.loads(metadata.get(CLASS_NAMES_KEY, "null"))
    except (ValueError, RecursionError):
        return None
    if isinstance(names, list) and len(names) == num_classes and all(isinstance(n, str) for n in names):
        return [name[:80] for name in names]
    return None


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
