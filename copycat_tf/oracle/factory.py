"""One door for every target: an ONNX file or an http(s) URL."""

from __future__ import annotations

import inspect
import re

from copycat_tf.errors import CopycatError
from copycat_tf.oracle.base import Oracle
from copycat_tf.oracle.http.endpoint import shown_url
from copycat_tf.oracle.http.oracle import HttpOracle
from copycat_tf.oracle.onnx_oracle import OnnxOracle


def is_url(target: str | object) -> bool:
    """True when ``target`` names a remote model (``http://`` or ``https://``)."""
    return isinstance(target, str) and re.match(r"https?://", target, re.IGNORECASE) is not None


def open_oracle(target, **options) -> Oracle:
    """The oracle for ``target``: :class:`HttpOracle` for an http(s) URL, else
    :class:`~copycat_tf.oracle.OnnxOracle` for an ONNX file.

    Options that apply to the other kind of target only raise a :class:`CopycatError`.

    >>> open_oracle("ftp://example.com/model")
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: target ftp://example.com/model: only http:// and https:// URLs are supported
    """
    text = str(target)
    if is_url(text):
        cls = HttpOracle
    elif re.match(r"[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        raise CopycatError(f"target {shown_url(text)}: only http:// and https:// URLs are supported")
    else:
        cls = OnnxOracle
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    given = {name: value for name, value in options.items() if value is not None}
    foreign = sorted(set(given) - accepted)
    if foreign:
        kind = "a URL" if cls is HttpOracle else "an ONNX file"
        raise CopycatError(f"{', '.join(foreign)} cannot be used with {kind} as the target")
    return cls(target, **given)
