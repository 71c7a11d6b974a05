"""Remote targets: the oracle behind an HTTP inference API.

:class:`HttpOracle` is the second :class:`~copycat_tf.oracle.Oracle`: the target is a URL
that speaks one of the two inference protocols vendors serve models with —

- **Open Inference Protocol v2** (KServe, Triton, MLServer, Seldon):
  ``POST {base}/v2/models/{name}[/versions/{v}]/infer``, metadata at
  ``GET {base}/v2/models/{name}[/versions/{v}]``, readiness at ``GET {base}/v2/health/ready``;
- **TF Serving REST** (and KServe V1, which has the same request and answer):
  ``POST {base}/v1/models/{name}[/versions/{v}]:predict`` with ``{"instances": [...]}``,
  metadata at ``GET {base}/v1/models/{name}[/versions/{v}]/metadata``.

The protocol is read from the URL's path (``/v2/models/...`` or ``/v1/models/...``) unless
given. The contract comes from the metadata endpoint where there is one, else from the
arguments; what neither says (the class count, the output kind) is learnt from a probe of
two noise images, which is a real request to what may be a paid API, so **probe images
are charged** like any other query (``probe_queries`` says how many; pass ``output_kind``
and ``num_classes`` or a whole ``contract`` to need none).

Accounting (``queries_spent``) is exact from the client's side: an attempt is charged as
soon as its request has gone out, unless the server's status says it did not serve it
(a redirect, any 4xx, or 503). A 2xx answer — valid or not — a 500/502/504, a timeout or a connection
dropped after sending are charged, since the model may have run on them; a connection
that never opened is not. So ``queries_spent`` never counts less than the model saw, and
the budget is checked before every attempt, retries included: a run never sends more
images than its budget.

Transport: every failure that may pass (a connection error, a timeout, 429, 5xx) is retried
with exponential backoff and jitter, honouring ``Retry-After``, for at most
``max_retry_time`` seconds per request; then one :class:`~copycat_tf.errors.CopycatError`
says what happened and how much was spent. Other 4xx, redirects (never followed, so
credentials cannot leave for another host), TLS failures and bad answers (not JSON, an HTML
page, a body over ``max_response_bytes``, the wrong shape, NaN, an unknown class name) end
the call at once with one clear error. A token bucket spaces requests (``rate``) and up to
``concurrency`` requests of at most ``max_batch`` images each are in flight at once.

Header values (``Authorization: Bearer ...``) are secrets: they are sent and never shown —
not in ``identity``, ``repr``, ``info()``, log lines or error messages (server text quoted in
an error has them masked).

HTTP client: ``urllib3`` (2.x), used directly. It is already installed wherever TensorFlow
is (TensorFlow requires ``requests``, which requires ``urllib3``), its ``PoolManager`` is
thread-safe (``requests.Session`` is not documented to be), it can stream a body so a size
cap holds before the bytes are in memory, and redirects, retries and proxies from the
environment are all off unless asked for. ``httpx`` would add five packages for nothing
used here; the retry loop is our own because charging needs to know, per attempt, whether
the request went out.

Example:

>>> oracle = HttpOracle("https://api.example.com/v2/models/fer",           # doctest: +SKIP
...                     headers={"Authorization": "Bearer ..."}, budget=20_000,
...                     rate="20/s", concurrency=8, price_per_1k=1.5)
>>> print(oracle.contract.describe())                                      # doctest: +SKIP
>>> answers = oracle.query(images, soft=True)                              # doctest: +SKIP
>>> oracle.queries_spent, oracle.retries, oracle.cost                      # doctest: +SKIP
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import random
import re
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InsecureRequestWarning,
    ReadTimeoutError,
    SSLError,
)

from copycat_tf.contract import (
    LAYOUTS,
    OUTPUT_KINDS,
    ClassOutput,
    Contract,
    ImageInput,
    Preprocessing,
    detect_output_kind,
)
from copycat_tf.errors import (
    BudgetExceeded,
    CopycatError,
    check_positive_number,
    check_whole,
    first_line,
)
from copycat_tf.oracle import MAX_FIXED_BATCH, MAX_INPUT_PIXELS, Answers, Oracle

log = logging.getLogger(__name__)

PROTOCOLS = ("v2", "tfserving")
#: The output kinds an HTTP target may have: a label-only API answers one class per image.
HTTP_OUTPUT_KINDS = (*OUTPUT_KINDS, "labels")
PROBE_IMAGES = 2
DEFAULT_MAX_BATCH = 64
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRY_TIME = 120.0
DEFAULT_MAX_RESPONSE_BYTES = 32 << 20
#: Bodies of error answers are only quoted, so little of them is read.
_ERROR_BODY_BYTES = 64 << 10
_MAX_CLASSES = 1_000_000
DEFAULT_BACKOFF = 0.5
_BACKOFF_LONGEST = 30.0
_NOT_SERVED = 503  # with every 3xx and 4xx: the server says it did not run the model
_RETRIED_STATUSES = (429, 500, 502, 503, 504)
_FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-type"}
#: At most this many distinct values are formatted through a lookup table (fast path).
_TABLE_LIMIT = 4096

_V2_TYPES = {"FP32": "float32", "FP16": "float16", "FP64": "float64", "UINT8": "uint8",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
             "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64", "BYTES": "bytes",
             "BOOL": "bool"}
_TF_TYPES = {"DT_FLOAT": "float32", "DT_HALF": "float16", "DT_DOUBLE": "float64",
             "DT_UINT8": "uint8", "DT_INT8": "int8", "DT_INT16": "int16", "DT_INT32": "int32",
             "DT_INT64": "int64", "DT_STRING": "bytes", "DT_BOOL": "bool"}
_SENDABLE = ("float32", "float16", "float64", "uint8", "int8", "int32", "int64")
_V2_NAME = {dtype: name for name, dtype in _V2_TYPES.items()}

_V2_PATH = re.compile(
    r"(?P<prefix>.*?)/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/infer)?/?")
_V1_PATH = re.compile(
    r"(?P<prefix>.*?)/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?::predict)?/?")
_RATE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*([a-z]+))?\s*", re.IGNORECASE)
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


# ------------------------------------------------------------------------------ options


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
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise CopycatError(f"header name {name[:40]!r} is not a valid HTTP header name")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise CopycatError(f"header {name} is set by copycat-tf itself; remove it")
        if any(c in value for c in "\r\n\0"):
            raise CopycatError(f"the value of header {name} holds a line break; remove it")
        parsed[name] = value
    return parsed


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
                f"target URL must be http:// or https:// with a host; received {_shown(url)!r}"
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
                f"cannot tell the protocol from {_shown(url)!r}: the path must end in "
                "/v2/models/NAME[/versions/V] (Open Inference Protocol) or "
                "/v1/models/NAME[/versions/V] (TF Serving, KServe V1)"
            )
        protocol = protocol or found[0]
        match = matches[protocol]
        if match is None:
            expected = "/v2/models/NAME" if protocol == "v2" else "/v1/models/NAME"
            raise CopycatError(
                f"protocol {protocol} needs a URL path ending in {expected}[/versions/V]; "
                f"received {_shown(url)!r}"
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


# ----------------------------------------------------------------------- wire formats


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


class _V2Codec:
    """Open Inference Protocol v2, JSON encoding."""

    @staticmethod
    def encode(x: np.ndarray, input_name: str, output_name: str | None) -> bytes:
        tensor = (f'{{"name":{json.dumps(input_name)},"shape":{json.dumps(list(x.shape))},'
                  f'"datatype":"{_V2_NAME[x.dtype.name]}","data":{number_list(x.ravel())}}}')
        outputs = f',"outputs":[{{"name":{json.dumps(output_name)}}}]' if output_name else ""
        return f'{{"inputs":[{tensor}]{outputs}}}'.encode()

    @staticmethod
    def decode(doc, output_name: str | None, n: int) -> np.ndarray:
        outputs = doc.get("outputs") if isinstance(doc, dict) else None
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, dict) for o in outputs):
            raise _BadAnswer("it has no \"outputs\" list of tensors")
        chosen = [o for o in outputs if o.get("name") == output_name] if output_name else []
        if not chosen:
            if len(outputs) > 1:
                names = ", ".join(repr(o.get("name")) for o in outputs)
                raise _BadAnswer(f"it has outputs {names} and none is {output_name!r}")
            chosen = outputs
        tensor = chosen[0]
        data, shape = tensor.get("data"), tensor.get("shape")
        if not isinstance(data, list):
            raise _BadAnswer(f"output {tensor.get('name')!r} has no \"data\" list")
        labels = str(tensor.get("datatype", "")).upper() == "BYTES"
        array = _as_array(data, labels)
        if isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape):
            if math.prod(shape) != array.size:
                raise _BadAnswer(f"output {tensor.get('name')!r} declares shape {shape} but holds "
                                 f"{array.size} values")
            array = array.reshape(shape)
        elif array.ndim == 1 and not labels and n and array.size % n == 0 and array.size != n:
            array = array.reshape(n, -1)
        return array


class _TFServingCodec:
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
            raise _BadAnswer("it has no \"predictions\" list")
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
    raise _BadAnswer(f"it has outputs {sorted(outputs)} and none is {name!r}")


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
        raise _BadAnswer("its values are not a rectangular array of numbers or class names") from None


class _BadAnswer(Exception):
    """A 2xx answer that cannot be read; becomes a CopycatError naming the request."""


# ---------------------------------------------------------------------------- transport


@dataclass
class _Outcome:
    """One attempt: ``status`` is ``None`` when no HTTP answer came back."""

    status: int | None
    reason: str
    sent: bool
    body: bytes = b""
    retry_after: float | None = None
    headers: Mapping[str, str] | None = None
    fatal: CopycatError | None = None


def _is_charged(outcome: _Outcome | None) -> bool:
    """Whether an attempt's images are charged (see the module docstring)."""
    if outcome is None:
        return True  # interrupted mid-attempt: it may have gone out
    if not outcome.sent:
        return False
    status = outcome.status
    return status is None or not (300 <= status < 500 or status == _NOT_SERVED)


@dataclass(frozen=True)
class HttpCounters:
    """What a progress bar shows: images charged, HTTP requests, retries and money.

    Attributes:
        queries_spent: images charged (see the module's accounting rule), probes included.
        requests: inference requests sent (attempts, retries included).
        retries: attempts repeated after a failure that may pass (any request).
        cost: ``queries_spent`` at ``price_per_1k``, or ``None`` without a price.
    """

    queries_spent: int
    requests: int
    retries: int
    cost: float | None


# ------------------------------------------------------------------------------- oracle


class HttpOracle(Oracle):
    """A classifier behind an HTTP inference API (Open Inference Protocol v2 or TF Serving REST).

    Args:
        url: the model's URL, e.g. ``https://host/v2/models/fer`` or
            ``http://127.0.0.1:8501/v1/models/fer/versions/2``; ``/infer`` or ``:predict``
            may end it. No credentials, query string or fragment (use ``headers``).
        protocol: ``"v2"`` or ``"tfserving"``; default read from the URL's path.
        headers: sent with every request (``{"Authorization": "Bearer ..."}`` or
            ``["Authorization: Bearer ..."]``); values are never shown or written.
        budget: most images that may be charged, probes and retries included; ``None``
            for no limit.
        rate: most requests per second (``"20/s"``, ``"600/min"`` or a number), any kind
            of request, retries included; ``None`` for no limit.
        concurrency: requests in flight at once; one :meth:`query` of more than
            ``max_batch`` images is split and sent in parallel.
        max_batch: most images per request (a fixed batch in the metadata lowers it).
        timeout: seconds one attempt may take, connecting and reading the whole answer.
        max_retry_time: seconds of retrying one request before giving up with an error.
        backoff: the first wait before a retry, in seconds; each next one doubles (up to
            30 s), times a random factor in [0.5, 1]. ``Retry-After`` overrides it.
        price_per_1k: price of 1,000 images, for :attr:`cost`.
        insecure: skip TLS certificate checks (``https`` only); off by default.
        ca_certs: a PEM file of CA certificates to trust instead of the system's.
        max_response_bytes: largest answer body read; a larger one is an error.
        input_name: the input's name when the metadata does not say (v2 default ``"input"``).
        input_size: ``(height, width)`` when the metadata does not fix them.
        channels: image channels (1 or 3) when the metadata does not say; default 3.
        layout: ``"NHWC"`` or ``"NCHW"``; default detected from the shape, else NHWC.
        dtype: the input's dtype when the metadata does not say; default ``"float32"``.
        preprocessing: pixel preprocessing; default ``[0, 1]`` scaling for float inputs.
        output: which output holds the classes, when there are several.
        output_kind: ``"probabilities"``, ``"logits"``, ``"scores"`` or ``"labels"``
            (one class index or name per image; rows of scores are cut to their top
            class); default from the metadata's types, else probed.
        num_classes: class count when neither metadata nor ``class_names`` gives it.
        class_names: the classes in index order (a list, or one comma-separated string),
            to read answers that name the class.
        contract: a whole :class:`~copycat_tf.contract.Contract` (e.g. a fake dataset's):
            no metadata is read and nothing is probed.

    Attributes:
        endpoint: the parsed :class:`Endpoint`.
        identity: sha256 of the canonical endpoint (protocol, URL, model, version).
        output_kind: as above, ``"labels"`` included (the contract records label answers
            as one-hot ``probabilities`` rows).
        probe_queries: images charged to learn the contract (0 when none was needed).
        server_metadata: the metadata answer (a dict), or ``None`` when there was none.
    """

    def __init__(
        self,
        url: str,
        *,
        protocol: str | None = None,
        headers: Mapping[str, str] | Sequence[str] | None = None,
        budget: int | None = None,
        rate: str | float | None = None,
        concurrency: int = 1,
        max_batch: int = DEFAULT_MAX_BATCH,
        timeout: float = DEFAULT_TIMEOUT,
        max_retry_time: float = DEFAULT_MAX_RETRY_TIME,
        backoff: float = DEFAULT_BACKOFF,
        price_per_1k: float | None = None,
        insecure: bool = False,
        ca_certs: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        input_name: str | None = None,
        input_size: tuple[int, int] | None = None,
        channels: int | None = None,
        layout: str | None = None,
        dtype: str | None = None,
        preprocessing: Preprocessing | None = None,
        output: str | None = None,
        output_kind: str | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        contract: Contract | None = None,
    ):
        super().__init__(budget)
        self.endpoint = Endpoint.parse(url, protocol)
        self._headers = parse_headers(headers)
        self._secrets = _secret_words(self._headers)
        check_whole("concurrency", concurrency)
        check_whole("max_batch", max_batch)
        check_whole("max_response_bytes", max_response_bytes, minimum=1024)
        check_positive_number("timeout", timeout)
        self.concurrency = int(concurrency)
        self.max_batch = min(int(max_batch), MAX_FIXED_BATCH)
        self.max_response_bytes = int(max_response_bytes)
        self.timeout = float(timeout)
        self.max_retry_time = _non_negative("max_retry_time", max_retry_time)
        self.backoff = _non_negative("backoff", backoff)
        self.price_per_1k = None if price_per_1k is None else _non_negative("price_per_1k", price_per_1k)
        self.insecure = bool(insecure)
        if output_kind is not None and output_kind not in HTTP_OUTPUT_KINDS:
            raise CopycatError(f"output kind must be one of {HTTP_OUTPUT_KINDS}; received {output_kind!r}")
        self.class_names = _check_class_names(class_names, num_classes)
        self._class_index = {name: i for i, name in enumerate(self.class_names or ())}
        self._codec = _V2Codec if self.endpoint.protocol == "v2" else _TFServingCodec
        self._bucket = TokenBucket(parse_rate(rate)) if rate is not None else None
        self._lock = threading.Lock()
        self._charged = self._reserved = self._requests = self._retries = 0
        self._executor: ThreadPoolExecutor | None = None
        self._pool = self._make_pool(ca_certs)
        self.identity = hashlib.sha256(json.dumps(
            {"protocol": self.endpoint.protocol, "url": self.endpoint.url}, sort_keys=True
        ).encode()).hexdigest()
        if self._headers and self.endpoint.scheme == "http" and not self.endpoint.is_loopback:
            log.warning("sending headers to %s over plain http: anyone on the path can read them",
                        self.endpoint.origin)
        self.output_kind = output_kind
        self.probe_queries = 0
        self.server_metadata = None
        self._no_metadata = "not asked"
        self._fixed_batch: int | None = None
        self._check_ready()
        if contract is not None:
            self._use_contract(contract, output_kind)
        else:
            self.server_metadata = self._read_metadata()
            self._build_contract(self.server_metadata, input_name, input_size, channels, layout,
                                 dtype, preprocessing, output, num_classes)
        self.queries_spent = self._charged

    # ---------------------------------------------------------------- public figures

    @property
    def requests_sent(self) -> int:
        return self._requests

    @property
    def retries(self) -> int:
        return self._retries

    @property
    def cost(self) -> float | None:
        """Money spent on ``queries_spent`` images at ``price_per_1k`` (``None`` without a price)."""
        return None if self.price_per_1k is None else self._charged * self.price_per_1k / 1000

    def counters(self) -> HttpCounters:
        """Live figures, safe to read from another thread while a query is in flight."""
        with self._lock:
            return HttpCounters(self._charged, self._requests, self._retries, self.cost)

    def info(self) -> dict:
        """What ``copycat-tf inspect`` shows about the endpoint (no header value)."""
        contract = self.contract
        metadata = self.server_metadata if isinstance(self.server_metadata, dict) else {}
        return {
            "url": self.endpoint.url,
            "protocol": self.endpoint.protocol,
            "model": self.endpoint.model,
            "version": self.endpoint.version,
            "identity": self.identity,
            "headers": sorted(self._headers),
            "platform": metadata.get("platform"),
            "versions": metadata.get("versions"),
            "metadata": self.server_metadata is not None,
            "inputs": [contract.input.to_dict()],
            "outputs": [contract.output.to_dict()],
            "num_classes": contract.num_classes,
            "output_kind": self.output_kind,
            "class_names": list(self.class_names) if self.class_names else None,
            "preprocessing": contract.preprocessing.to_dict(),
            "probe_queries": self.probe_queries,
        }

    def __repr__(self) -> str:
        shown = {name: "***" for name in self._headers}
        return (f"HttpOracle({self.endpoint.url!r}, protocol={self.endpoint.protocol!r}, "
                f"headers={shown}, budget={self.budget}, concurrency={self.concurrency})")

    def request_body(self, images: np.ndarray) -> bytes:
        """The exact body one inference request for ``images`` sends (for load generators).

        Nothing is sent or charged.
        """
        return self._body(self.contract.to_model_input(self.contract.check_images(images)))

    def _body(self, x: np.ndarray) -> bytes:
        output_name = self.contract.output.name if self._output_named else None
        return self._codec.encode(x, self.contract.input.name, output_name)

    def close(self) -> None:
        """Stop the worker threads and close the connections."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._pool.clear()

    def __enter__(self) -> HttpOracle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------- querying

    def query(self, images: np.ndarray, *, soft: bool = False) -> Answers:
        """Send ``images``; as :meth:`Oracle.query`, but every attempt is charged by the
        module's rule, so ``queries_spent`` also counts retries and failed calls."""
        try:
            return super().query(images, soft=soft)
        finally:
            self.queries_spent = self._charged

    def _infer(self, model_input: np.ndarray) -> np.ndarray:
        step = self._fixed_batch or self.max_batch
        chunks = [model_input[i : i + step] for i in range(0, len(model_input), step)]
        if len(chunks) == 1 or self.concurrency == 1:
            return np.concatenate([self._infer_chunk(c) for c in chunks])
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="copycat-http")
        futures = [self._executor.submit(self._infer_chunk, c) for c in chunks]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()  # not yet sent: nothing more is spent after a failure
        wait(futures)
        for future in futures:
            if not future.cancelled() and future.exception() is not None:
                raise future.exception()
        return np.concatenate([f.result() for f in futures])

    def _infer_chunk(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if self._fixed_batch and n < self._fixed_batch:
            # The model takes whole batches only; the padding images are sent, so charged.
            x = np.concatenate([x, np.repeat(x[-1:], self._fixed_batch - n, axis=0)])
        answer = self._ask(x)
        return self._class_rows(answer, len(x))[:n]

    def _ask(self, x: np.ndarray) -> np.ndarray:
        """Send one request of images and return the chosen output as an array."""
        reply = self._exchange("POST", self.endpoint.infer_path, self._body(x), images=len(x),
                               what="inference")
        try:
            output_name = self.contract.output.name if self._output_named else None
            return self._codec.decode(self._json(reply, "inference"), output_name, len(x))
        except _BadAnswer as exc:
            raise self._bad_answer("inference", str(exc)) from None

    def _class_rows(self, answer: np.ndarray, n: int) -> np.ndarray:
        """The answer as float32 class rows ``(n, K)``; labels become one-hot rows."""
        k = self.contract.num_classes
        if answer.ndim == 2 and answer.shape[1] == 1 and (self.output_kind == "labels" or answer.dtype == object):
            answer = answer[:, 0]
        if self.output_kind == "labels":
            if answer.ndim == 2 and answer.dtype != object and answer.shape == (n, k):
                if not np.all(np.isfinite(answer)):
                    raise self._bad_answer("inference", "it holds NaN or infinite values")
                indices = answer.argmax(axis=1)
            else:
                indices = self._label_indices(answer, n)
            rows = np.zeros((n, k), np.float32)
            rows[np.arange(n), indices] = 1.0
            return rows
        if answer.dtype == object or answer.ndim != 2:
            what = "class names" if answer.dtype == object else f"values of shape {answer.shape}"
            raise self._bad_answer(
                "inference", f"it holds {what}, not rows of class scores; if the API answers one "
                "class per image, pass output_kind='labels' (--output-kind labels)")
        if answer.shape != (n, k):
            raise self._bad_answer("inference", f"output has shape {answer.shape}; expected ({n}, {k}) "
                                   f"for {n} images")
        if not np.all(np.isfinite(answer)):
            raise self._bad_answer("inference", "it holds NaN or infinite values")
        return answer.astype(np.float32)

    def _label_indices(self, answer: np.ndarray, n: int) -> np.ndarray:
        if answer.shape != (n,):
            raise self._bad_answer("inference", f"labels have shape {answer.shape}; expected ({n},)")
        if answer.dtype == object:
            if not self.class_names:
                raise CopycatError(
                    f"{self.endpoint.url} answers class names (e.g. {self._redact(str(answer[0])[:40])!r}); "
                    "give the class list in index order (class_names / --class-names)"
                )
            unknown = [name for name in answer if name not in self._class_index]
            if unknown:
                raise self._bad_answer("inference", f"it names class {self._redact(unknown[0][:60])!r}, "
                                       f"which is not among the {len(self.class_names)} class names given")
            return np.array([self._class_index[name] for name in answer], np.int64)
        k = self.contract.num_classes
        if not np.all(np.isfinite(answer)) or np.any(answer != np.round(answer)):
            raise self._bad_answer("inference", "its labels are not whole numbers")
        outside = answer[(answer < 0) | (answer >= k)]
        if outside.size:
            raise self._bad_answer("inference", f"it answers class {int(outside[0])}; there are {k} "
                                   f"classes (0 to {k - 1})")
        return answer.astype(np.int64)

    # -------------------------------------------------------------------- accounting

    def _reserve(self, images: int) -> None:
        with self._lock:
            if self.budget is not None and self._charged + self._reserved + images > self.budget:
                raise BudgetExceeded(
                    f"query budget exhausted: {self._charged} of {self.budget} images charged "
                    f"(retries and probes included); a request of {images} more would exceed it"
                )
            self._reserved += images

    def _settle(self, images: int, charged: bool) -> None:
        with self._lock:
            self._reserved -= images
            if charged:
                self._charged += images

    # --------------------------------------------------------------------- transport

    def _make_pool(self, ca_certs):
        options = {"maxsize": self.concurrency, "block": True, "retries": False}
        if self.endpoint.scheme == "https":
            if self.insecure:
                # Said once in the log instead of a warning per request (the filter is
                # process-wide, and silences only what that log line already says).
                warnings.filterwarnings("ignore", category=InsecureRequestWarning)
                log.warning("TLS certificate checks are off for %s (insecure)", self.endpoint.origin)
                options["cert_reqs"] = "CERT_NONE"
            else:
                options["cert_reqs"] = "CERT_REQUIRED"
                if ca_certs is not None:
                    if not Path(ca_certs).is_file():
                        raise CopycatError(f"CA certificate file {ca_certs}: no such file")
                    options["ca_certs"] = str(ca_certs)
        return urllib3.PoolManager(**options)

    def _exchange(self, method: str, path: str, body: bytes | None = None, *, images: int = 0,
                  what: str, ok_statuses: tuple[int, ...] = ()) -> _Outcome:
        """One request, retried while its failures may pass; returns the 2xx (or ``ok_statuses``)
        outcome, raises one CopycatError otherwise. ``images`` are charged per attempt."""
        url = self.endpoint.origin + path
        headers = {**self._headers, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            if self._bucket is not None:
                self._bucket.acquire()
            outcome = None
            if images:
                self._reserve(images)
                with self._lock:
                    self._requests += 1
            try:
                outcome = self._attempt(method, url, body, headers)
            finally:
                if images:
                    self._settle(images, _is_charged(outcome))
            if outcome.fatal is not None:
                raise outcome.fatal
            status = outcome.status
            if status is not None and (200 <= status < 300 or status in ok_statuses):
                return outcome
            if status is not None and 300 <= status < 400:
                raise self._redirect_error(what, outcome)
            if status is not None and status not in _RETRIED_STATUSES:
                raise self._status_error(what, outcome)
            elapsed = time.monotonic() - started
            if outcome.retry_after is not None:
                delay = outcome.retry_after * random.uniform(1.0, 1.1)
            else:
                delay = min(_BACKOFF_LONGEST, self.backoff * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
            if elapsed + delay > self.max_retry_time:
                asked = (f"; the server asked to wait {outcome.retry_after:.0f} s more"
                         if outcome.retry_after is not None else "")
                raise CopycatError(
                    f"{what} request to {self.endpoint.url} failed {attempts} time(s) in "
                    f"{elapsed:.0f} s (last: {self._describe(outcome)}){asked}; gave up after the "
                    f"{self.max_retry_time:g} s retry time. {self._charged} images charged so far; "
                    "rerun the same command later to resume"
                )
            with self._lock:
                self._retries += 1
            log.warning("%s request to %s: %s; retry %d in %.1f s", what, self.endpoint.url,
                        self._describe(outcome), attempts, delay)
            time.sleep(delay)

    def _attempt(self, method: str, url: str, body: bytes | None, headers: dict) -> _Outcome:
        deadline = time.monotonic() + self.timeout
        try:
            response = self._pool.urlopen(
                method, url, body=body, headers=headers, retries=False, redirect=False,
                preload_content=False, timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            )
        except SSLError as exc:
            return _Outcome(None, "TLS failed", sent=False, fatal=CopycatError(
                f"TLS with {self.endpoint.origin} failed ({self._redact(_reason(exc))}); for a "
                "private CA pass ca_certs (--ca-certs), or insecure=True (--insecure) to skip the check"
            ))
        except ConnectTimeoutError as exc:  # also NewConnectionError: nothing was sent
            return _Outcome(None, f"cannot connect ({self._redact(_reason(exc))})", sent=False)
        except ReadTimeoutError:
            return _Outcome(None, f"no answer within {self.timeout:g} s", sent=True)
        except (HTTPError, OSError) as exc:
            return _Outcome(None, f"connection dropped ({self._redact(_reason(exc))})", sent=True)
        ok = 200 <= response.status < 300
        try:
            data = self._read_capped(response, self.max_response_bytes if ok else _ERROR_BODY_BYTES,
                                     deadline, keep=ok)
        except _TooLarge:
            return _Outcome(response.status, response.reason or "", True, fatal=self._bad_answer(
                "inference" if body else method, f"its body is larger than the "
                f"{self.max_response_bytes} byte cap (max_response_bytes)"))
        except (HTTPError, OSError, _Slow) as exc:
            if ok:
                return _Outcome(None, f"answer cut off ({self._redact(_reason(exc))})", sent=True)
            data = b""
        return _Outcome(response.status, response.reason or "", True, data,
                        _retry_after(response.headers.get("Retry-After")), response.headers)

    @staticmethod
    def _read_capped(response, cap: int, deadline: float, keep: bool) -> bytes:
        """Read the body, at most ``cap`` bytes (after decompression) and until ``deadline``."""
        length = response.headers.get("Content-Length")
        chunks, total = [], 0
        try:
            if keep and length and length.isdigit() and int(length) > cap:
                raise _TooLarge()
            while True:
                chunk = response.read(65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > cap:
                    if keep:
                        raise _TooLarge()
                    chunks.append(chunk[: cap - (total - len(chunk))])
                    response.close()  # an error page: the part read is enough
                    break
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _Slow("the answer took longer than the timeout")
            return b"".join(chunks)
        except BaseException:
            response.close()  # the rest of the body is unread: this connection cannot be reused
            raise
        finally:
            response.release_conn()

    # ------------------------------------------------------------------ interpreting

    def _json(self, outcome: _Outcome, what: str):
        data = outcome.body
        try:
            return json.loads(data)
        except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, huge numbers, deep nesting
            raise self._bad_answer(what, f"it is not JSON: {self._excerpt(data)}") from None

    def _bad_answer(self, what: str, problem: str) -> CopycatError:
        return CopycatError(
            f"{self.endpoint.url} gave an unusable {what} answer: {problem}. "
            f"{self._charged} images charged so far; what was answered before is kept"
        )

    def _status_error(self, what: str, outcome: _Outcome) -> CopycatError:
        status = outcome.status
        hint = {401: "check the credentials given as a header (--header 'Authorization: ...')",
                403: "the credentials given lack access to this model",
                404: f"no model {self.endpoint.model!r} there: check the URL and --protocol",
                405: "the server does not take this request there: check the URL and --protocol",
                413: "the request is too large: lower max_batch (images per request)",
                }.get(status, "the server refused the request; it is not retried")
        return CopycatError(f"{what} request to {self.endpoint.url} failed: {self._describe(outcome)}; {hint}")

    def _redirect_error(self, what: str, outcome: _Outcome) -> CopycatError:
        location = (outcome.headers or {}).get("Location", "")
        where = ""
        if location:
            parts = urlsplit(location)
            where = f" to {(parts.scheme + '://' + (parts.hostname or '')) if parts.hostname else ''}{parts.path}"
        return CopycatError(
            f"{what} request to {self.endpoint.url} was redirected ({outcome.status}){self._redact(where)}; "
            "copycat-tf follows no redirect, so credentials never reach another address: give the "
            "final URL as the target"
        )

    def _describe(self, outcome: _Outcome) -> str:
        if outcome.status is None:
            return outcome.reason
        text = f"HTTP {outcome.status} {outcome.reason}".strip()
        excerpt = self._excerpt(outcome.body) if outcome.body else ""
        return f"{text} ({excerpt})" if excerpt else text

    def _excerpt(self, data: bytes) -> str:
        """A short, printable, secret-free account of a body, for an error message."""
        text = data[:4096].decode("utf-8", "replace")
        try:
            doc = json.loads(data) if len(data) <= _ERROR_BODY_BYTES else None
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("error"), (str, dict)):
            text = f"error: {doc['error']}"
        elif re.search(r"<\s*(!doctype|html|head|body)\b", text[:512], re.IGNORECASE):
            title = re.search(r"<title[^>]*>(.*?)</title", text, re.IGNORECASE | re.DOTALL)
            text = "an HTML page" + (f" titled {title.group(1).strip()!r}" if title else "")
        text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
        text = self._redact(text)
        return text[:200] + ("..." if len(text) > 200 else "")

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # ---------------------------------------------------------------------- contract

    def _check_ready(self) -> None:
        outcome = self._exchange("GET", self.endpoint.ready_path, what="readiness",
                                 ok_statuses=(404, 405, 501))
        if outcome.status in (404, 405, 501):
            # Gateways in front of a model often route only the inference path.
            log.info("%s has no readiness endpoint (%s); going on", self.endpoint.origin, outcome.status)
            return
        if self.endpoint.protocol == "tfserving":
            doc = self._maybe_json(outcome)
            states = [v.get("state") for v in (doc or {}).get("model_version_status", []) if isinstance(v, dict)]
            if states and "AVAILABLE" not in states:
                raise CopycatError(f"{self.endpoint.url} is not ready: model versions are {states}")
            if isinstance(doc, dict) and doc.get("ready") is False:
                raise CopycatError(f"{self.endpoint.url} is not ready (it says ready: false)")

    def _read_metadata(self) -> dict | None:
        outcome = self._exchange("GET", self.endpoint.metadata_path, what="metadata",
                                 ok_statuses=(404, 405, 501))
        if outcome.status in (404, 405, 501):
            self._no_metadata = f"its metadata request answered {self._describe(outcome)}"
            log.info("%s: %s; the contract comes from the options", self.endpoint.url, self._no_metadata)
            return None
        doc = self._maybe_json(outcome)
        if not isinstance(doc, dict):
            self._no_metadata = "its metadata answer is not a JSON object"
            log.warning("%s: %s; ignoring it", self.endpoint.url, self._no_metadata)
            return None
        return doc

    def _maybe_json(self, outcome: _Outcome):
        try:
            return json.loads(outcome.body)
        except (ValueError, RecursionError):
            return None

    def _use_contract(self, contract: Contract, output_kind: str | None) -> None:
        self.contract = contract
        self.output_kind = output_kind or contract.output.kind
        self._fixed_batch = contract.input.batch_size
        self._output_named = self.endpoint.protocol == "v2"
        if self.class_names and len(self.class_names) != contract.num_classes:
            raise CopycatError(f"{len(self.class_names)} class names given for a contract of "
                               f"{contract.num_classes} classes")

    def _build_contract(self, metadata, input_name, input_size, channels, layout, dtype,
                        preprocessing, output, num_classes) -> None:
        inputs, outputs = _tensors(metadata, self.endpoint.protocol) if metadata else ([], [])
        image = self._image_input(inputs, input_name, input_size, channels, layout, dtype)
        out_name, out_dtype, out_classes = self._choose_output(outputs, output)
        if self.output_kind is None and out_dtype is not None and not _is_float(out_dtype):
            self.output_kind = "labels"  # an integer or string output: one class per image
        given = len(self.class_names) if self.class_names else num_classes
        if out_classes is not None and given is not None and given != out_classes:
            raise CopycatError(f"output {out_name!r} has {out_classes} classes; {given} were given "
                               "(num_classes or class_names)")
        k = out_classes or given
        if preprocessing is None:
            preprocessing = Preprocessing.default_for(image.dtype)
        self._fixed_batch = image.batch_size
        # v2 may name the output to fetch (only it is sent back); without metadata the name is a guess.
        self._output_named = self.endpoint.protocol == "v2" and (bool(outputs) or output is not None)
        kind = self.output_kind if self.output_kind not in (None, "labels") else "probabilities"
        self.contract = Contract(image, ClassOutput(out_name, k or 1, kind), preprocessing,
                                 tuple(o["name"] for o in outputs if o["name"] != out_name))
        if k is None or self.output_kind is None:
            self._probe(k)
        elif self.output_kind == "labels" and k < 2:
            raise CopycatError("label answers need at least 2 classes")

    def _image_input(self, inputs, input_name, input_size, channels, layout, dtype) -> ImageInput:
        if layout is not None and layout not in LAYOUTS:
            raise CopycatError(f"layout must be one of {LAYOUTS}; received {layout!r}")
        if channels is not None and channels not in (1, 3):
            raise CopycatError(f"channels must be 1 or 3; received {channels!r}")
        if inputs:
            if len(inputs) != 1 and input_name is None:
                names = ", ".join(i["name"] for i in inputs)
                raise CopycatError(f"{self.endpoint.url} takes {len(inputs)} inputs ({names}); "
                                   "copycat-tf sends one image tensor")
            chosen = [i for i in inputs if input_name in (None, i["name"])]
            if not chosen:
                raise CopycatError(f"{self.endpoint.url} has no input {input_name!r}; its inputs are "
                                   + ", ".join(i["name"] for i in inputs))
            meta = chosen[0]
            name, shape = meta["name"], meta["shape"]
            declared = meta["dtype"]
            if dtype is not None and declared is not None and dtype != declared:
                raise CopycatError(f"input {name!r} takes {declared}; dtype={dtype!r} contradicts it")
            dtype = declared or dtype
            if shape is None:
                shape = [None, None, None, None]
            if len(shape) != 4:
                raise CopycatError(
                    f"input {name!r} has shape {shape}; copycat-tf sends batches of images "
                    "(N, H, W, C) or (N, C, H, W): serve the model with a batch axis (Triton: max_batch_size > 0)"
                )
        else:
            name = input_name or "input"
            dtype = dtype or "float32"
            c = channels or 3
            if input_size is None:
                raise CopycatError(
                    f"{self.endpoint.url} publishes no model metadata ({self._no_metadata}: a wrong "
                    "model name, or a server or gateway without a metadata endpoint), so the input "
                    "shape is unknown; check the URL, or pass input_size=(HEIGHT, WIDTH) "
                    "(--input-size), and channels, layout and dtype if not 3, NHWC and float32"
                )
            shape = [None, None, None, c] if (layout or "NHWC") == "NHWC" else [None, c, None, None]
            layout = layout or "NHWC"
        if dtype not in _SENDABLE:
            raise CopycatError(f"input {name!r} takes {dtype} values; copycat-tf sends one of {_SENDABLE}")
        shape = list(shape)
        if layout is None:
            layout = _detect_layout(shape, channels)
        channel_axis = 3 if layout == "NHWC" else 1
        if shape[channel_axis] is None:
            shape[channel_axis] = channels or 3
        elif shape[channel_axis] not in (1, 3):
            raise CopycatError(f"input {name!r} of shape {shape} in {layout} has {shape[channel_axis]} "
                               "channels; images have 1 or 3 (set layout if it is the other one)")
        if channels is not None and shape[channel_axis] != channels:
            raise CopycatError(f"input {name!r} has {shape[channel_axis]} channels; channels={channels} contradicts it")
        axes = (1, 2) if layout == "NHWC" else (2, 3)
        if input_size is not None:
            for axis, size in zip(axes, input_size):
                if shape[axis] not in (None, size):
                    raise CopycatError(f"input {name!r} is fixed at {shape}; cannot use input size {tuple(input_size)}")
                shape[axis] = int(size)
        if any(shape[axis] is None for axis in axes):
            raise CopycatError(f"input {name!r} of shape {shape} has a dynamic image size; pass "
                               "input_size=(HEIGHT, WIDTH) (--input-size)")
        height, width = (shape[axis] for axis in axes)
        if height * width > MAX_INPUT_PIXELS:
            raise CopycatError(f"input {name!r} declares {height}x{width} images, over the "
                               f"{MAX_INPUT_PIXELS} pixel limit")
        if shape[0] is not None and not 1 <= shape[0] <= MAX_FIXED_BATCH:
            raise CopycatError(f"input {name!r} declares a batch of {shape[0]} images; at most "
                               f"{MAX_FIXED_BATCH} are sent at once")
        return ImageInput(name, tuple(shape), dtype, layout)

    def _choose_output(self, outputs, wanted):
        """(name, dtype or None, classes or None) of the output that holds the classes."""
        if not outputs:
            return wanted or ("output" if self.endpoint.protocol == "v2" else "predictions"), None, None
        if wanted is not None:
            chosen = [o for o in outputs if o["name"] == wanted]
            if not chosen:
                raise CopycatError(f"{self.endpoint.url} has no output {wanted!r}; its outputs are "
                                   + ", ".join(o["name"] for o in outputs))
        else:
            rows = [o for o in outputs if _is_float(o["dtype"]) and (o["shape"] is None or len(o["shape"]) == 2)]
            labels = [o for o in outputs if not _is_float(o["dtype"])
                      and o["shape"] is not None and len(o["shape"]) in (1, 2)]
            chosen = labels + rows if self.output_kind == "labels" else rows + labels
            if not chosen:
                described = ", ".join(f"{o['name']} {o['dtype']} {o['shape']}" for o in outputs)
                raise CopycatError(f"{self.endpoint.url} has no output of class rows (N, classes) or "
                                   f"labels (N,); its outputs are: {described}")
        meta = chosen[0]
        shape = meta["shape"]
        classes = None
        if _is_float(meta["dtype"]) and shape is not None and len(shape) == 2 and shape[1] is not None:
            classes = shape[1]
            if not 2 <= classes <= _MAX_CLASSES:
                raise CopycatError(f"output {meta['name']!r} declares {classes} classes; expected 2 to {_MAX_CLASSES}")
        return meta["name"], meta["dtype"], classes

    def _probe(self, k: int | None) -> None:
        """Learn the class count and output kind from two noise images (charged)."""
        batch = self._fixed_batch or PROBE_IMAGES
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (batch, *self.contract.image_shape), dtype=np.uint8)
        before = self._charged
        log.info("probing %s with %d noise images (charged) to learn %s", self.endpoint.url, batch,
                 "the class count and output kind" if k is None else "the output kind")
        try:
            answer = self._ask(self.contract.to_model_input(images))
        finally:
            self.probe_queries += self._charged - before
        if answer.ndim == 2 and answer.shape[1] == 1:
            answer = answer[:, 0]
        if answer.dtype == object or answer.ndim == 1:
            if answer.shape != (batch,):
                raise self._bad_answer("probe", f"labels have shape {answer.shape} for {batch} images")
            self.output_kind = "labels"
            if answer.dtype != object and k is None:
                raise CopycatError(
                    f"{self.endpoint.url} answers one class index per image, so the class count is "
                    "unknown; give num_classes (--num-classes) or class_names (--class-names)"
                )
            if k is None:
                raise CopycatError(f"{self.endpoint.url} answers class names; give the class list in "
                                   "index order (class_names / --class-names)")
        elif answer.ndim != 2 or answer.shape[0] != batch:
            raise self._bad_answer("probe", f"output has shape {answer.shape} for {batch} images; "
                                   f"expected ({batch}, classes)")
        elif not np.all(np.isfinite(answer)):
            raise self._bad_answer("probe", "it holds NaN or infinite values")
        else:
            if k is not None and k != answer.shape[1] and self.output_kind != "labels":
                raise self._bad_answer("probe", f"output has {answer.shape[1]} columns; {k} classes were given")
            k = answer.shape[1]
            if self.output_kind is None:
                self.output_kind = detect_output_kind(answer)
        if not 2 <= k <= _MAX_CLASSES:
            raise CopycatError(f"{self.endpoint.url} answers {k} classes; expected 2 to {_MAX_CLASSES}")
        kind = "probabilities" if self.output_kind == "labels" else self.output_kind
        self.contract = Contract(self.contract.input, ClassOutput(self.contract.output.name, k, kind),
                                 self.contract.preprocessing, self.contract.extra_outputs)
        self._class_rows(answer, batch)


# ------------------------------------------------------------------------------ helpers


def _tensors(metadata: dict, protocol: str) -> tuple[list[dict], list[dict]]:
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


def _is_float(dtype: str | None) -> bool:
    """Float outputs hold class rows; ``None`` (type unknown) is taken as float."""
    return dtype is None or dtype.startswith("float")


def _detect_layout(shape: list[int | None], channels: int | None) -> str:
    wanted = (channels,) if channels else (1, 3)
    nhwc, nchw = shape[3] in wanted, shape[1] in wanted
    if nchw and not nhwc:
        return "NCHW"
    if nhwc and nchw:
        log.warning("input shape %s is ambiguous; reading it as NHWC (override with layout)", shape)
    return "NHWC"


def _check_class_names(class_names, num_classes) -> tuple[str, ...] | None:
    check_whole("num_classes", num_classes, minimum=2, optional=True)
    if class_names is None:
        return None
    if isinstance(class_names, str):
        class_names = [name.strip() for name in class_names.split(",")]
    names = tuple(str(n) for n in class_names)
    if len(set(names)) != len(names):
        raise CopycatError("class names must be distinct")
    if not 2 <= len(names) <= _MAX_CLASSES:
        raise CopycatError(f"give 2 to {_MAX_CLASSES} class names; received {len(names)}")
    if num_classes is not None and num_classes != len(names):
        raise CopycatError(f"num_classes={num_classes} but {len(names)} class names were given")
    return names


def _secret_words(headers: dict[str, str]) -> list[str]:
    """Header values and their longer words (the token without 'Bearer '), longest first."""
    words = set()
    for value in headers.values():
        if len(value) >= 4:
            words.add(value)
        words.update(w for w in re.split(r"[\s,;]+", value) if len(w) >= 8)
    return sorted(words, key=len, reverse=True)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when is not None else None


def _non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise CopycatError(f"{name.replace('_', '-')} must be a number >= 0; received {value!r}")
    return float(value)


def _reason(exc: BaseException) -> str:
    """urllib3 wraps the socket error that says what happened in ``reason``."""
    reason = getattr(exc, "reason", None)
    return first_line(reason if isinstance(reason, BaseException) else exc)


def _shown(url: str) -> str:
    """A URL without what may hold secrets (user info, query string), for error messages."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else str(url)[:200].split("?")[0]
    except ValueError:
        return "(unparseable URL)"


class _TooLarge(Exception):
    pass


class _Slow(Exception):
    pass


# ------------------------------------------------------------------------------ factory


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
    import inspect

    from copycat_tf.oracle import OnnxOracle

    text = str(target)
    if is_url(text):
        cls = HttpOracle
    elif re.match(r"[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        raise CopycatError(f"target {_shown(text)}: only http:// and https:// URLs are supported")
    else:
        cls = OnnxOracle
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    given = {name: value for name, value in options.items() if value is not None}
    foreign = sorted(set(given) - accepted)
    if foreign:
        kind = "a URL" if cls is HttpOracle else "an ONNX file"
        raise CopycatError(f"{', '.join(foreign)} cannot be used with {kind} as the target")
    return cls(target, **given)
