"""Where a remote model is and how to talk to it: URL, protocol, headers, request rate.

:class:`Endpoint` reads a model URL (protocol, model name, version) and refuses what could
leak a secret (credentials in the URL, a query string); :func:`parse_headers` and
:func:`parse_rate` read the ``--header`` and ``--rate`` options; :func:`read_header_file`
and :func:`parse_header_lines` read headers kept off the command line (a file, an
environment variable); :func:`merge_headers` lays such sources over each other by name;
:class:`TokenBucket` spaces requests.

Example:

>>> e = Endpoint.parse("https://ml.example.com/api/v2/models/fer/versions/3/infer")
>>> e.protocol, e.model, e.version, e.infer_path
('v2', 'fer', '3', '/api/v2/models/fer/versions/3/infer')
>>> Endpoint.parse("http://127.0.0.1:8501/v1/models/fer").infer_path
'/v1/models/fer:predict'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from copycat_tf.errors import CopycatError

PROTOCOLS = ("v2", "tfserving")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token
_FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-type"}
_V2_PATH = re.compile(
    r"(?P<prefix>.*?)/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/infer)?/?")
_V1_PATH = re.compile(
    r"(?P<prefix>.*?)/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?::predict)?/?")
_RATE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*([a-z]+))?\s*", re.IGNORECASE)
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str | float | None) -> float | None:
    """Requests per second from ``"20/s"``, ``"600/min"``, ``"1000/h"`` or a number.

    >>> parse_rate("20/s"), parse_rate("90/min"), parse_rate(2.5), parse_rate(None)
    (20.0, 1.5, 2.5, None)
    """
    if rate is None:
        return None
    if isinstance(rate, (int, float)) and not isinstance(rate, bool):
        value = float(rate)
    else:
        match = _RATE.fullmatch(str(rate))
        per = _PER.get((match.group(2) or "s").lower()) if match else None
        if per is None:
            raise CopycatError(
                f"rate must look like 20/s, 600/min or 1000/h (requests per unit); received {rate!r}"
            )
        value = float(match.group(1)) / per
    if not math.isfinite(value) or value <= 0:
        raise CopycatError(f"rate must be a positive number of requests; received {rate!r}")
    return value


def parse_headers(headers: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """Headers as a dict, from a mapping or from ``"Name: value"`` strings (``--header``).

    Values are secrets: no error message repeats one.

    >>> parse_headers(["Authorization: Bearer abc", "X-Team:red"])
    {'Authorization': 'Bearer abc', 'X-Team': 'red'}
    """
    if headers is None:
        return {}
    if isinstance(headers, Mapping):
        pairs = [(str(k), str(v)) for k, v in headers.items()]
    else:
        pairs = []
        for number, text in enumerate(headers, 1):
            name, colon, value = str(text).partition(":")
            if not colon or not name.strip():
                raise CopycatError(
                    f"header #{number} is not 'Name: value' (its text is not shown, as it may "
                    "hold a secret); write it as --header 'Authorization: Bearer TOKEN'"
                )
            pairs.append((name.strip(), value.strip()))
    parsed = {}
    for name, value in pairs:
        if not _HEADER_NAME.fullmatch(name):
            raise CopycatError(f"header name {name[:40]!r} is not a valid HTTP header name")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise CopycatError(f"header {name} is set by copycat-tf itself; remove it")
        if any(c in value for c in "\r\n\0"):
            raise CopycatError(f"the value of header {name} holds a line break; remove it")
        parsed[name] = value
    return parsed


def parse_header_lines(text: str, source: str) -> dict[str, str]:
    """Headers from ``Name: value`` lines (a header file, ``COPYCAT_TF_HEADERS``).

    Blank lines and lines starting with ``#`` are ignored. Values are secrets: an error
    names ``source`` and the line number, never the line's text.

    Args:
        text: the lines, newline-separated.
        source: what the text came from, for error messages (a file name, a variable name).

    >>> parse_header_lines("# the vendor's key\\nAuthorization: Bearer abc\\n\\nX-Team: red\\n", "keys.txt")
    {'Authorization': 'Bearer abc', 'X-Team': 'red'}
    >>> parse_header_lines("Authorization Bearer abc", "keys.txt")
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: keys.txt line 1 is not 'Name: value' (its text is not shown, as it may hold a secret); write one header per line, e.g. 'Authorization: Bearer TOKEN'
    """
    pairs = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        # Checked here, not by parse_headers: its message would quote the name, which is
        # part of the secret when the colon is missing from the intended place.
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise CopycatError(
                f"{source} line {number} is not 'Name: value' (its text is not shown, as it may "
                "hold a secret); write one header per line, e.g. 'Authorization: Bearer TOKEN'"
            )
        pairs[name] = value.strip()
    return parse_headers(pairs)


def read_header_file(path: str | os.PathLike) -> dict[str, str]:
    """Headers from a file of ``Name: value`` lines, as ``curl --header @FILE`` reads them.

    Keeps a bearer token out of the process list, shell history and ``docker run`` lines.
    Blank lines and ``#`` comments are ignored; errors never repeat a value.

    Args:
        path: the file.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "headers.txt"
    >>> _ = path.write_text("# expires in June\\nAuthorization: Bearer abc\\n")
    >>> read_header_file(path)
    {'Authorization': 'Bearer abc'}
    >>> read_header_file(path.with_name("absent.txt"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: header file .../absent.txt cannot be read (No such file or directory); give a readable file of 'Name: value' lines
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise CopycatError(
            f"header file {path} cannot be read ({reason}); give a readable file of 'Name: value' lines"
        ) from None
    return parse_header_lines(text, f"header file {path}")


def merge_headers(*layers: Mapping[str, str]) -> dict[str, str]:
    """One set of headers from several sources, a later one replacing an earlier one's
    header of the same name (HTTP names are case-insensitive).

    >>> merge_headers({"Authorization": "Bearer old", "X-Team": "red"}, {"authorization": "Bearer new"})
    {'X-Team': 'red', 'authorization': 'Bearer new'}
    """
    merged: dict[str, str] = {}
    for layer in layers:
        for name, value in layer.items():
            for known in [known for known in merged if known.lower() == name.lower()]:
                del merged[known]
            merged[name] = value
    return merged


@dataclass(frozen=True)
class Endpoint:
    """Where the model is: origin, path prefix, protocol, model name and version.

    >>> e = Endpoint.parse("https://ml.example.com/api/v2/models/fer/versions/3/infer")
    >>> e.protocol, e.model, e.version, e.infer_path
    ('v2', 'fer', '3', '/api/v2/models/fer/versions/3/infer')
    >>> Endpoint.parse("http://127.0.0.1:8501/v1/models/fer").infer_path
    '/v1/models/fer:predict'
    """

    scheme: str
    host: str
    port: int | None
    prefix: str
    protocol: str
    model: str
    version: str | None

    @classmethod
    def parse(cls, url: str, protocol: str | None = None) -> Endpoint:
        if protocol is not None and protocol not in PROTOCOLS:
            raise CopycatError(f"protocol must be one of {PROTOCOLS}; received {protocol!r}")
        try:
            parts = urlsplit(str(url))
            port = parts.port
        except ValueError as exc:
            raise CopycatError(f"target URL {url!r} cannot be parsed ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CopycatError(
                f"target URL must be http:// or https:// with a host; received {shown_url(url)!r}"
            )
        if parts.username is not None or parts.password is not None:
            raise CopycatError(
                "target URL holds credentials (user:password@); pass them as a header instead, "
                "e.g. --header 'Authorization: Basic ...', so they are never written anywhere"
            )
        if parts.query or parts.fragment:
            raise CopycatError(
                "target URL has a query string or fragment; copycat-tf sends none (an API key "
                "belongs in a header, e.g. --header 'X-Api-Key: ...')"
            )
        matches = {"v2": _V2_PATH.fullmatch(parts.path), "tfserving": _V1_PATH.fullmatch(parts.path)}
        found = [name for name, match in matches.items() if match]
        if protocol is None and len(found) != 1:
            raise CopycatError(
                f"cannot tell the protocol from {shown_url(url)!r}: the path must end in "
                "/v2/models/NAME[/versions/V] (Open Inference Protocol) or "
                "/v1/models/NAME[/versions/V] (TF Serving, KServe V1)"
            )
        protocol = protocol or found[0]
        match = matches[protocol]
        if match is None:
            expected = "/v2/models/NAME" if protocol == "v2" else "/v1/models/NAME"
            raise CopycatError(
                f"protocol {protocol} needs a URL path ending in {expected}[/versions/V]; "
                f"received {shown_url(url)!r}"
            )
        return cls(parts.scheme, parts.hostname, port, match["prefix"], protocol, match["model"],
                   match["version"])

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port else "")

    @property
    def model_path(self) -> str:
        root = "/v2/models/" if self.protocol == "v2" else "/v1/models/"
        return f"{self.prefix}{root}{self.model}" + (f"/versions/{self.version}" if self.version else "")

    @property
    def infer_path(self) -> str:
        return self.model_path + ("/infer" if self.protocol == "v2" else ":predict")

    @property
    def metadata_path(self) -> str:
        return self.model_path if self.protocol == "v2" else self.model_path + "/metadata"

    @property
    def ready_path(self) -> str:
        return f"{self.prefix}/v2/health/ready" if self.protocol == "v2" else self.model_path

    @property
    def url(self) -> str:
        """The canonical model URL (safe to show and store: it holds no secret)."""
        return self.origin + self.model_path

    @property
    def is_loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")


class TokenBucket:
    """Spaces calls at least ``1 / rate`` seconds apart, across threads.

    ``acquire()`` reserves the next free slot and sleeps until it comes; reservations are
    granted in call order, so waiting threads never spin.

    >>> bucket = TokenBucket(1000.0)
    >>> waits = [bucket.acquire() for _ in range(3)]
    >>> waits[0] == 0.0 and all(w <= 0.002 for w in waits)
    True
    """

    def __init__(self, rate: float):
        self.rate = rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self.rate
        delay = slot - now
        if delay > 0:
            time.sleep(delay)
        return delay


def endpoint_identity(endpoint: Endpoint) -> str:
    """A remote target's stable sha256: of its protocol and canonical URL (no header, no secret)."""
    return hashlib.sha256(json.dumps({"protocol": endpoint.protocol, "url": endpoint.url},
                                     sort_keys=True).encode()).hexdigest()


def shown_url(url: str) -> str:
    """A URL without what may hold secrets (user info, query string), for messages and records.

    Example:

    >>> shown_url("https://user:pw@api.example.com:8443/v2/models/fer?key=abc")
    'https://api.example.com:8443/v2/models/fer'
    """
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal keeps its brackets
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else str(url)[:200].split("?")[0]
    except ValueError:
        return "(unparseable URL)"


def non_negative(name: str, value) -> float:
    """``value`` as a float when it is a finite number >= 0, else a CopycatError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise CopycatError(f"{name.replace('_', '-')} must be a number >= 0; received {value!r}")
    return float(value)
