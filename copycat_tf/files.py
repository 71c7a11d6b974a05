"""Crash-safe file writes shared by every stage that leaves results on disk."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``path.tmp``, sync, rename over ``path``: readers see old or new, never half.

    Example:

    >>> atomic_write(Path("card.json"), lambda handle: handle.write(b"{}"))  # doctest: +SKIP
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

    >>> foreign_files(Path("runs/report"), {"report.json", "report.md"})  # doctest: +SKIP
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

    >>> read_json(Path("runs/fake/manifest.json"))["count"]  # doctest: +SKIP
    10000
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError covers UnicodeDecodeError
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UnreadableJson(reason) from exc


def _fsync_dir(directory: Path) -> None:
    # The rename itself survives a power loss only once the folder entry is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
