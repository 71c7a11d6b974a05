"""A sandbox with only loopback, for servers that bind every interface (a Ray cluster).

:class:`LoopbackNamespace` starts a holder process in fresh network, PID and mount
namespaces (``unshare``, as root) and brings ``lo`` up: nothing run inside can reach any
address but 127.0.0.1, and Ray, which takes the machine's interface address outside,
takes 127.0.0.1 there. Commands enter it with ``nsenter``. :meth:`close` kills the
holder, the PID namespace's first process, so the kernel ends every process started
inside: nothing the tests start outlives them, and nothing outside is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


class NamespaceUnavailable(RuntimeError):
    """This machine cannot make the sandbox (not root, or ``unshare`` refused)."""


class LoopbackNamespace:
    def __init__(self):
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
            raise NamespaceUnavailable("needs root with unshare and nsenter (util-linux)")
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
             "sh", "-c", "ip link set lo up && echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.holder.stdout.readline().strip()
        if line != "ready":
            self.holder.kill()
            raise NamespaceUnavailable(f"unshare failed: {self.holder.stderr.read().strip()[:300]}")
        self.pid = _children(self.holder.pid)[0]  # the namespace's first process
        self.pid_ns = os.readlink(f"/proc/{self.pid}/ns/pid")

    def command(self, args, cwd=None) -> list[str]:
        """``args`` run inside the namespace, in folder ``cwd`` (entering it resets the folder)."""
        return ["nsenter", "-t", str(self.pid), "--net", "--pid", "--mount", f"--wd={cwd or os.getcwd()}",
                "--", *map(str, args)]

    def run(self, args, cwd=None, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(args, cwd), check=False, **kwargs)

    def popen(self, args, cwd=None, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(args, cwd), **kwargs)

    def inner_pid(self, process: subprocess.Popen) -> int:
        """The host pid of the command a :meth:`popen` process runs (nsenter forks it)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = _children(process.pid)
            if children:
                return children[0]
            time.sleep(0.02)
        raise TimeoutError("the command inside the namespace never started")

    def processes(self, title_prefix: str) -> list[int]:
        """Host pids of processes inside this namespace whose command line starts with ``title_prefix``."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "ns" / "pid") != self.pid_ns:
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # the process ended meanwhile
                continue
            if cmdline.startswith(title_prefix):
                found.append(int(entry.name))
        return found

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.holder.wait(timeout=30)


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children
