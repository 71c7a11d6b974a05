"""Talking to a model server: retries, pace, charging and secrets.

:class:`Transport` sends the requests of one :class:`~copycat_tf.oracle.http.HttpOracle`
and keeps its accounts. The rules:

- **Charging.** An attempt's images are charged as soon as its request has gone out,
  unless the server's status says it did not run the model: a redirect, any 4xx, or 503.
  A 2xx answer (usable or not), a 500/502/504, a timeout or a connection dropped after
  sending are charged, since the model may have run on them; a connection that never
  opened is not. So the charge never counts less than the model saw. The budget is
  checked before every attempt, retries included (images in flight are reserved), so
  no attempt takes the charge past it.
- **Retries.** Connection errors, timeouts, 429 and 5xx are retried with exponential
  backoff and jitter (``backoff``, doubling up to 30 s, times a random factor in
  [0.5, 1]), or after ``Retry-After`` when the server sends one, for at most
  ``max_retry_time`` seconds per request; then one CopycatError says what happened and
  what was charged. Other 4xx, redirects (never followed: credentials cannot leave for
  another host), TLS failures and bodies over the size cap are not retried.
- **Pace.** A :class:`TokenBucket` spaces requests ``1 / rate`` seconds apart, across
  threads; at most ``concurrency`` connections are open.
- **Secrets.** Header values are sent and never shown: server text quoted in an error or
  a log line has every header value (and each long word of one) masked as ``***``.

HTTP client: ``urllib3`` (2.x), used directly. It is installed wherever TensorFlow is
(TensorFlow requires ``requests``, which requires ``urllib3``); its ``PoolManager`` is
thread-safe (``requests.Session`` is not documented to be); a streamed body lets the size
cap hold before the bytes are in memory; and redirects, retries and proxies from the
environment are off unless asked for. ``httpx`` would add five packages for nothing used
here. The retry loop is our own because charging needs to know, per attempt, whether the
request went out and what the server said.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InsecureRequestWarning,
    ReadTimeoutError,
    SSLError,
)

from copycat_tf.errors import BudgetExceeded, CopycatError, first_line
from copycat_tf.oracle.http.endpoint import Endpoint, TokenBucket

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRY_TIME = 120.0
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_RESPONSE_BYTES = 32 << 20
#: Bodies of error answers are only quoted, so little of them is read.
_ERROR_BODY_BYTES = 64 << 10
_BACKOFF_LONGEST = 30.0
_NOT_SERVED = 503  # with every 3xx and 4xx: the server says it did not run the model
_RETRIED_STATUSES = (429, 500, 502, 503, 504)


# ---------------------------------------------------------------------------- transport


@dataclass
class Reply:
    """One attempt: ``status`` is ``None`` when no HTTP answer came back; ``fatal`` is the
    error that ends the request (not retried)."""

    status: int | None
    reason: str
    sent: bool
    body: bytes = b""
    retry_after: float | None = None
    headers: Mapping[str, str] | None = None
    fatal: CopycatError | None = None


def is_charged(reply: Reply | None) -> bool:
    """Whether an attempt's images are charged (see the module docstring).

    >>> is_charged(Reply(503, "Service Unavailable", True)), is_charged(Reply(200, "OK", True))
    (False, True)
    >>> is_charged(Reply(None, "dropped", sent=True)), is_charged(Reply(None, "refused", sent=False))
    (True, False)
    """
    if reply is None:
        return True  # interrupted mid-attempt: it may have gone out
    if not reply.sent:
        return False
    status = reply.status
    return status is None or not (300 <= status < 500 or status == _NOT_SERVED)


class Transport:
    """Requests to one endpoint, retried, paced and charged.

    Args:
        endpoint: the :class:`Endpoint`.
        headers: sent with every request; secrets (see :func:`parse_headers`).
        concurrency: most connections open at once (requests in flight).
        timeout: seconds one attempt may take, connecting and reading the answer.
        max_retry_time: seconds of retrying one request before giving up.
        backoff: the first wait before a retry, in seconds.
        rate: most requests per second, or ``None``.
        insecure: skip TLS certificate checks.
        ca_certs: a PEM file of CA certificates to trust instead of the system's.
        max_response_bytes: largest 2xx body read.
        on_charge: called with ``+images`` just before an attempt that carries images is
            sent, and with ``-images`` once its answer shows it was not charged, one call
            at a time: a write-ahead log of spending (the labeling loop's) then counts every
            retry, and a kill mid-request never leaves it short of what the server saw.

    Attributes:
        charged: images charged so far.
        requests: inference attempts sent.
        retries: attempts repeated after a failure that may pass (any request).
    """

    def __init__(self, endpoint: Endpoint, headers: dict[str, str], *, concurrency: int = 1,
                 timeout: float = DEFAULT_TIMEOUT, max_retry_time: float = DEFAULT_MAX_RETRY_TIME,
                 backoff: float = DEFAULT_BACKOFF, rate: float | None = None, insecure: bool = False,
                 ca_certs: str | None = None, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 on_charge: Callable[[int], None] | None = None):
        self.endpoint = endpoint
        self._headers = dict(headers)
        self._secrets = _secret_words(self._headers)
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retry_time = max_retry_time
        self.backoff = backoff
        self.insecure = insecure
        self.max_response_bytes = max_response_bytes
        self._bucket = TokenBucket(rate) if rate is not None else None
        self._lock = threading.Lock()
        self._announce_lock = threading.Lock()
        self.on_charge = on_charge
        self.charged = self._reserved = self.requests = self.retries = 0
        self._pool = self._make_pool(ca_certs)
        if self._headers and endpoint.scheme == "http" and not endpoint.is_loopback:
            log.warning("sending headers to %s over plain http: anyone on the path can read them",
                        endpoint.origin)

    @property
    def header_names(self) -> list[str]:
        return sorted(self._headers)

    def figures(self) -> tuple[int, int, int]:
        """``(charged, requests, retries)``, read together."""
        with self._lock:
            return self.charged, self.requests, self.retries

    def close(self) -> None:
        self._pool.clear()

    # -------------------------------------------------------------------- accounting

    def _reserve(self, images: int, budget: int | None) -> None:
        with self._lock:
            if budget is not None and self.charged + self._reserved + images > budget:
                raise BudgetExceeded(
                    f"query budget exhausted: {self.charged} of {budget} images charged "
                    f"(retries and probes included); a request of {images} more would exceed it"
                )
            self._reserved += images

    def _settle(self, images: int, charged: bool) -> None:
        with self._lock:
            self._reserved -= images
            if charged:
                self.charged += images

    def _announce(self, images: int) -> None:
        if self.on_charge is not None:
            with self._announce_lock:  # one call at a time, from whichever thread sends
                self.on_charge(images)

    # ------------------------------------------------------------------------ sending

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

    def exchange(self, method: str, path: str, body: bytes | None = None, *, images: int = 0,
                 budget: int | None = None, what: str, ok_statuses: tuple[int, ...] = ()) -> Reply:
        """One request, retried while its failures may pass.

        Args:
            method, path, body: the request (``body`` is JSON).
            images: images the request carries, charged per attempt by the module's rule.
            budget: most images that may be charged in all; an attempt that could pass it
                is not sent (:class:`~copycat_tf.errors.BudgetExceeded`).
            what: what the request is for, in messages (``"inference"``, ``"metadata"``).
            ok_statuses: statuses besides 2xx returned instead of raised.

        Returns:
            The :class:`Reply` with a 2xx status (or one of ``ok_statuses``).

        Raises:
            CopycatError: one line, once the request cannot succeed.
        """
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
            reply = None
            if images:
                self._reserve(images, budget)
                try:
                    self._announce(images)  # write-ahead: before the request leaves
                except BaseException:
                    self._settle(images, False)
                    raise
                with self._lock:
                    self.requests += 1
            try:
                reply = self._attempt(method, url, body, headers)
            finally:
                if images:
                    charged = is_charged(reply)
                    self._settle(images, charged)
                    if not charged:
                        self._announce(-images)
            if reply.fatal is not None:
                raise reply.fatal
            status = reply.status
            if status is not None and (200 <= status < 300 or status in ok_statuses):
                return reply
            if status is not None and 300 <= status < 400:
                raise self._redirect_error(what, reply)
            if status is not None and status not in _RETRIED_STATUSES:
                raise self._status_error(what, reply)
            delay = self._retry_delay(reply, attempts, time.monotonic() - started, what)
            with self._lock:
                self.retries += 1
            log.warning("%s request to %s: %s; retry %d in %.1f s", what, self.endpoint.url,
                        self.describe(reply), attempts, delay)
            time.sleep(delay)

    def _retry_delay(self, reply: Reply, attempts: int, elapsed: float, what: str) -> float:
        """Seconds to wait before the next attempt; a CopycatError once the retry time is spent."""
        if reply.retry_after is not None:
            delay = reply.retry_after * random.uniform(1.0, 1.1)
        else:
            delay = min(_BACKOFF_LONGEST, self.backoff * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
        if elapsed + delay > self.max_retry_time:
            asked = (f"; the server asked to wait {reply.retry_after:.0f} s more"
                     if reply.retry_after is not None else "")
            raise CopycatError(
                f"{what} request to {self.endpoint.url} failed {attempts} time(s) in "
                f"{elapsed:.0f} s (last: {self.describe(reply)}){asked}; gave up after the "
                f"{self.max_retry_time:g} s retry time. {self.charged} images charged so far; "
                "rerun the same command later to resume"
            )
        return delay

    def _attempt(self, method: str, url: str, body: bytes | None, headers: dict) -> Reply:
        deadline = time.monotonic() + self.timeout
        try:
            response = self._pool.urlopen(
                method, url, body=body, headers=headers, retries=False, redirect=False,
                preload_content=False, timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            )
        except SSLError as exc:
            return Reply(None, "TLS failed", sent=False, fatal=CopycatError(
                f"TLS with {self.endpoint.origin} failed ({self.redact(_reason(exc))}); for a "
                "private CA pass ca_certs (--ca-certs), or insecure=True (--insecure) to skip the check"
            ))
        except ConnectTimeoutError as exc:  # also NewConnectionError: nothing was sent
            return Reply(None, f"cannot connect ({self.redact(_reason(exc))})", sent=False)
        except ReadTimeoutError:
            return Reply(None, f"no answer within {self.timeout:g} s", sent=True)
        except (HTTPError, OSError) as exc:
            return Reply(None, f"connection dropped ({self.redact(_reason(exc))})", sent=True)
        ok = 200 <= response.status < 300
        try:
            data = self._read_capped(response, self.max_response_bytes if ok else _ERROR_BODY_BYTES,
                                     deadline, keep=ok)
        except _TooLarge:
            return Reply(response.status, response.reason or "", True, fatal=self.bad_answer(
                "inference" if body else method, f"its body is larger than the "
                f"{self.max_response_bytes} byte cap (max_response_bytes)"))
        except (HTTPError, OSError, _Slow) as exc:
            if ok:
                return Reply(None, f"answer cut off ({self.redact(_reason(exc))})", sent=True)
            data = b""
        return Reply(response.status, response.reason or "", True, data,
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

    def json(self, reply: Reply, what: str):
        """The reply's body parsed as JSON; a CopycatError naming it when it is not."""
        data = reply.body
        try:
            return json.loads(data)
        except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, huge numbers, deep nesting
            raise self.bad_answer(what, f"it is not JSON: {self.excerpt(data)}") from None

    def bad_answer(self, what: str, problem: str) -> CopycatError:
        """The one-line error for an answer that cannot be used (``problem`` is shown as is)."""
        return CopycatError(
            f"{self.endpoint.url} gave an unusable {what} answer: {problem}. "
            f"{self.charged} images charged so far; what was answered before is kept"
        )

    def _status_error(self, what: str, reply: Reply) -> CopycatError:
        status = reply.status
        hint = {401: "check the credentials given as a header (--header 'Authorization: ...')",
                403: "the credentials given lack access to this model",
                404: f"no model {self.endpoint.model!r} there: check the URL and --protocol",
                405: "the server does not take this request there: check the URL and --protocol",
                413: "the request is too large: lower max_batch (images per request)",
                }.get(status, "the server refused the request; it is not retried")
        return CopycatError(f"{what} request to {self.endpoint.url} failed: {self.describe(reply)}; {hint}")

    def _redirect_error(self, what: str, reply: Reply) -> CopycatError:
        location = (reply.headers or {}).get("Location", "")
        where = ""
        if location:
            parts = urlsplit(location)
            where = f" to {(parts.scheme + '://' + (parts.hostname or '')) if parts.hostname else ''}{parts.path}"
        return CopycatError(
            f"{what} request to {self.endpoint.url} was redirected ({reply.status}){self.redact(where)}; "
            "copycat-tf follows no redirect, so credentials never reach another address: give the "
            "final URL as the target"
        )

    def describe(self, reply: Reply) -> str:
        """``HTTP 503 Service Unavailable (error: ...)`` or what went wrong without an answer."""
        if reply.status is None:
            return reply.reason
        text = f"HTTP {reply.status} {reply.reason}".strip()
        excerpt = self.excerpt(reply.body) if reply.body else ""
        return f"{text} ({excerpt})" if excerpt else text

    def excerpt(self, data: bytes) -> str:
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
        text = self.redact(text)
        return text[:200] + ("..." if len(text) > 200 else "")

    def redact(self, text: str) -> str:
        """``text`` with every header value (and each long word of one) replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


# ------------------------------------------------------------------------------ helpers


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


def _reason(exc: BaseException) -> str:
    """urllib3 wraps the socket error that says what happened in ``reason``."""
    reason = getattr(exc, "reason", None)
    return first_line(reason if isinstance(reason, BaseException) else exc)


class _TooLarge(Exception):
    pass


class _Slow(Exception):
    pass
