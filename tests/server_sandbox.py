"""Whether the ``server`` tests can run here, and what to say when they cannot.

The ``server`` tests (KServe behind a fault proxy, Ray clusters) run their servers in
loopback-only network namespaces: that takes root, ``unshare`` and ``nsenter``
(util-linux) and ``ip`` (iproute2), and, in a container, the capabilities to make a
namespace. :func:`probe` asks the machine once, by making the very namespace
:class:`loopback_ns.LoopbackNamespace` makes; :func:`decide` turns the answer and the
environment into run, skip or fail, with one line naming the reason and the fix. Under
``CI=true`` a machine that cannot make the namespace fails them: CI must run them.

    >>> decide(Probe(root=True), {}).action
    'run'
    >>> decision = decide(Probe(root=False), {})
    >>> decision.action, decision.line.startswith("server tests skipped: not root")
    ('skip', True)
    >>> decide(Probe(root=False), {"CI": "true"}).action
    'fail'
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

#: The commands the sandbox runs, and the Debian/Ubuntu package of each.
COMMANDS = {"unshare": "util-linux", "nsenter": "util-linux", "ip": "iproute2"}
#: What a container needs to make the namespace (the least: never --privileged).
CONTAINER_OPTIONS = ("--cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined "
                     "--security-opt apparmor=unconfined")
#: The namespace LoopbackNamespace makes (KServe's needs only --net): trying it is the probe.
PROBE_COMMAND = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                 "sh", "-c", "ip link set lo up"]


@dataclass(frozen=True)
class Probe:
    """What the machine answered.

    Args:
        root: the tests run as root.
        sudo: not root, but ``sudo -n`` works (passwordless).
        missing: commands of :data:`COMMANDS` not on PATH.
        error: the last line ``unshare`` printed when making the namespace failed; empty
            when it worked or was not tried.
    """

    root: bool
    sudo: bool = False
    missing: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Decision:
    """``action`` is ``run``, ``skip`` or ``fail``; ``line`` says why and the fix (empty for run)."""

    action: str
    line: str = ""


def probe() -> Probe:
    """Ask this machine (a second at most): root, the commands, then the namespace itself."""
    root = os.geteuid() == 0
    missing = tuple(command for command in COMMANDS if shutil.which(command) is None)
    sudo = (not root and shutil.which("sudo") is not None
            and subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0)
    error = ""
    if root and not missing:
        done = subprocess.run(PROBE_COMMAND, capture_output=True, text=True, check=False, timeout=30)
        if done.returncode != 0:
            error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return Probe(root=root, sudo=sudo, missing=missing, error=error)


def decide(probe: Probe, environ: Mapping[str, str]) -> Decision:
    """Run, skip or fail the ``server`` tests for ``probe`` in ``environ`` (``os.environ``).

    >>> print(decide(Probe(root=True, missing=("ip",)), {}).line)
    server tests skipped: ip not found; install it: apt-get install iproute2 (bash scripts/bootstrap test does)
    """
    if probe.root and not probe.missing and not probe.error:
        return Decision("run")
    if environ.get("CI", "").lower() in ("true", "1"):
        return Decision("fail", f"server tests cannot run, and CI=true needs them: {_reason_and_fix(probe)}")
    return Decision("skip", f"server tests skipped: {_reason_and_fix(probe)}")


def _reason_and_fix(probe: Probe) -> str:
    if probe.missing:
        packages = " ".join(dict.fromkeys(COMMANDS[command] for command in probe.missing))
        them = "it" if len(probe.missing) == 1 else "them"
        return (f"{', '.join(probe.missing)} not found; install {them}: apt-get install {packages} "
                "(bash scripts/bootstrap test does)")
    if not probe.root:
        # Their servers start as root and their files are root's: rerun the selection as root
        # rather than mixing owners in one run.
        if probe.sudo:
            return ("not root (network namespaces need it); rerun them as root: "
                    "sudo -E .venv/bin/python -m pytest -m server")
        return ("not root and no passwordless sudo (network namespaces need root); run them where you are "
                "root, or leave them out: -m 'not server'")
    return f"unshare cannot make a network namespace ({probe.error}); in a container, start it with {CONTAINER_OPTIONS}"
