"""Files and folders every stage shares (the ground floor): crash-safe writes, JSON state,
checksums, and :class:`OutputFolder`, the one rule for a folder a command writes into.

A command writes only into a folder that is new, empty, or already holds its own run; a
folder with someone else's files is refused unless ``--overwrite`` is given, and then only
the tool's own files are deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from copycat_tf.errors import CopycatError


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``path.tmp``, sync, rename over ``path``: readers see old or new, never half.

    Example:

    >>> import tempfile
    >>> card = Path(tempfile.mkdtemp()) / "card.json"
    >>> atomic_write(card, lambda handle: handle.write(b"{}"))
    >>> card.read_text()
    '{}'
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_json(path: Path, data) -> None:
    """Write ``data`` as indented JSON with sorted keys, atomically (see :func:`atomic_write`)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def foreign_files(folder: Path, own) -> str:
    """Names in ``folder`` that are not in ``own``, as ``"a, b, c, ..."`` (sorted, the first
    three), for a refusal to write into someone else's folder; ``""`` when there are none.

    Example:

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("report.json", "notes.txt", "photo.jpg"):
    ...     _ = (folder / name).write_text("")
    >>> foreign_files(folder, {"report.json", "report.md"})
    'notes.txt, photo.jpg'
    """
    names = sorted(p.name for p in folder.iterdir() if p.name not in own)
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


class UnreadableJson(Exception):
    """A JSON file that cannot be read or parsed; ``str()`` is a one-line reason."""


def read_json(path: Path) -> object | None:
    """The parsed content of JSON file ``path``, or ``None`` when there is no such file.

    Raises:
        UnreadableJson: an I/O error, bad UTF-8, bad JSON, a number too long to convert or
            nesting too deep to parse (files under a run folder are not trusted).

    Example:

    >>> import tempfile
    >>> manifest = Path(tempfile.mkdtemp()) / "manifest.json"
    >>> read_json(manifest) is None
    True
    >>> write_json(manifest, {"count": 10000})
    >>> read_json(manifest)["count"]
    10000
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError covers UnicodeDecodeError
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UnreadableJson(reason) from exc


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class OutputFolder:
    """A folder one stage writes into, and the names it owns there.

    Every stage that leaves files (``label``, ``train``, ``evaluate``, ``steal``, ``demo``,
    ``audit``) describes its folder with one of these, so all of them follow one rule:
    refuse a path that is a file; refuse a folder holding files the tool did not write
    unless ``overwrite`` is given; with ``overwrite``, delete only the tool's own files.

    Args:
        path: the folder.
        what: how messages call what it holds, e.g. ``"fake dataset"``.
        files: names owned; each is owned with a ``.tmp`` suffix too (a write cut short).
        patterns: regular expressions of more owned file names (e.g. shard names).
        folders: owned subfolders (deleted whole by :meth:`remove_own`).

    Example:

    >>> import tempfile
    >>> folder = OutputFolder(Path(tempfile.mkdtemp()) / "run", "report", files=("report.json",))
    >>> folder.claim(overwrite=False)
    >>> _ = (folder.path / "notes.txt").write_text("mine")
    >>> folder.claim(overwrite=False)
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: output folder ... is not empty (notes.txt) and holds no report; ...
    """

    path: Path
    what: str
    files: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()

    def owns(self, name: str) -> bool:
        """Whether a name directly in the folder is the tool's own."""
        base = name.removesuffix(".tmp")
        return (base in self.files or name in self.folders
                or any(re.fullmatch(pattern, base) for pattern in self.patterns))

    def foreign(self) -> str:
        """Names there that are not the tool's own (see :func:`foreign_files`), or ``""``."""
        if not self.path.is_dir():
            return ""
        return foreign_files(self.path, {p.name for p in self.path.iterdir() if self.owns(p.name)})

    def check_not_file(self) -> None:
        """Refuse an output path that is a file."""
        if self.path.exists() and not self.path.is_dir():
            raise CopycatError(f"output folder {self.path} is a file; give a folder for the {self.what}")

    def claim(self, *, overwrite: bool, holds_run: bool = False) -> None:
        """Make the folder this stage's to write: checked, cleaned with ``overwrite``, created.

        Args:
            overwrite: delete the tool's own files there first (nothing else).
            holds_run: the folder already holds this stage's run (its files may stay beside
                the user's, as they did when it was made).

        Raises:
            CopycatError: the path is a file, or the folder holds someone else's files and
                no run of this stage, and ``overwrite`` was not given.
        """
        self.check_not_file()
        if overwrite:
            self.remove_own()
        elif not holds_run:
            foreign = self.foreign()
            if foreign:
                raise CopycatError(
                    f"output folder {self.path} is not empty ({foreign}) and holds no {self.what}; "
                    "choose another folder, or pass --overwrite to write beside those files (it "
                    "deletes only copycat-tf's own)"
                )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CopycatError(f"cannot create output folder {self.path} ({exc.strerror or exc})") from exc

    def remove_own(self) -> None:
        """Delete what the tool wrote there (files, partial files, owned subfolders), nothing else."""
        if not self.path.is_dir():
            return
        for path in self.path.iterdir():
            if not self.owns(path.name):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def read_state(path: Path, form: str, version: int, *, fix: str) -> dict | None:
    """A versioned JSON state file the tool wrote (``{"format": form, "format_version": version, ...}``).

    Returns:
        The parsed object, or ``None`` when there is no such file.

    Raises:
        CopycatError: unreadable, or not that format and version; the message ends with ``fix``.

    Example:

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "state.json"
    >>> write_json(path, {"format": "copycat-tf.example", "format_version": 1, "done": 3})
    >>> read_state(path, "copycat-tf.example", 1, fix="delete it")["done"]
    3
    """
    try:
        state = read_json(path)
    except UnreadableJson as exc:
        raise CopycatError(f"{path} is unreadable ({exc}); {fix}") from exc
    if state is None:
        return None
    if not isinstance(state, dict) or (state.get("format"), state.get("format_version")) != (form, version):
        raise CopycatError(f"{path} is not a {form} version {version} file; {fix}")
    return state


def _fsync_dir(directory: Path) -> None:
    # The rename itself survives a power loss only once the folder entry is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
