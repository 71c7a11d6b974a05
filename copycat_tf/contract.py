"""The black box's input/output contract: how a uint8 image becomes the model's input tensor.

Every stage talks in uint8 images shaped ``(N, H, W, C)`` with RGB (or grayscale) channels.
The :class:`Contract` is the one place that knows how the target wants them: layout, dtype,
``(pixel - mean) / std`` preprocessing and channel order. It is printable, saved in every
fake dataset's manifest and in the ONNX metadata of the models this project exports.

Example:

>>> contract = Contract(
...     input=ImageInput(name="x", shape=(None, 3, 32, 32), dtype="float32", layout="NCHW"),
...     output=ClassOutput(name="logits", num_classes=10, kind="logits"),
...     preprocessing=Preprocessing(mean=(0.0,), std=(255.0,)),
... )
>>> contract.image_shape
(32, 32, 3)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from copycat_tf.errors import CopycatError

LAYOUTS = ("NHWC", "NCHW")
OUTPUT_KINDS = ("probabilities", "logits", "scores")
CHANNEL_ORDERS = ("rgb", "bgr")
SUPPORTED_INPUT_DTYPES = ("float32", "float16", "float64", "uint8", "int8", "int32", "int64")
METADATA_KEY = "copycat_tf.contract"
#: The other metadata entries copycat-tf writes into the ONNX files it exports.
ROLE_KEY = "copycat_tf.role"  # "target" or "copycat"
TARGET_SHA256_KEY = "copycat_tf.target_sha256"  # a copycat's target
QUERIES_KEY = "copycat_tf.queries"  # queries the copycat's fake datasets cost
ARCH_KEY = "copycat_tf.arch"
DATASET_KEY = "copycat_tf.dataset"  # what a reproduction target was trained on
CLASS_NAMES_KEY = "copycat_tf.class_names"  # JSON list, one name per class


@dataclass(frozen=True)
class Preprocessing:
    """Model input = ``(pixel - mean) / std``, pixels in ``[0, 255]``, in ``channel_order``.

    Args:
        mean: one value, or one per channel, in pixel units.
        std: one value, or one per channel, in pixel units (``255`` scales to ``[0, 1]``).
        channel_order: ``"rgb"`` or ``"bgr"`` (ignored for grayscale inputs).
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: str = "rgb"

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in np.atleast_1d(self.mean)))
        object.__setattr__(self, "std", tuple(float(v) for v in np.atleast_1d(self.std)))
        if len(self.mean) not in (1, 3) or len(self.std) not in (1, 3):
            raise CopycatError(
                f"mean and std take 1 or 3 values; received mean={self.mean}, std={self.std}"
            )
        if any(s == 0 or not np.isfinite(s) for s in self.std) or not all(
            np.isfinite(self.mean)
        ):
            raise CopycatError(f"std must be finite and non-zero; received std={self.std}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise CopycatError(
                f"channel order must be one of {CHANNEL_ORDERS}; received {self.channel_order!r}"
            )

    @classmethod
    def default_for(cls, dtype: str) -> Preprocessing:
        """Float inputs get ``[0, 1]`` scaling; integer inputs get raw pixels."""
        return cls(std=(255.0,)) if dtype.startswith("float") else cls()

    @property
    def is_identity(self) -> bool:
        return all(m == 0 for m in self.mean) and all(s == 1 for s in self.std)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "channel_order": self.channel_order}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(
            mean=tuple(data.get("mean", (0.0,))),
            std=tuple(data.get("std", (1.0,))),
            channel_order=data.get("channel_order", "rgb"),
        )


@dataclass(frozen=True)
class ImageInput:
    """The model's single image input as declared: ``shape`` has ``None`` for dynamic axes."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    layout: str

    @property
    def batch_size(self) -> int | None:
        """The fixed batch size, or ``None`` when the batch axis is dynamic."""
        return self.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)``."""
        if self.layout == "NHWC":
            _, h, w, c = self.shape
        else:
            _, c, h, w = self.shape
        return (h, w, c)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ImageInput:
        return cls(data["name"], tuple(data["shape"]), data["dtype"], data["layout"])


@dataclass(frozen=True)
class ClassOutput:
    """The model output that holds one row of class values per image."""

    name: str
    num_classes: int
    kind: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClassOutput:
        return cls(data["name"], int(data["num_classes"]), data["kind"])


@dataclass(frozen=True)
class Contract:
    """Everything needed to send uint8 images to the model and read classes back."""

    input: ImageInput
    output: ClassOutput
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    extra_outputs: tuple[str, ...] = ()

    def __post_init__(self):
        if self.input.layout not in LAYOUTS:
            raise CopycatError(f"layout must be one of {LAYOUTS}; received {self.input.layout!r}")
        if self.output.kind not in OUTPUT_KINDS:
            raise CopycatError(
                f"output kind must be one of {OUTPUT_KINDS}; received {self.output.kind!r}"
            )
        if not self.input.dtype.startswith("float") and not self.preprocessing.is_identity:
            raise CopycatError(
                f"input {self.input.name!r} takes {self.input.dtype} values, so mean/std "
                f"preprocessing cannot apply; received mean={self.preprocessing.mean}, "
                f"std={self.preprocessing.std}"
            )
        channels = self.image_shape[2]
        for values, what in ((self.preprocessing.mean, "mean"), (self.preprocessing.std, "std")):
            if len(values) == 3 and channels != 3:
                raise CopycatError(
                    f"{what} has 3 values but input {self.input.name!r} has {channels} channel(s)"
                )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of the uint8 images this contract accepts."""
        return self.input.image_shape

    @property
    def num_classes(self) -> int:
        return self.output.num_classes

    def to_model_input(self, images: np.ndarray) -> np.ndarray:
        """Turn uint8 images ``(N, H, W, C)`` into the tensor the model takes."""
        x = images.astype(np.float32)
        if self.image_shape[2] == 3 and self.preprocessing.channel_order == "bgr":
            x = x[..., ::-1]
        if not self.preprocessing.is_identity:
            mean = np.asarray(self.preprocessing.mean, np.float32)
            std = np.asarray(self.preprocessing.std, np.float32)
            x = (x - mean) / std
        if self.input.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x.astype(self.input.dtype))

    def check_images(self, images: np.ndarray) -> np.ndarray:
        """Raise a clear error unless ``images`` is uint8 ``(N, H, W, C)`` for this contract."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise CopycatError(
                f"images must be uint8 of shape (N, {', '.join(map(str, self.image_shape))}) "
                f"for input {self.input.name!r}; received {images.dtype} {images.shape}"
            )
        return images

    def compatible_with(self, other: Contract) -> list[str]:
        """What differs between two contracts that must be interchangeable (empty if none)."""
        problems = []
        if self.image_shape != other.image_shape:
            problems.append(f"image shape {self.image_shape} vs {other.image_shape}")
        if self.num_classes != other.num_classes:
            problems.append(f"{self.num_classes} vs {other.num_classes} classes")
        return problems

    def to_dict(self) -> dict:
        return {
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "extra_outputs": list(self.extra_outputs),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Contract:
        return cls(
            input=ImageInput.from_dict(data["input"]),
            output=ClassOutput.from_dict(data["output"]),
            preprocessing=Preprocessing.from_dict(data.get("preprocessing", {})),
            extra_outputs=tuple(data.get("extra_outputs", ())),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        """A few human-readable lines, as ``copycat-tf inspect`` prints them."""
        h, w, c = self.image_shape
        batch = self.input.batch_size or "dynamic"
        p = self.preprocessing
        return "\n".join(
            [
                f"input   {self.input.name!r}: {self.input.dtype} {list(self.input.shape)} "
                f"{self.input.layout}, {h}x{w}, {'grayscale' if c == 1 else 'colour'}, "
                f"batch {batch}",
                f"preproc (pixel - {_fmt(p.mean)}) / {_fmt(p.std)}, "
                + ("grayscale" if c == 1 else f"channel order {p.channel_order}"),
                f"output  {self.output.name!r}: {self.output.num_classes} classes, "
                f"{self.output.kind}"
                + (f" (ignored outputs: {', '.join(self.extra_outputs)})" if self.extra_outputs else ""),
            ]
        )


def _fmt(values: tuple[float, ...]) -> str:
    text = [f"{v:g}" for v in values]
    return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"


def to_probabilities(raw: np.ndarray, kind: str) -> np.ndarray:
    """Rows of class probabilities from raw outputs of the given kind (float32)."""
    raw = raw.astype(np.float64)
    if kind == "logits":
        shifted = raw - raw.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        probs = exp / exp.sum(axis=1, keepdims=True)
    elif kind == "scores":
        clipped = np.clip(raw, 0, None)
        total = clipped.sum(axis=1, keepdims=True)
        uniform = np.full_like(clipped, 1.0 / clipped.shape[1])
        probs = np.where(total > 0, clipped / np.where(total > 0, total, 1), uniform)
    else:
        probs = raw
    return probs.astype(np.float32)


def detect_output_kind(raw: np.ndarray) -> str:
    """Tell probabilities (rows in [0, 1] summing to 1), logits (any negative) and scores."""
    if np.all((raw >= -1e-6) & (raw <= 1 + 1e-6)) and np.allclose(raw.sum(axis=1), 1, atol=1e-3):
        return "probabilities"
    if np.any(raw < 0):
        return "logits"
    return "scores"
