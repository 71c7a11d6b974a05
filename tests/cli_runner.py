"""Run the real `copycat-tf` console script as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def assert_clean_error(self, *fragments: str) -> None:
        """Exit 2 with one error line naming the problem, no traceback.

        Progress log lines of stages that ran before the failure may precede it.
        """
        assert self.returncode == 2, (self.returncode, self.stdout, self.stderr)
        assert "Traceback" not in self.stderr
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert all(line.startswith("copycat-tf: ") for line in lines), self.stderr
        lines = [line for line in lines if line.startswith("copycat-tf: error: ")]
        assert len(lines) == 1, self.stderr
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])


def run_cli(*args, timeout: float = 600, env: dict | None = None, cwd=None) -> CliResult:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **(env or {})}
    completed = subprocess.run(
        [sys.executable, "-m", "copycat_tf.cli.main", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=environment, cwd=cwd,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def value_columns(stdout: str, labels: tuple[str, ...]) -> set[int]:
    """The columns where the values of ``labels``' result lines start (one column when aligned).

    Every label must have a line: a missing one fails rather than passing unseen.

    >>> sorted(value_columns("fake set  runs/a\\ntest data  digits:test\\n", ("fake set", "test data")))
    [10, 11]
    """
    columns = set()
    for label in labels:
        lines = [line for line in stdout.splitlines() if line.startswith(label + " ")]
        assert lines, f"no `{label}` line in:\n{stdout}"
        for line in lines:
            rest = line[len(label):]
            columns.add(len(label) + len(rest) - len(rest.lstrip()))
    return columns
