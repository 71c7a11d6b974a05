"""What a user may say about a target beyond its name: contract overrides and HTTP options.

Two small typed records, shared by :class:`~copycat_tf.oracle.TargetSpec` (a target named
once) and the oracles themselves: an :class:`~copycat_tf.oracle.HttpOracle` takes them as
they are; an :class:`~copycat_tf.oracle.OnnxOracle` takes the overrides that apply to a file.

Example:

>>> ContractOverrides(layout="NCHW", num_classes=7).given()
{'layout': 'NCHW', 'num_classes': 7}
>>> HttpOptions(headers=("Authorization: Bearer s3cret",), rate="20/s").header_names()
['Authorization']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from copycat_tf.oracle.http.endpoint import parse_headers

#: Overrides only an API can need: a file's metadata always says these.
HTTP_ONLY_OVERRIDES = ("class_names", "input_name", "channels", "dtype", "num_classes")


@dataclass(frozen=True)
class ContractOverrides:
    """What the user says about the target's contract where the model does not (all optional).

    Args:
        preprocessing: ``{"mean": ..., "std": ..., "channel_order": ...}``, each overriding
            only its own field.
        layout: ``"NHWC"`` or ``"NCHW"``.
        output: the output holding the class rows, when there are several.
        output_kind: ``"probabilities"``, ``"logits"``, ``"scores"`` (or ``"labels"`` for an API).
        input_size: ``(height, width)`` for a model whose input size is dynamic.
        class_names: an API's classes in index order, when it answers names.
        input_name, channels, dtype, num_classes: what an API's metadata may leave unsaid:
            the input's name, image channels (1 or 3), the input's dtype and the class count
            (URL targets only; a file says all of it).
    """

    preprocessing: Mapping[str, object] | None = None
    layout: str | None = None
    output: str | None = None
    output_kind: str | None = None
    input_size: tuple[int, int] | None = None
    class_names: tuple[str, ...] | str | None = None
    input_name: str | None = None
    channels: int | None = None
    dtype: str | None = None
    num_classes: int | None = None

    def given(self) -> dict:
        """The overrides given, by the oracles' argument names."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if values["preprocessing"] is not None:
            values["preprocessing"] = dict(values["preprocessing"])
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class HttpOptions:
    """How to talk to a URL target (all optional; :class:`~copycat_tf.oracle.HttpOracle`'s defaults).

    Args:
        protocol: ``"v2"`` or ``"tfserving"`` (default read from the URL).
        headers: ``"Name: value"`` strings sent with every request. Values are secrets:
            they are never shown, recorded or logged.
        rate: most requests per second (``"20/s"``, ``"600/min"``).
        concurrency: requests in flight at once.
        timeout: seconds per attempt.
        insecure: skip TLS certificate checks.
        max_batch: most images per request.
        max_retry_time: seconds of retrying one request before giving up with an error.
        backoff: the first wait before a retry, in seconds (it doubles, with jitter).
        ca_certs: a PEM file of CA certificates to trust instead of the system's.
        max_response_bytes: largest answer body read.
    """

    protocol: str | None = None
    headers: tuple[str, ...] | Mapping[str, str] = field(default=(), repr=False)
    rate: str | float | None = None
    concurrency: int | None = None
    timeout: float | None = None
    insecure: bool | None = None
    max_batch: int | None = None
    max_retry_time: float | None = None
    backoff: float | None = None
    ca_certs: str | None = None
    max_response_bytes: int | None = None

    def given(self) -> dict:
        """The options given (headers parsed to a dict: their values stay in memory only)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["headers"] = self.parsed_headers() or None
        return {name: value for name, value in values.items() if value is not None}

    def parsed_headers(self) -> dict[str, str]:
        return parse_headers(self.headers if isinstance(self.headers, Mapping) else list(self.headers))

    def header_names(self) -> list[str]:
        return sorted(self.parsed_headers())
