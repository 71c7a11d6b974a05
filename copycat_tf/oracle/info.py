"""What every oracle says about its target: one :class:`TargetInfo` for files and URLs alike.

``inspect`` prints it, the audit report and a run's record carry it; callers never need to
know which kind of oracle they hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from copycat_tf.contract import Contract

#: The kinds of target an oracle can stand for.
TARGET_KINDS = ("onnx", "http")


@dataclass(frozen=True)
class TargetInfo:
    """The target's identity, provenance and contract, as the oracle sees it.

    Attributes:
        kind: ``"onnx"`` (a file queried through onnxruntime) or ``"http"`` (an inference API).
        location: the file's path, or the URL (never with credentials).
        identity: a stable sha256: of the file, or of the canonical endpoint.
        contract: the :class:`~copycat_tf.contract.Contract` images are sent under.
        producer: what made the model (``"tf2onnx 1.17.0"``), or ``None`` when unknown.
        parameters: weights in the model, or ``None`` when they cannot be counted (an API).
        metadata: the model's own key/value metadata.
        class_names: the classes in index order, when the target names them.
        details: what only one kind of target has (ONNX IR version and opsets; an API's
            protocol, model name, version, platform), for display.
        probe_queries: images charged to learn the contract (an API's probe), else 0.

    Example:

    >>> from copycat_tf.contract import ClassOutput, Contract, ImageInput, Preprocessing
    >>> contract = Contract(ImageInput("x", (None, 28, 28, 1), "float32", "NHWC"),
    ...                     ClassOutput("y", 10, "probabilities"), Preprocessing.default_for("float32"))
    >>> info = TargetInfo("onnx", "target.onnx", "ab" * 32, contract, producer="tf2onnx 1.17.0")
    >>> info.channels_text
    'grayscale'
    >>> info.to_dict()["num_classes"]
    10
    """

    kind: str
    location: str
    identity: str
    contract: Contract
    producer: str | None = None
    parameters: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    probe_queries: int = 0

    @property
    def channels_text(self) -> str:
        """``"grayscale"`` for one channel, else the channel order the model expects."""
        return "grayscale" if self.contract.image_shape[2] == 1 else self.contract.preprocessing.channel_order

    def to_dict(self) -> dict:
        """A JSON-ready dict: the common fields, then the kind's own details."""
        contract = self.contract
        return {
            "kind": self.kind,
            "location": self.location,
            "identity": self.identity,
            "producer": self.producer,
            "parameters": self.parameters,
            "inputs": [contract.input.to_dict()],
            "outputs": [contract.output.to_dict()]
            + [{"name": name, "used": False} for name in contract.extra_outputs],
            "num_classes": contract.num_classes,
            "output_kind": contract.output.kind,
            "channels": self.channels_text,
            "preprocessing": contract.preprocessing.to_dict(),
            "class_names": list(self.class_names) if self.class_names else None,
            "metadata": dict(self.metadata),
            "probe_queries": self.probe_queries,
            **dict(self.details),
        }
