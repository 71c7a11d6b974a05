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
two noise images. A probe is a real request to what may be a paid API, so **probe images
are charged** like any other query (``probe_queries`` says how many; give ``output_kind``
and ``num_classes``, or a whole ``contract``, to need none). Label-only APIs (one class
index or name per image) give one-hot rows, so every later stage works unchanged.

Requests go through a :class:`~copycat_tf.oracle.http.transport.Transport`: retries with backoff,
the rate limit, the size cap, secret headers, and the charging rule — an attempt is charged
once its request has gone out unless the server answered that it did not run the model
(a redirect, a 4xx, a 503) — so ``queries_spent`` counts retries and probes, never less than
the model saw, and never passes ``budget``. One :meth:`~HttpOracle.query` of more than
``max_batch`` images is split into requests sent ``concurrency`` at a time.

The package, one job a module: ``endpoint`` (URL, headers, rate), ``transport`` (retries,
pace, charging, secrets), ``wire`` (the two protocols' JSON), ``contract`` (the contract
from metadata and options), ``oracle`` (:class:`HttpOracle`).
:func:`copycat_tf.oracle.open_oracle` opens an ONNX file or a URL alike.

Usage::

    oracle = open_oracle("https://api.example.com/v2/models/fer",
                         headers=["Authorization: Bearer ..."], budget=20_000,
                         rate="20/s", concurrency=8, price_per_1k=1.5)
    print(oracle.contract.describe())
    answers = oracle.query(images, soft=True)
    oracle.queries_spent, oracle.retries, oracle.cost
"""

from copycat_tf.oracle.http.endpoint import (
    PROTOCOLS,
    Endpoint,
    merge_headers,
    parse_header_lines,
    parse_headers,
    parse_rate,
    read_header_file,
)
from copycat_tf.oracle.http.oracle import HTTP_OUTPUT_KINDS, HttpCounters, HttpOracle
from copycat_tf.oracle.http.wire import number_list

__all__ = ["HTTP_OUTPUT_KINDS", "PROTOCOLS", "Endpoint", "HttpCounters", "HttpOracle", "merge_headers",
           "number_list", "parse_header_lines", "parse_headers", "parse_rate", "read_header_file"]
