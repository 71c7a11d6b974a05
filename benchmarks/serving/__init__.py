"""A real model server for the HTTP oracle's tests and ``benchmarks.perf.remote_http``: KServe in its
own virtualenv, behind a fault proxy.

- :func:`server_python` makes (once, cached under ``~/.cache/copycat-tf-test/``, keyed by a
  hash of the requirements and the Python version) a virtualenv with ``kserve`` and
  ``onnxruntime``: kserve's pins clash with TensorFlow's, so it never enters the project's
  environment.
- :class:`KServeServer` runs ``kserve_target.py`` (beside this file) there, inside a new network namespace
  that has only loopback (``unshare --net``; the ModelServer listens on every interface,
  which then means that namespace's loopback alone).
- :class:`FaultProxy` runs ``fault_proxy.py`` (beside this file): it listens on 127.0.0.1 here and joins the
  server's namespace to reach it, so every byte travels over loopback. Tests talk to the
  proxy; its control endpoint injects faults.

Needs root (for the namespace), which the project's machines and CI have.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

#: kserve_target.py and fault_proxy.py: scripts run by path (the first in the server's own
#: virtualenv), never imported.
SERVERS = Path(__file__).parent
#: The test server's requirements, pinned so the cached virtualenv stays what was tested.
REQUIREMENTS = ["kserve==0.21.0", "onnxruntime==1.32.0", "numpy==2.4.6"]
CACHE = Path(os.environ.get("COPYCAT_TEST_CACHE", Path.home() / ".cache" / "copycat-tf-test"))
SERVER_PORT = 8080


def server_python() -> Path:
    """The test server's Python, in its cached virtualenv (made on first use, ~1 min)."""
    key = hashlib.sha256(json.dumps([REQUIREMENTS, sys.version_info[:2]]).encode()).hexdigest()[:12]
    venv = CACHE / f"kserve-{key}"
    python = venv / "bin" / "python"
    done = venv / ".complete"
    if done.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"kserve-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait, then reuse it
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            *REQUIREMENTS], check=True)
            done.write_text("\n".join(REQUIREMENTS) + "\n")
    return python


_LIBC = ctypes.CDLL(None)


def _die_with_parent():
    # Runs in the child between fork and exec: no import, no lock, one system call.
    _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no server outlives the tests


def log_tail(log: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of ``log`` (what a server said before it died), or a note if none."""
    try:
        text = log.read_text(errors="replace").rstrip()
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) if text else "(its log is empty)"


def did_not_start(what: str, process: subprocess.Popen, log: Path) -> RuntimeError:
    """The error of a server that never answered: its exit status and last log lines."""
    state = "still running" if process.poll() is None else f"exited with status {process.returncode}"
    return RuntimeError(f"{what} did not start ({state}); the last lines of {log}:\n{log_tail(log)}")


def own_network_namespace(process: subprocess.Popen, what: str, log: Path, seconds: float = 30) -> str:
    """``/proc/PID/ns/net`` of ``process`` once it has left ours (``unshare --net``).

    Joining it before then would join our own namespace; after the process died there is
    nothing to join, and the error says why it died (its log) rather than that the
    ``/proc`` entry is gone.
    """
    ours = os.readlink("/proc/self/ns/net")
    path = f"/proc/{process.pid}/ns/net"
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if os.readlink(path) != ours:
                return path
        except OSError:  # it ended meanwhile: poll() says so next
            pass
        time.sleep(0.02)
    raise did_not_start(what, process, log)


def _wait_for(path: Path, process: subprocess.Popen, what: str, log: Path, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise did_not_start(what, process, log)
        time.sleep(0.05)


class KServeServer:
    """KServe ModelServer in a loopback-only network namespace, with an image counter.

    Args:
        folder: where its log and count file go.
        models: ``{name: (onnx_path, answer)}``; answer ``rows``, ``labels`` or ``names``.
        class_names: for ``names`` answers.
        isolate: run it in a namespace of its own, reached through a :class:`FaultProxy`
            (``front``); ``False`` when the caller already runs in a loopback-only
            namespace (the benchmark), where ``url`` is the server itself.
    """

    def __init__(self, folder: Path, models: dict[str, tuple[Path, str]], class_names=(), *, isolate=True):
        self.folder = folder
        self.count_file = folder / "server-counts.txt"
        self.log = folder / "server.log"
        command = [str(server_python()), str(SERVERS / "kserve_target.py"),
                   "--count-file", str(self.count_file), "--class-names", ",".join(class_names),
                   "--http_port", str(SERVER_PORT)]
        for name, (path, answer) in models.items():
            command += ["--model", f"{name}={path}:{answer}"]
        launcher = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"'] if isolate else []
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([*launcher, *command], stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=_die_with_parent)
        self.front = None
        try:
            if isolate:
                self.netns = own_network_namespace(self.process, "kserve", self.log)
                self.front = FaultProxy(self, folder / "front")
            self.url = self.front.url if isolate else f"http://127.0.0.1:{SERVER_PORT}"
            deadline = time.monotonic() + 120
            while not self._ready():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise did_not_start("kserve", self.process, self.log)
                time.sleep(0.2)
        except RuntimeError as exc:
            if self.process.poll() is None or str(exc).startswith("kserve"):
                self.stop()
                raise
            # The server died first (the proxy then finds no namespace to join): its log says why.
            error = did_not_start("kserve", self.process, self.log)
            self.stop()
            raise error from exc

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def records(self) -> list[tuple[str, int, list[str]]]:
        """Every inference the server ran: (model, images, image hashes)."""
        if not self.count_file.exists():
            return []
        rows = []
        for line in self.count_file.read_text().splitlines():
            name, count, hashes = line.split(" ")
            rows.append((name, int(count), hashes.split(",")))
        return rows

    def images(self, model: str | None = None) -> int:
        """Images the server ran through the model (all models, or one)."""
        return sum(n for name, n, _ in self.records() if model in (None, name))

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class FaultProxy:
    """``fault_proxy.py`` on 127.0.0.1, forwarding into ``server``'s namespace."""

    def __init__(self, server: KServeServer, folder: Path, tls: tuple[Path, Path] | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        port_file = folder / "port"
        port_file.unlink(missing_ok=True)
        log = folder / "proxy.log"
        command = [sys.executable, str(SERVERS / "fault_proxy.py"), "--upstream-port", str(SERVER_PORT),
                   "--port-file", str(port_file), "--netns", server.netns]
        if tls:
            command += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        with open(log, "wb") as handle:
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                            preexec_fn=_die_with_parent)
        _wait_for(port_file, self.process, "fault proxy", log, 20)
        self.port = int(port_file.read_text())
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def _control(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        context = ssl._create_unverified_context() if self.url.startswith("https") else None
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return json.loads(answer.read())

    def faults(self, next=(), every=None, require=None, period=1) -> None:
        """Queue ``next`` faults, set one for ``every`` request (or every ``period``-th one),
        require header values."""
        self._control("POST", "/_proxy/faults", {"next": list(next), "every": every, "period": period,
                                                  "require": require or {}})

    def stats(self) -> dict:
        return self._control("GET", "/_proxy/stats")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
