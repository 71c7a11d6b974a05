"""One door for every target: an ONNX file or an http(s) URL."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields

from copycat_tf.errors import CopycatError
from copycat_tf.oracle.base import Oracle
from copycat_tf.oracle.http.endpoint import shown_url
from copycat_tf.oracle.http.oracle import HttpOracle
from copycat_tf.oracle.onnx_oracle import OnnxOracle
from copycat_tf.oracle.options import ContractOverrides, HttpOptions


def is_url(target: str | object) -> bool:
    """True when ``target`` names a remote model (``http://`` or ``https://``)."""
    return isinstance(target, str) and re.match(r"https?://", target, re.IGNORECASE) is not None


def open_oracle(target, **options) -> Oracle:
    """The oracle for ``target``: :class:`HttpOracle` for an http(s) URL, else
    :class:`~copycat_tf.oracle.OnnxOracle` for an ONNX file, from flat keyword options (the
    fields of :class:`~copycat_tf.oracle.options.ContractOverrides` and, for a URL,
    :class:`~copycat_tf.oracle.options.HttpOptions`, plus ``budget``, ``price_per_1k`` and
    ``contract``; for a file, the :class:`OnnxOracle` arguments). A convenience for scripts:
    :class:`~copycat_tf.oracle.TargetSpec` is the typed way.

    Options that apply to the other kind of target only raise a :class:`CopycatError`.

    >>> open_oracle("ftp://example.com/model")
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: target ftp://example.com/model: only http:// and https:// URLs are supported
    """
    text = str(target)
    given = {name: value for name, value in options.items() if value is not None}
    if is_url(text):
        overrides = {f.name for f in fields(ContractOverrides)}
        transport = {f.name for f in fields(HttpOptions)}
        own = {"budget", "price_per_1k", "contract"}
        foreign = sorted(set(given) - overrides - transport - own)
        if foreign:
            raise CopycatError(f"{', '.join(foreign)} cannot be used with a URL as the target")
        return HttpOracle(text, http=HttpOptions(**{k: v for k, v in given.items() if k in transport}),
                          overrides=ContractOverrides(**{k: v for k, v in given.items() if k in overrides}),
                          **{k: v for k, v in given.items() if k in own})
    if re.match(r"[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        raise CopycatError(f"target {shown_url(text)}: only http:// and https:// URLs are supported")
    accepted = set(inspect.signature(OnnxOracle.__init__).parameters) - {"self"}
    foreign = sorted(set(given) - accepted)
    if foreign:
        raise CopycatError(f"{', '.join(foreign)} cannot be used with an ONNX file as the target")
    return OnnxOracle(target, **given)
