"""The `server` tests' sandbox: run, skip or fail (server_sandbox.py), and servers that die say why."""

from __future__ import annotations

import subprocess
import sys

import pytest
from benchmarks.serving import own_network_namespace
from server_sandbox import CONTAINER_OPTIONS, Decision, Probe, decide

CANNOT = {
    "not root": Probe(root=False),
    "not root, sudo": Probe(root=False, sudo=True),
    "no ip": Probe(root=True, missing=("ip",)),
    "no util-linux": Probe(root=True, missing=("unshare", "nsenter")),
    "unshare refused": Probe(root=True, error="unshare: unshare failed: Operation not permitted"),
}


def test_root_with_the_commands_and_a_namespace_runs_them_in_ci_or_not():
    for environ in ({}, {"CI": "true"}, {"CI": "false"}):
        assert decide(Probe(root=True), environ) == Decision("run")


@pytest.mark.parametrize("case", CANNOT)
def test_a_machine_that_cannot_skips_them_with_one_line(case):
    decision = decide(CANNOT[case], {"CI": "false"})
    assert decision.action == "skip"
    assert decision.line.startswith("server tests skipped: ") and "\n" not in decision.line


@pytest.mark.parametrize("case", CANNOT)
@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_under_ci_a_machine_that_cannot_fails_them(case, ci):
    decision = decide(CANNOT[case], {"CI": ci})
    assert decision.action == "fail"
    assert "CI=true needs them" in decision.line and "\n" not in decision.line
    assert decision.line.endswith(decide(CANNOT[case], {}).line.removeprefix("server tests skipped: "))


@pytest.mark.parametrize("case, reason, fix", [
    ("not root", "not root and no passwordless sudo", "-m 'not server'"),
    ("not root, sudo", "not root", "sudo -E .venv/bin/python -m pytest -m server"),
    ("no ip", "ip not found", "apt-get install iproute2"),
    ("no util-linux", "unshare, nsenter not found", "apt-get install util-linux ("),
    ("unshare refused", "Operation not permitted", CONTAINER_OPTIONS),
])
def test_the_line_names_the_reason_and_the_fix(case, reason, fix):
    line = decide(CANNOT[case], {}).line
    assert reason in line and fix in line


def test_a_server_that_dies_before_its_namespace_shows_its_last_log_lines(tmp_path):
    log = tmp_path / "server.log"
    # flushed first: a server's log holds what it printed before the error that ended it
    script = ("import sys; print('\\n'.join(f'line {i}' for i in range(50)), flush=True); "
              "sys.exit('port 8080 already in use')")
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, "-c", script], stdout=handle, stderr=subprocess.STDOUT)
    with pytest.raises(RuntimeError) as caught:
        own_network_namespace(process, "kserve", log)
    message = str(caught.value)
    assert message.startswith("kserve did not start (exited with status 1)")
    assert "port 8080 already in use" in message and "line 49" in message
    assert "line 10\n" not in message  # the last lines only
