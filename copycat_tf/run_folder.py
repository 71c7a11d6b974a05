"""A run's folder: claimed once, its arguments recorded, a rerun with others refused.

``steal`` and ``audit`` each keep their whole run in one folder ``OUT``; the record of the
arguments it was started with (``OUT/steal.json``, ``OUT/audit-run.json``) is what makes a
rerun a resume: the same arguments carry on where the run stopped, other ones are refused
naming each difference, and ``overwrite`` deletes only the tool's own files and starts again.

Example:

>>> import tempfile
>>> out = Path(tempfile.mkdtemp()) / "run"
>>> folder = RunFolder(out, "steal run", "steal.json", "copycat-tf.steal", 1, folders=("fakeset",))
>>> target = {"file": "t.onnx", "sha256": "ab" * 32}
>>> folder.claim({"target": target, "budget": 100}, overwrite=False)["budget"]
100
>>> folder.claim({"target": target, "budget": 200}, overwrite=False)
Traceback (most recent call last):
...
copycat_tf.errors.CopycatError: output folder ... holds a steal run made with other arguments (budget 100 vs now 200); ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from copycat_tf._version import __version__
from copycat_tf.errors import CopycatError
from copycat_tf.files import OutputFolder, read_state, write_json

@dataclass(frozen=True)
class RunFolder:
    """The folder of one run and the record of its arguments.

    Args:
        path: the folder (``--out``).
        what: how messages call the run (``"steal run"``).
        record_name: the record's file name in the folder.
        form: the record's ``format`` value; ``version`` its ``format_version``.
        folders: subfolders the run owns (deleted whole by ``overwrite``).
        files: more files the run owns there.
        free: record keys a rerun may change (e.g. held-out data that only measures the copy).
    """

    path: Path
    what: str
    record_name: str
    form: str
    version: int
    folders: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    free: tuple[str, ...] = ()

    def claim(self, arguments: dict, *, overwrite: bool) -> dict:
        """Make the folder this run's, or refuse: new, ours with the same ``arguments``, or
        cleaned first with ``overwrite``. ``arguments["target"]["sha256"]`` names the target.

        Returns:
            The record written (``arguments`` with the format and tool version).

        Raises:
            CopycatError: the path is a file, the folder holds someone else's files, or a
                run made with other arguments (each difference named).
        """
        folder = OutputFolder(Path(self.path), self.what, files=(self.record_name, *self.files),
                              folders=self.folders)
        folder.check_not_file()
        fix = "rerun with the same arguments to resume, or pass --overwrite to start again"
        path = Path(self.path) / self.record_name
        # As JSON has it (tuples are lists), so a stored record compares equal to a fresh one.
        record = json.loads(json.dumps({"format": self.form, "format_version": self.version,
                                        "tool_version": __version__, **arguments}))
        stored = None if overwrite else read_state(path, self.form, self.version, fix=fix)
        if stored is not None:
            differences = differences_between(stored, record, skip=("tool_version", "target", *self.free))
            old, new = (str((r.get("target") or {}).get("sha256")) for r in (stored, record))
            if old != new:
                differences.insert(0, f"target sha256 {old[:12]}... vs now {new[:12]}...")
            if differences:
                raise CopycatError(f"output folder {self.path} holds {_article(self.what)} {self.what} made with other "
                                   f"arguments "
                                   f"({'; '.join(differences)}); {fix}")
        folder.claim(overwrite=overwrite, holds_run=stored is not None)
        write_json(path, record)
        return record


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def differences_between(old: dict, new: dict, *, skip=(), prefix: str = "") -> list[str]:
    """``"name old vs now new"`` for each setting that differs, nested ones by dotted name.

    >>> differences_between({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}})
    ['b.c 2 vs now 3']
    """
    lines = []
    for key, value in new.items():
        before = old.get(key)
        if key in skip or before == value:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            lines += differences_between(before, value, prefix=f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key} {before!r} vs now {value!r}")
    return lines
