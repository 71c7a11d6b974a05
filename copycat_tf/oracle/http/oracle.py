"""HttpOracle: a classifier behind an HTTP inference API, as an :class:`~copycat_tf.oracle.Oracle`.

See the package's docstring for the protocols, the contract, charging and retries.
"""

from __future__ import annotations

import json
import logging

from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import numpy as np

from copycat_tf.contract import OUTPUT_KINDS, ClassOutput, Contract, Preprocessing, detect_output_kind
from copycat_tf.errors import CopycatError, check_positive_number, check_whole
from copycat_tf.oracle.base import MAX_FIXED_BATCH, Answers, Oracle
from copycat_tf.oracle.info import TargetInfo
from copycat_tf.oracle.options import ContractOverrides, HttpOptions
from copycat_tf.oracle.http.contract import MAX_CLASSES, check_class_names, choose_output, image_input
from copycat_tf.oracle.http.endpoint import Endpoint, endpoint_identity, non_negative, parse_rate
from copycat_tf.oracle.http.transport import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRY_TIME,
    DEFAULT_TIMEOUT,
    Reply,
    Transport,
)
from copycat_tf.oracle.http.wire import BadAnswer, TFServingCodec, V2Codec, is_float_type, metadata_tensors

log = logging.getLogger(__name__)

#: The output kinds an HTTP target may have: a label-only API answers one class per image.
HTTP_OUTPUT_KINDS = (*OUTPUT_KINDS, "labels")
PROBE_IMAGES = 2
DEFAULT_MAX_BATCH = 64


@dataclass(frozen=True)
class HttpCounters:
    """What a progress bar shows: images charged, HTTP requests, retries and money.

    Attributes:
        queries_spent: images charged (probes and retries included).
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
            may end it. No credentials, query string or fragment (use headers).
        http: :class:`~copycat_tf.oracle.options.HttpOptions`: protocol (default read from
            the URL's path), headers (values never shown or written), rate (requests per
            second, retries included), concurrency (requests in flight; one :meth:`query` of
            more than ``max_batch`` images is split and sent in parallel; default 1), timeout
            (seconds one attempt may take, default 30), retry time and backoff (each wait
            doubles up to 30 s, times a random factor in [0.5, 1]; ``Retry-After`` overrides
            it), TLS (``insecure``, ``ca_certs``) and the largest answer body read.
        overrides: :class:`~copycat_tf.oracle.options.ContractOverrides`: what the metadata
            does not say: the input's name (v2 default ``"input"``), size, channels (default
            3), layout (default detected, else NHWC) and dtype (default float32); the
            preprocessing, or a dict overriding some of its fields (default ``[0, 1]``
            scaling for float inputs); which output holds the classes; what it holds
            (``"probabilities"``, ``"logits"``, ``"scores"`` or ``"labels"``: one class index
            or name per image; default from the metadata's types, else probed); the class
            count; the class names in index order (to read answers that name the class).
        budget: most images that may be charged, probes and retries included; ``None``
            for no limit.
        price_per_1k: price of 1,000 images, for :attr:`cost`.
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
        http: HttpOptions | None = None,
        overrides: ContractOverrides | None = None,
        budget: int | None = None,
        price_per_1k: float | None = None,
        contract: Contract | None = None,
    ):
        http, wanted = http or HttpOptions(), overrides or ContractOverrides()
        concurrency = 1 if http.concurrency is None else http.concurrency
        max_batch = DEFAULT_MAX_BATCH if http.max_batch is None else http.max_batch
        timeout = DEFAULT_TIMEOUT if http.timeout is None else http.timeout
        max_response_bytes = (DEFAULT_MAX_RESPONSE_BYTES if http.max_response_bytes is None
                              else http.max_response_bytes)
        output_kind = wanted.output_kind
        super().__init__(budget)
        self.endpoint = Endpoint.parse(url, http.protocol)
        check_whole("concurrency", concurrency)
        check_whole("max_batch", max_batch)
        check_whole("max_response_bytes", max_response_bytes, minimum=1024)
        check_positive_number("timeout", timeout)
        self.concurrency = int(concurrency)
        self.max_batch = min(int(max_batch), MAX_FIXED_BATCH)
        self.transport = Transport(
            self.endpoint, http.parsed_headers(), concurrency=self.concurrency, timeout=float(timeout),
            max_retry_time=non_negative("max_retry_time", DEFAULT_MAX_RETRY_TIME if http.max_retry_time is None
                                        else http.max_retry_time),
            backoff=non_negative("backoff", DEFAULT_BACKOFF if http.backoff is None else http.backoff),
            rate=parse_rate(http.rate), insecure=bool(http.insecure), ca_certs=http.ca_certs,
            max_response_bytes=int(max_response_bytes),
            # Every attempt (retries and probes too) reaches charging_to()'s write-ahead log.
            on_charge=self._announce,
        )
        self.price_per_1k = None if price_per_1k is None else non_negative("price_per_1k", price_per_1k)
        if output_kind is not None and output_kind not in HTTP_OUTPUT_KINDS:
            raise CopycatError(f"output kind must be one of {HTTP_OUTPUT_KINDS}; received {output_kind!r}")
        self.class_names = check_class_names(wanted.class_names, wanted.num_classes)
        self._class_index = {name: i for i, name in enumerate(self.class_names or ())}
        self._codec = V2Codec if self.endpoint.protocol == "v2" else TFServingCodec
        self._executor: ThreadPoolExecutor | None = None
        self.identity = endpoint_identity(self.endpoint)
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
            self._build_contract(self.server_metadata, wanted)
        self.queries_spent = self._setup_spend = self.transport.charged

    # ---------------------------------------------------------------- public figures

    @property
    def requests_sent(self) -> int:
        return self.transport.requests

    @property
    def retries(self) -> int:
        return self.transport.retries

    @property
    def cost(self) -> float | None:
        """Money spent on ``queries_spent`` images at ``price_per_1k`` (``None`` without a price)."""
        return self._cost(self.transport.charged)

    def _cost(self, images: int) -> float | None:
        return None if self.price_per_1k is None else images * self.price_per_1k / 1000

    def counters(self) -> HttpCounters:
        """Live figures, safe to read from another thread while a query is in flight."""
        charged, requests, retries = self.transport.figures()
        return HttpCounters(charged, requests, retries, self._cost(charged))

    def info(self) -> TargetInfo:
        """The endpoint's identity and contract (no header value)."""
        metadata = self.server_metadata if isinstance(self.server_metadata, dict) else {}
        return TargetInfo(
            kind="http",
            location=self.endpoint.url,
            identity=self.identity,
            contract=self.contract,
            producer=metadata.get("platform") if isinstance(metadata.get("platform"), str) else None,
            class_names=tuple(self.class_names) if self.class_names else None,
            probe_queries=self.probe_queries,
            details={
                "url": self.endpoint.url,
                "protocol": self.endpoint.protocol,
                "model": self.endpoint.model,
                "version": self.endpoint.version,
                "headers": self.transport.header_names,
                "versions": metadata.get("versions"),
                "server_metadata": self.server_metadata is not None,
                "answers": self.output_kind,
            },
        )

    def __repr__(self) -> str:
        shown = {name: "***" for name in self.transport.header_names}
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
        self.transport.close()

    def __enter__(self) -> HttpOracle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------- querying

    metered = True

    def _charge(self, n: int) -> None:
        pass  # the transport charges each attempt as it goes out (see the module's rule)

    def query(self, images: np.ndarray, *, soft: bool = False) -> Answers:
        """Send ``images``; as :meth:`Oracle.query`, but every attempt is charged by the
        module's rule, so ``queries_spent`` also counts retries and failed calls."""
        try:
            return super().query(images, soft=soft)
        finally:
            self.queries_spent = self.transport.charged

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
        reply = self.transport.exchange("POST", self.endpoint.infer_path, self._body(x), images=len(x),
                                        budget=self._limit(), what="inference")
        try:
            output_name = self.contract.output.name if self._output_named else None
            return self._codec.decode(self.transport.json(reply, "inference"), output_name, len(x))
        except BadAnswer as exc:
            raise self.transport.bad_answer("inference", str(exc)) from None

    def _limit(self) -> int | None:
        """The most images that may be charged in all: the budget, or a tighter cap."""
        limits = [limit for limit in (self.budget, self._cap) if limit is not None]
        return min(limits) if limits else None

    def _class_rows(self, answer: np.ndarray, n: int) -> np.ndarray:
        """The answer as float32 class rows ``(n, K)``; labels become one-hot rows."""
        k = self.contract.num_classes
        if answer.ndim == 2 and answer.shape[1] == 1 and (self.output_kind == "labels" or answer.dtype == object):
            answer = answer[:, 0]
        if self.output_kind == "labels":
            if answer.ndim == 2 and answer.dtype != object and answer.shape == (n, k):
                if not np.all(np.isfinite(answer)):
                    raise self.transport.bad_answer("inference", "it holds NaN or infinite values")
                indices = answer.argmax(axis=1)
            else:
                indices = self._label_indices(answer, n)
            rows = np.zeros((n, k), np.float32)
            rows[np.arange(n), indices] = 1.0
            return rows
        if answer.dtype == object or answer.ndim != 2:
            what = "class names" if answer.dtype == object else f"values of shape {answer.shape}"
            raise self.transport.bad_answer(
                "inference", f"it holds {what}, not rows of class scores; if the API answers one "
                "class per image, pass output_kind='labels' (--output-kind labels)")
        if answer.shape != (n, k):
            raise self.transport.bad_answer("inference", f"output has shape {answer.shape}; expected ({n}, {k}) "
                                   f"for {n} images")
        if not np.all(np.isfinite(answer)):
            raise self.transport.bad_answer("inference", "it holds NaN or infinite values")
        return answer.astype(np.float32)

    def _label_indices(self, answer: np.ndarray, n: int) -> np.ndarray:
        if answer.shape != (n,):
            raise self.transport.bad_answer("inference", f"labels have shape {answer.shape}; expected ({n},)")
        if answer.dtype == object:
            if not self.class_names:
                raise CopycatError(
                    f"{self.endpoint.url} answers class names (e.g. {self.transport.redact(str(answer[0])[:40])!r}); "
                    "give the class list in index order (class_names / --class-names)"
                )
            unknown = [name for name in answer if name not in self._class_index]
            if unknown:
                raise self.transport.bad_answer("inference", f"it names class {self.transport.redact(unknown[0][:60])!r}, "
                                       f"which is not among the {len(self.class_names)} class names given")
            return np.array([self._class_index[name] for name in answer], np.int64)
        k = self.contract.num_classes
        if not np.all(np.isfinite(answer)) or np.any(answer != np.round(answer)):
            raise self.transport.bad_answer("inference", "its labels are not whole numbers")
        outside = answer[(answer < 0) | (answer >= k)]
        if outside.size:
            raise self.transport.bad_answer("inference", f"it answers class {int(outside[0])}; there are {k} "
                                   f"classes (0 to {k - 1})")
        return answer.astype(np.int64)

    # ---------------------------------------------------------------------- contract

    def _check_ready(self) -> None:
        reply = self.transport.exchange("GET", self.endpoint.ready_path, what="readiness",
                                 ok_statuses=(404, 405, 501))
        if reply.status in (404, 405, 501):
            # Gateways in front of a model often route only the inference path.
            log.info("%s has no readiness endpoint (%s); going on", self.endpoint.origin, reply.status)
            return
        if self.endpoint.protocol == "tfserving":
            doc = self._maybe_json(reply)
            states = [v.get("state") for v in (doc or {}).get("model_version_status", []) if isinstance(v, dict)]
            if states and "AVAILABLE" not in states:
                raise CopycatError(f"{self.endpoint.url} is not ready: model versions are {states}")
            if isinstance(doc, dict) and doc.get("ready") is False:
                raise CopycatError(f"{self.endpoint.url} is not ready (it says ready: false)")

    def _read_metadata(self) -> dict | None:
        reply = self.transport.exchange("GET", self.endpoint.metadata_path, what="metadata",
                                 ok_statuses=(404, 405, 501))
        if reply.status in (404, 405, 501):
            self._no_metadata = f"its metadata request answered {self.transport.describe(reply)}"
            log.info("%s: %s; the contract comes from the options", self.endpoint.url, self._no_metadata)
            return None
        doc = self._maybe_json(reply)
        if not isinstance(doc, dict):
            self._no_metadata = "its metadata answer is not a JSON object"
            log.warning("%s: %s; ignoring it", self.endpoint.url, self._no_metadata)
            return None
        return doc

    def _maybe_json(self, reply: Reply):
        try:
            return json.loads(reply.body)
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

    def _build_contract(self, metadata, wanted: ContractOverrides) -> None:
        input_name, input_size, channels = wanted.input_name, wanted.input_size, wanted.channels
        layout, dtype, preprocessing = wanted.layout, wanted.dtype, wanted.preprocessing
        output, num_classes = wanted.output, wanted.num_classes
        inputs, outputs = metadata_tensors(metadata, self.endpoint.protocol) if metadata else ([], [])
        where = self.endpoint.url
        image = image_input(inputs, where=where, no_metadata=self._no_metadata, input_name=input_name,
                            input_size=input_size, channels=channels, layout=layout, dtype=dtype)
        out_name, out_dtype, out_classes = choose_output(outputs, output, where=where,
                                                         protocol=self.endpoint.protocol,
                                                         labels_first=self.output_kind == "labels")
        if self.output_kind is None and out_dtype is not None and not is_float_type(out_dtype):
            self.output_kind = "labels"  # an integer or string output: one class per image
        given = len(self.class_names) if self.class_names else num_classes
        if out_classes is not None and given is not None and given != out_classes:
            raise CopycatError(f"output {out_name!r} has {out_classes} classes; {given} were given "
                               "(num_classes or class_names)")
        k = out_classes or given
        if not isinstance(preprocessing, Preprocessing):
            # A dict overrides some fields (as for ONNX files); the others keep the input
            # type's default: no metadata endpoint describes preprocessing.
            preprocessing = replace(Preprocessing.default_for(image.dtype), **dict(preprocessing or {}))
        self._fixed_batch = image.batch_size
        # v2 may name the output to fetch (only it is sent back); without metadata the name is a guess.
        self._output_named = self.endpoint.protocol == "v2" and (bool(outputs) or output is not None)
        kind = self.output_kind if self.output_kind not in (None, "labels") else "probabilities"
        self.contract = Contract(image, ClassOutput(out_name, k or 1, kind), preprocessing,
                                 tuple(o["name"] for o in outputs if o["name"] != out_name))
        if k is None or self.output_kind is None:
            self._probe(k)

    def _probe(self, k: int | None) -> None:
        """Learn the class count and output kind from two noise images (charged)."""
        batch = self._fixed_batch or PROBE_IMAGES
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (batch, *self.contract.image_shape), dtype=np.uint8)
        before = self.transport.charged
        log.info("probing %s with %d noise images (charged) to learn %s", self.endpoint.url, batch,
                 "the class count and output kind" if k is None else "the output kind")
        try:
            answer = self._ask(self.contract.to_model_input(images))
        finally:
            self.probe_queries += self.transport.charged - before
        if answer.ndim == 2 and answer.shape[1] == 1:
            answer = answer[:, 0]
        if answer.dtype == object or answer.ndim == 1:
            if answer.shape != (batch,):
                raise self.transport.bad_answer("probe", f"labels have shape {answer.shape} for {batch} images")
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
            raise self.transport.bad_answer("probe", f"output has shape {answer.shape} for {batch} images; "
                                   f"expected ({batch}, classes)")
        elif not np.all(np.isfinite(answer)):
            raise self.transport.bad_answer("probe", "it holds NaN or infinite values")
        else:
            if k is not None and k != answer.shape[1] and self.output_kind != "labels":
                raise self.transport.bad_answer("probe", f"output has {answer.shape[1]} columns; {k} classes were given")
            k = answer.shape[1]
            if self.output_kind is None:
                self.output_kind = detect_output_kind(answer)
        if not 2 <= k <= MAX_CLASSES:
            raise CopycatError(f"{self.endpoint.url} answers {k} classes; expected 2 to {MAX_CLASSES}")
        kind = "probabilities" if self.output_kind == "labels" else self.output_kind
        self.contract = Contract(self.contract.input, ClassOutput(self.contract.output.name, k, kind),
                                 self.contract.preprocessing, self.contract.extra_outputs)
        self._class_rows(answer, batch)
