"""HttpOracle against a real server: KServe's ModelServer serving ONNX targets, behind a fault proxy.

The server (``kserve_target.py`` in its own virtualenv, see ``benchmarks/serving/``) counts every
image it runs through a model, so accounting is checked against the server's own figure;
the proxy between client and server injects 503, 429 with ``Retry-After``, dropped
connections, slow answers, wrong shapes, NaN, HTML pages, oversized bodies, redirects and a
server that echoes the credentials back. Answers are compared with onnxruntime run
in-process on the same ONNX file.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from cli_runner import run_cli
from onnx_factory import make_linear_classifier

from benchmarks.serving import FaultProxy, KServeServer
from copycat_tf.contract import Preprocessing
from copycat_tf.errors import BudgetExceeded, CopycatError
from copycat_tf.fakeset import FakeSet, label
from copycat_tf.oracle import ContractOverrides, HttpOptions, HttpOracle, OnnxOracle, open_oracle
from copycat_tf.oracle.http import Endpoint, number_list, parse_headers, parse_rate
from copycat_tf.oracle.http.wire import metadata_tensors

CLASS_NAMES = ["cat", "dog", "fox", "owl"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
FAST = {"backoff": 0.01}  # retries in tests need not wait half a second (an HttpOptions field)
PROBABILITIES = ContractOverrides(output_kind="probabilities")


# ------------------------------------------------------------------------------ fixtures


# Every case here but the URL checks talks to a real KServe server in its own network namespace.
pytestmark = pytest.mark.server

@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("http-targets")
    made = {
        "probs": {"num_classes": 4},
        "nchw": {"num_classes": 5, "layout": "NCHW", "output": "logits", "seed": 1},
        "uint8": {"num_classes": 3, "dtype": "uint8", "output": "scores", "seed": 2},
        "fixed": {"num_classes": 4, "batch": 4, "seed": 3},
    }
    paths = {}
    for name, options in made.items():
        paths[name] = folder / f"{name}.onnx"
        make_linear_classifier(paths[name], image_shape=(8, 8, 3), **options)
    return paths


@pytest.fixture(scope="module")
def server(targets, tmp_path_factory):
    models = {name: (path, "rows") for name, path in targets.items()}
    models["labels"] = (targets["probs"], "labels")
    models["names"] = (targets["probs"], "names")
    running = KServeServer(tmp_path_factory.mktemp("kserve"), models, CLASS_NAMES)
    yield running
    running.stop()


@pytest.fixture
def proxy(server, tmp_path):
    fresh = FaultProxy(server, tmp_path / "proxy")
    yield fresh
    fresh.stop()


def url(proxy, model="probs", protocol="v2"):
    return f"{proxy.url}/{'v2' if protocol == 'v2' else 'v1'}/models/{model}"


def pictures(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def reference(path, images):
    return OnnxOracle(path).query(images, soft=True)


class Spent:
    """Images the server ran from now on."""

    def __init__(self, server):
        self.server, self.start = server, server.images()

    def __call__(self) -> int:
        return self.server.images() - self.start


# ------------------------------------------------------------------- without a server


@pytest.mark.parametrize("bad, hidden", [
    ("ftp://127.0.0.1/v2/models/m", None),
    ("http://user:hunter2pass@127.0.0.1/v2/models/m", "hunter2pass"),
    ("http://127.0.0.1/v2/models/m?api_key=topsecret99", "topsecret99"),
    ("http://127.0.0.1/predict", None),
    ("http:///v2/models/m", None),
])
def test_urls_that_are_refused_with_one_clear_line(bad, hidden):
    with pytest.raises(CopycatError) as error:
        Endpoint.parse(bad)
    assert "\n" not in str(error.value)
    if hidden:
        assert hidden not in str(error.value)


def test_endpoint_paths_for_both_protocols():
    v2 = Endpoint.parse("https://ml.example.com/api/v2/models/fer/versions/3/infer")
    assert (v2.protocol, v2.model, v2.version, v2.origin) == ("v2", "fer", "3", "https://ml.example.com")
    assert (v2.metadata_path, v2.ready_path) == ("/api/v2/models/fer/versions/3", "/api/v2/health/ready")
    tf = Endpoint.parse("http://127.0.0.1:8501/v1/models/fer/versions/2:predict")
    assert (tf.protocol, tf.infer_path, tf.metadata_path) == (
        "tfserving", "/v1/models/fer/versions/2:predict", "/v1/models/fer/versions/2/metadata")
    with pytest.raises(CopycatError, match="needs a URL path ending in /v1/models/NAME"):
        Endpoint.parse("http://127.0.0.1/v2/models/fer", protocol="tfserving")


def test_header_errors_never_repeat_the_value():
    token = "Bearer s3cr3t-t0ken-value"
    for bad in ([token], [f"Authorization: {token}\r\nX-Evil: 1"]):
        with pytest.raises(CopycatError) as error:
            parse_headers(bad)
        assert "s3cr3t" not in str(error.value)
    with pytest.raises(CopycatError, match="set by copycat-tf"):
        parse_headers({"Host": "elsewhere"})
    assert parse_headers(["X-Key:  abc "]) == {"X-Key": "abc"}


def test_rates():
    assert parse_rate("20/s") == 20 and parse_rate("1200/min") == 20 and parse_rate("36/h") == 0.01
    for bad in ("fast", "0/s", "-3", "5/fortnight"):
        with pytest.raises(CopycatError, match="rate"):
            parse_rate(bad)


@pytest.mark.parametrize("preprocessing, dtype", [
    (Preprocessing(std=(255.0,)), "float32"),
    (Preprocessing(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)), "float32"),
    (Preprocessing(mean=(127.5,), std=(127.5,)), "float16"),
    (Preprocessing(), "uint8"),
])
def test_request_numbers_read_back_to_the_same_tensor(preprocessing, dtype):
    """Every pixel value under common preprocessings survives the JSON text exactly, read
    the way servers read it (as a double, then cast), so the server runs the model on the
    very tensor onnxruntime would."""
    pixels = np.stack(np.meshgrid(np.arange(256), np.arange(3), indexing="ij"), -1)[..., 0]
    x = (pixels.astype(np.float32) - np.asarray(preprocessing.mean, np.float32)) / np.asarray(
        preprocessing.std, np.float32)
    x = x.astype(dtype) if dtype != "uint8" else pixels.astype(np.uint8)
    read = np.asarray(json.loads(number_list(x)), dtype=np.float64).astype(dtype)
    assert read.shape == x.shape and np.array_equal(read, x)


@pytest.mark.parametrize("shape", [(1,), (7,), (2, 3), (1, 1, 1, 1), (3, 1, 2, 4), (2, 5, 5, 3)])
def test_request_numbers_nest_like_the_array(shape):
    values = np.random.default_rng(len(shape)).integers(-300, 300, shape)
    for x in (values.astype(np.int64), values.astype(np.float32) / 7):
        read = np.asarray(json.loads(number_list(x)))
        assert read.shape == x.shape
        np.testing.assert_array_equal(read.astype(x.dtype), x)


def test_tf_serving_metadata_is_read_from_its_serving_signature():
    """TF Serving's GetModelMetadataResponse as its REST API prints it (sizes are strings);
    the test server (KServe V1) has no metadata endpoint, so its shape is checked here."""
    def tensor(dtype, *dims):
        return {"dtype": dtype, "name": "t:0",
                "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}}

    doc = {"model_spec": {"name": "fer", "signature_name": "", "version": "3"},
           "metadata": {"signature_def": {"signature_def": {
               "classify_x": {"inputs": {"x": tensor("DT_STRING", -1)}, "outputs": {}},
               "serving_default": {"inputs": {"image": tensor("DT_UINT8", -1, 48, 48, 1)},
                                   "outputs": {"probs": tensor("DT_FLOAT", -1, 7),
                                               "label": tensor("DT_INT64", -1)},
                                   "method_name": "tensorflow/serving/predict"}}}}}
    inputs, outputs = metadata_tensors(doc, "tfserving")
    assert inputs == [{"name": "image", "dtype": "uint8", "shape": [None, 48, 48, 1]}]
    assert outputs == [{"name": "probs", "dtype": "float32", "shape": [None, 7]},
                       {"name": "label", "dtype": "int64", "shape": [None]}]
    assert metadata_tensors({"metadata": {}}, "tfserving") == ([], [])


def test_open_oracle_picks_the_implementation(tmp_path):
    path = tmp_path / "t.onnx"
    make_linear_classifier(path)
    assert isinstance(open_oracle(str(path)), OnnxOracle)
    with pytest.raises(CopycatError, match="concurrency cannot be used with an ONNX file"):
        open_oracle(str(path), concurrency=4)
    with pytest.raises(CopycatError, match="only http:// and https://"):
        open_oracle("file:///etc/passwd")


# --------------------------------------------------------------------- contract, answers


@pytest.mark.parametrize("model, options, probed", [
    ("probs", {"output_kind": "probabilities"}, 0),
    ("nchw", {}, 2),
    ("uint8", {"output_kind": "scores"}, 0),
    ("fixed", {"output_kind": "probabilities"}, 0),
])
def test_v2_contract_from_metadata_and_answers_equal_onnxruntime(server, proxy, targets, model, options, probed):
    spent = Spent(server)
    oracle = HttpOracle(url(proxy, model), http=HttpOptions(max_batch=8, concurrency=3),
                        overrides=ContractOverrides(**options))
    local = OnnxOracle(targets[model])
    assert oracle.contract.input == local.contract.input
    assert oracle.contract.output == local.contract.output
    assert oracle.contract.preprocessing == local.contract.preprocessing
    assert oracle.probe_queries == probed and spent() == probed
    images = pictures(21)
    answers, expected = oracle.query(images, soft=True), local.query(images, soft=True)
    np.testing.assert_array_equal(answers.labels, expected.labels)
    np.testing.assert_allclose(answers.probabilities, expected.probabilities, rtol=1e-6, atol=1e-7)
    # A fixed batch of 4 pads 21 images to 24; the padding is sent, so it is charged.
    sent = 24 if model == "fixed" else 21
    assert spent() == oracle.queries_spent == probed + sent
    assert oracle.requests_sent == -(-sent // (4 if model == "fixed" else 8)) + (1 if probed else 0)


def test_tfserving_protocol_without_metadata_needs_options_and_probes_at_a_charge(server, proxy, targets):
    spent = Spent(server)
    with pytest.raises(CopycatError, match="input_size"):
        HttpOracle(url(proxy, "nchw", "tfserving"))
    oracle = HttpOracle(url(proxy, "nchw", "tfserving"), overrides=ContractOverrides(input_size=(8, 8), layout="NCHW"), budget=30)
    assert oracle.server_metadata is None
    assert (oracle.output_kind, oracle.contract.num_classes, oracle.probe_queries) == ("logits", 5, 2)
    images = pictures(12, seed=1)
    np.testing.assert_array_equal(oracle.query(images).labels, reference(targets["nchw"], images).labels)
    assert spent() == oracle.queries_spent == 14
    with pytest.raises(BudgetExceeded):  # 14 + 17 > 30: refused before anything is sent
        oracle.query(pictures(17))
    assert spent() == 14


def test_label_only_answers_become_one_hot_rows(server, proxy, targets):
    images = pictures(10, seed=2)
    truth = reference(targets["probs"], images).labels
    with pytest.raises(CopycatError, match="num_classes"):
        HttpOracle(url(proxy, "labels"))
    by_index = HttpOracle(url(proxy, "labels"), overrides=ContractOverrides(num_classes=4))
    by_name = HttpOracle(url(proxy, "names"), overrides=ContractOverrides(class_names="cat, dog, fox, owl"))
    forced = HttpOracle(url(proxy, "probs"), overrides=ContractOverrides(output_kind="labels"))
    for oracle in (by_index, by_name, forced):
        assert oracle.output_kind == "labels" and oracle.probe_queries == 0
        answers = oracle.query(images, soft=True)
        np.testing.assert_array_equal(answers.labels, truth)
        np.testing.assert_array_equal(answers.probabilities, np.eye(4, dtype=np.float32)[truth])
    wrong = HttpOracle(url(proxy, "names"), overrides=ContractOverrides(class_names=["cat", "dog", "fox", "emu"]))
    with pytest.raises(CopycatError, match="'owl', which is not among the 4 class names"):
        wrong.query(pictures(64, seed=3))
    with pytest.raises(CopycatError, match="class names"):
        HttpOracle(url(proxy, "names"))


# --------------------------------------------------------------------- faults, accounting


def test_retries_every_transient_fault_and_charges_exactly(server, proxy, targets):
    """Faults refused before the server are not charged; those after it are; a connection
    dropped after the request went out is charged although, here, the server never saw it."""
    oracle = HttpOracle(url(proxy), http=HttpOptions(timeout=1.0, max_batch=8, **FAST),
                        overrides=PROBABILITIES)
    spent = Spent(server)
    proxy.faults(next=["503", "429:1", "html503", "500-after", "drop-after", "slow:3"])
    images = pictures(8, seed=4)
    started = time.monotonic()
    answers = oracle.query(images)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    np.testing.assert_array_equal(answers.labels, reference(targets["probs"], images).labels)
    assert oracle.retries == 6 and oracle.requests_sent == 7
    assert spent() == oracle.queries_spent == 8 * 4  # 500-after, drop-after, slow and the answer
    proxy.faults(next=["drop-before"])
    oracle.query(images)
    assert oracle.queries_spent == spent() + 8  # the only case that counts more than the server saw
    assert oracle.counters().retries == 7


def test_gives_up_after_the_retry_time_with_one_line(server, proxy):
    oracle = HttpOracle(url(proxy), http=HttpOptions(max_retry_time=1.0, **FAST),
                        overrides=PROBABILITIES)
    spent = Spent(server)
    proxy.faults(every="503")
    with pytest.raises(CopycatError) as error:
        oracle.query(pictures(4))
    message = str(error.value)
    assert "\n" not in message and "HTTP 503" in message and "gave up after the 1 s retry time" in message
    assert "0 images charged" in message and oracle.queries_spent == 0 == spent()
    proxy.faults(next=["429:30"])  # asks for more than the retry time left: no waiting
    started = time.monotonic()
    with pytest.raises(CopycatError, match="asked to wait 30 s"):
        oracle.query(pictures(4))
    assert time.monotonic() - started < 5
    proxy.faults()
    assert len(oracle.query(pictures(4)).labels) == 4  # usable again once the server is


def test_client_errors_are_not_retried_and_never_show_the_token(server, proxy):
    token = "Bearer tok-" + secrets.token_hex(16)
    proxy.faults(require={"Authorization": token})
    with pytest.raises(CopycatError, match="401.*credentials"):
        HttpOracle(url(proxy), http=HttpOptions(headers={"Authorization": "Bearer wrong-" + secrets.token_hex(8)}))
    oracle = HttpOracle(url(proxy), http=HttpOptions(headers=[f"Authorization: {token}"], **FAST),
                        overrides=PROBABILITIES)
    spent = Spent(server)
    proxy.faults(next=["echo401"], require={"Authorization": token})
    with pytest.raises(CopycatError) as error:
        oracle.query(pictures(4))
    assert "HTTP 401" in str(error.value) and "***" in str(error.value)
    assert token not in str(error.value) and token.split()[1] not in str(error.value)
    assert oracle.retries == 0 and oracle.queries_spent == 0 == spent()
    for shown in (repr(oracle), json.dumps(oracle.info().to_dict()), oracle.identity):
        assert token.split()[1] not in shown
    with pytest.raises(CopycatError, match="no model 'absent'"):
        HttpOracle(url(proxy, "absent"), http=HttpOptions(headers={"Authorization": token}), overrides=ContractOverrides(input_size=(8, 8), output_kind="logits", num_classes=3)).query(pictures(1))


@pytest.mark.parametrize("fault, message, charged", [
    ("wrong-shape", r"output has shape \(7, 4\); expected \(8, 4\)", True),
    ("nan", "NaN or infinite", True),
    ("html200", "not JSON: an HTML page titled 'Sign in'", True),
    ("oversize", "larger than the 33554432 byte cap", True),
    ("redirect", r"redirected \(302\) to http://127.0.0.2/elsewhere; copycat-tf follows no redirect", False),
])
def test_bad_answers_give_one_clear_error_and_keep_the_oracle_usable(server, proxy, fault, message, charged):
    oracle = HttpOracle(url(proxy), http=HttpOptions(**FAST), overrides=PROBABILITIES)
    spent = Spent(server)
    proxy.faults(next=[fault])
    with pytest.raises(CopycatError, match=message) as error:
        oracle.query(pictures(8))
    assert "\n" not in str(error.value) and "token=x" not in str(error.value)
    assert oracle.retries == 0
    assert oracle.queries_spent == (8 if charged else 0) == spent()
    assert len(oracle.query(pictures(8)).labels) == 8
    assert oracle.queries_spent == spent()


def test_a_retry_that_would_pass_the_budget_is_not_sent(server, proxy):
    oracle = HttpOracle(url(proxy), http=HttpOptions(**FAST), overrides=PROBABILITIES, budget=12)
    spent = Spent(server)
    proxy.faults(next=["drop-after"])
    with pytest.raises(BudgetExceeded, match="8 of 12 images charged"):
        oracle.query(pictures(8))
    assert spent() == oracle.queries_spent == 8


def test_a_cap_holds_for_retries_too(server, proxy):
    oracle = HttpOracle(url(proxy), http=HttpOptions(**FAST), overrides=PROBABILITIES)
    spent = Spent(server)
    proxy.faults(next=["drop-after"])
    with oracle.capped(12), pytest.raises(BudgetExceeded):
        oracle.query(pictures(8))
    assert spent() == oracle.queries_spent == 8 and oracle.budget is None


def test_the_write_ahead_hook_hears_of_every_attempt_before_it_is_sent(server, proxy):
    spent = Spent(server)
    calls = []  # (images announced, images the server had run at that moment)
    oracle = HttpOracle(url(proxy), http=HttpOptions(**FAST), overrides=PROBABILITIES)
    proxy.faults(next=["503", "drop-after", "429:0"])
    with oracle.charging_to(lambda n: calls.append((n, spent()))):
        oracle.query(pictures(8))
    # 503: announced, then taken back; drop-after: charged (the server ran it); 429: taken back.
    assert [n for n, _ in calls] == [8, -8, 8, 8, -8, 8]
    assert [seen for n, seen in calls if n > 0] == [0, 0, 8, 8]
    assert sum(n for n, _ in calls) == oracle.queries_spent == spent() == 16


def test_concurrent_split_requests_and_the_rate_limit(server, proxy, targets):
    oracle = HttpOracle(url(proxy), http=HttpOptions(max_batch=5, concurrency=4), overrides=ContractOverrides(output_kind="probabilities"))
    spent = Spent(server)
    proxy.faults(every="slow:1")
    images = pictures(40, seed=5)
    answers = oracle.query(images)
    np.testing.assert_array_equal(answers.labels, reference(targets["probs"], images).labels)
    sizes = [n for _, n, _ in server.records()[-8:]]
    assert sizes == [5] * 8 and spent() == 40
    assert 2 <= proxy.stats()["max_in_flight"] <= 4
    paced = HttpOracle(url(proxy), http=HttpOptions(max_batch=1, concurrency=4, rate="10/s"), overrides=ContractOverrides(output_kind="probabilities"))
    proxy.faults()
    started = time.monotonic()
    paced.query(pictures(6))
    # Readiness, metadata and six requests: eight requests at most 10 a second.
    assert time.monotonic() - started >= 0.5


def test_tls_is_verified_unless_told_otherwise(server, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls = FaultProxy(server, tmp_path / "tls", tls=(cert, key))
    try:
        with pytest.raises(CopycatError, match="TLS .* failed .*ca_certs .*insecure"):
            HttpOracle(url(tls), overrides=ContractOverrides(output_kind="probabilities"))
        for options in ({"ca_certs": str(cert)}, {"insecure": True}):
            oracle = HttpOracle(url(tls), http=HttpOptions(**options),
                                overrides=ContractOverrides(output_kind="probabilities"))
            assert len(oracle.query(pictures(3)).labels) == 3
    finally:
        tls.stop()


# ------------------------------------------------------------------ with the labeling loop


def test_labeling_over_http_stores_what_labeling_the_file_stores(server, proxy, targets, tmp_path):
    """Same queries, same answers, same records: a copycat trained on either is the same."""
    spent = Spent(server)
    oracle = HttpOracle(url(proxy), http=HttpOptions(concurrency=4, max_batch=16))
    remote = label(oracle, ["noise:uniform"], 100, tmp_path / "remote", labels="soft", seed=3,
                   batch_size=40, shard_size=64)
    # the contract probe's two images came out of the remote run's budget of 100
    assert oracle.probe_queries == 2 and remote.count == 98 and remote.manifest["probe_queries"] == 2
    local = label(OnnxOracle(targets["probs"]), ["noise:uniform"], 98, tmp_path / "local",
                  labels="soft", seed=3, batch_size=40, shard_size=64)
    for a, b in zip(remote.iter_shards(with_probabilities=True), local.iter_shards(with_probabilities=True)):
        for name in ("images", "labels", "keys"):
            np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=1e-6, atol=1e-7)
    assert remote.queries_spent == spent() == oracle.queries_spent == 100


LABEL_SCRIPT = textwrap.dedent("""
    import logging, os, sys
    from copycat_tf.fakeset import label
    from copycat_tf.oracle import ContractOverrides, HttpOptions, HttpOracle
    logging.basicConfig(level=logging.DEBUG, filename=sys.argv[3])
    url, out, _, budget = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    headers = [f"Authorization: {os.environ['TARGET_TOKEN']}"]
    oracle = HttpOracle(url, http=HttpOptions(headers=headers, concurrency=2, max_batch=4, backoff=0.01, timeout=2),
                        overrides=ContractOverrides(output_kind="probabilities"))
    print(repr(oracle), oracle.identity, oracle.info(), flush=True)
    fakeset = label(oracle, ["noise:uniform"], budget, out, batch_size=8, shard_size=16, seed=1)
    print("done", fakeset.count, oracle.queries_spent, oracle.counters(), flush=True)
""")


def test_the_bearer_token_is_in_no_file_a_run_writes(server, proxy, tmp_path):
    token = "Bearer cc-" + secrets.token_urlsafe(24)
    home = tmp_path / "home"
    home.mkdir()
    env = {**ENV, "TARGET_TOKEN": token, "HOME": str(home), "TMPDIR": str(home)}
    # Faults that are not charged: the labeling loop gives the oracle a budget of one query per record.
    proxy.faults(next=["503", "429:0", "html503"], require={"Authorization": token})
    run = subprocess.run([sys.executable, "-c", LABEL_SCRIPT, url(proxy), str(tmp_path / "out"),
                          str(tmp_path / "debug.log"), "40"], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    (tmp_path / "stdout.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "done 40" in run.stdout and "retry" in (tmp_path / "debug.log").read_text()
    proxy.faults(next=["echo401"], require={"Authorization": token})  # a server that echoes it back
    again = subprocess.run([sys.executable, "-c", LABEL_SCRIPT, url(proxy), str(tmp_path / "out"),
                            str(tmp_path / "debug.log"), "48"], env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    (tmp_path / "stdout2.txt").write_text(again.stdout + again.stderr)
    assert again.returncode != 0 and "HTTP 401" in again.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "proxy" not in p.parts]
    assert len(written) >= 6
    for path in written:
        data = path.read_bytes()
        for secret in (token, token.split()[1]):
            assert secret.encode() not in data, f"{path} holds the token"


@pytest.mark.parametrize("form", ["file", "environment"])
def test_a_token_from_a_header_file_or_the_environment_is_in_no_file_and_no_output(server, proxy, tmp_path, form):
    token = "Bearer hf-" + secrets.token_urlsafe(24)
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "headers.txt").write_text(f"# the target's key\n\nAuthorization: {token}\n")
    given = (["--header", f"@{secret_dir / 'headers.txt'}"] if form == "file" else [])
    env = {"COPYCAT_TF_HEADERS": f"Authorization: {token}"} if form == "environment" else {}
    proxy.faults(next=["503"], require={"Authorization": token})
    out = tmp_path / "run"
    result = run_cli("-v", "label", url(proxy), "--queries", "noise:uniform", "--budget", 24, "--batch-size", 8,
                     "--output-kind", "probabilities", "--out", out, *given, env=env)
    assert result.returncode == 0, result.stderr
    assert FakeSet.open(out).count == 24
    proxy.faults(next=["echo401"], require={"Authorization": token})  # a server that echoes it back
    again = run_cli("label", url(proxy), "--queries", "noise:uniform", "--budget", 32, "--batch-size", 8,
                    "--output-kind", "probabilities", "--out", out, *given, env=env)
    assert again.returncode != 0 and "HTTP 401" in again.stderr
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) >= 3
    for secret in (token, token.split()[1]):
        for path in written:
            assert secret.encode() not in path.read_bytes(), f"{path} holds the token"
        assert secret not in result.stdout + result.stderr + again.stdout + again.stderr


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from copycat_tf.fakeset import label
    from copycat_tf.oracle import ContractOverrides, HttpOptions, HttpOracle
    oracle = HttpOracle(sys.argv[1], http=HttpOptions(max_batch=8, backoff=0.01),
                        overrides=ContractOverrides(output_kind="probabilities"))
    label(oracle, ["noise:uniform"], int(sys.argv[3]), sys.argv[2], batch_size=8, shard_size=16, seed=2)
""")


@pytest.mark.slow
def test_label_killed_mid_run_resumes_without_rebuying_or_passing_the_budget(server, proxy, tmp_path):
    """``kill -9`` of a labeling run, twice, then a rerun to the end: the server ran at most
    ``budget`` images in all, exactly as many as the fake dataset says were spent, and no
    record stored before a kill was sent again after it."""
    budget, out = 160, tmp_path / "fake"
    spent = Spent(server)
    proxy.faults(every="slow:0.05")
    command = [sys.executable, "-c", KILL_SCRIPT, url(proxy), str(out), str(budget)]
    kills = []  # (images the server had run at the kill, hashes of the records stored by then)
    for kill_at in (40, 100):
        process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while spent() < kill_at and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert (out / "manifest.json").exists(), process.stdout.read().decode()
        kills.append((len(sent_hashes(server, spent)), hashes_of(FakeSet.open(out))))
    assert all(stored for _, stored in kills), "no shard was stored before a kill"
    finished = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    fakeset = FakeSet.open(out)
    fakeset.verify()
    sent = sent_hashes(server, spent)
    assert fakeset.queries_spent == spent() == len(sent)
    for at_kill, stored in kills:
        assert not stored & set(sent[at_kill:]), "a record stored before a kill was bought again"
    # Write-ahead accounting: what a killed run sent is logged before it is sent, so the
    # rerun knows it was paid for and stops at the budget.
    assert spent() <= budget


def sent_hashes(server, spent) -> list[str]:
    """Hashes of the images the server ran for this test, in order."""
    hashes = [h for name, _, row in server.records() for h in row if name == "probs"]
    return hashes[len(hashes) - spent():]


def hashes_of(fakeset: FakeSet) -> set[str]:
    import hashlib

    contract = fakeset.contract
    found = set()
    for shard in fakeset.iter_shards():
        for row in contract.to_model_input(shard["images"]):
            found.add(hashlib.sha256(row.tobytes()).hexdigest()[:16])
    return found


# ------------------------------------------------------------------- through the CLI


@pytest.mark.slow
def test_inspect_and_steal_a_url_through_the_cli_keep_the_token_secret(server, proxy, tmp_path):
    spent = Spent(server)
    token = "Bearer cli-token-5f0c9a77"
    target = url(proxy)
    inspected = run_cli("inspect", target, "--header", f"Authorization: {token}", "--json")
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert info["num_classes"] == 4 and info["headers"] == ["Authorization"]
    probes = info["probe_queries"]
    out = tmp_path / "steal"
    before = len(server.records())
    result = run_cli("steal", target, "--queries", "noise:uniform", "--budget", 96, "--strategy", "paper",
                     "--epochs", 1, "--header", f"Authorization: {token}", "--concurrency", 2,
                     "--batch-size", 16, "--resize", "pad", "--out", out)
    assert result.returncode == 0, result.stderr
    assert max(n for _, n, _ in server.records()[before:]) <= 16  # --batch-size reached the oracle
    assert json.loads((out / "steal.json").read_text())["resize"] == "pad"
    assert result.stdout.splitlines()[-1].startswith("copycat agrees with the target on ")
    fakeset = FakeSet.open(out / "fakeset")
    # the steal's own probe is part of its budget: 96 images in all, as it said it would buy
    assert fakeset.queries_spent == 96 and fakeset.count == 96 - probes == 96 - fakeset.manifest["probe_queries"]
    assert "this steal will buy at most 96 images: 96 attack queries (up to 2 probe images among them)" in result.stderr
    assert spent() == probes + 96  # the server ran exactly what was charged: inspect's probe, then the steal
    assert json.loads((out / "steal.json").read_text())["target"]["file"] == target
    for path in [p for p in out.rglob("*") if p.is_file()]:
        assert token.split()[1].encode() not in path.read_bytes(), path
    assert token.split()[1] not in result.stdout + result.stderr + inspected.stdout + inspected.stderr
    mixed = run_cli("label", target, "--queries", "noise:uniform", "--provider", "CPUExecutionProvider",
                    "--out", tmp_path / "x")
    mixed.assert_clean_error("providers cannot be used with a URL")


def test_preprocessing_overrides_replace_only_their_own_field_over_http(server, proxy):
    defaults = HttpOracle(url(proxy), overrides=ContractOverrides(output_kind="probabilities", num_classes=4)).contract.preprocessing
    raw = HttpOracle(url(proxy), overrides=ContractOverrides(output_kind="probabilities", num_classes=4, preprocessing={"std": (1.0,)})).contract.preprocessing
    assert (defaults.mean, defaults.std) == ((0.0,), (255.0,))
    assert (raw.mean, raw.std, raw.channel_order) == ((0.0,), (1.0,), "rgb")
