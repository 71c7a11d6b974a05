"""Reading ``.npz`` files that nobody vouches for (the ground floor).

Headers are checked before any data is read (no pickled objects, no forged sizes, a size
cap), then arrays load with ``allow_pickle=False``.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from copycat_tf.errors import CopycatError, first_line

MAX_NPZ_ARRAY_BYTES = 8 << 30


def npz_headers(path: Path, names: list[str] | None = None, *,
                what: str = "") -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of arrays in an ``.npz`` file, from their headers alone (no data read).

    Each member's ``.npy`` header is checked: no object (pickled) dtype, a declared size that
    matches the bytes stored (a forged header cannot make numpy allocate terabytes), at most
    :data:`MAX_NPZ_ARRAY_BYTES`.

    Args:
        path: the ``.npz`` file.
        names: arrays to look at (default all); missing ones are left out of the result.
        what: how error messages call the file (default its path).

    Raises:
        CopycatError: not a readable ``.npz`` file, or a member that is pickled, corrupt or too big.
    """
    what = what or str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
            wanted = [n for n in (names if names is not None else members) if n in members]
            return {name: _npy_member_header(archive, members[name], what, name) for name in wanted}
    except CopycatError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise CopycatError(f"{what}: not a readable .npz file ({first_line(exc)})") from exc


def read_npz(path: Path, names: list[str] | None = None, *, what: str = "") -> dict[str, np.ndarray]:
    """Arrays from an ``.npz`` file, read defensively: headers checked first (:func:`npz_headers`),
    then the data loaded with ``allow_pickle=False``."""
    what = what or str(path)
    wanted = list(npz_headers(path, names, what=what))
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in wanted}
    except ValueError as exc:  # e.g. object arrays, which need pickle
        raise CopycatError(f"{what}: cannot load it with allow_pickle=False ({first_line(exc)})") from exc
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, MemoryError) as exc:
        raise CopycatError(f"{what}: not a readable .npz file ({first_line(exc)})") from exc


def _npy_member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str, name: str):
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise CopycatError(f"{what}: array {name!r} has an unknown .npy format version {version}")
        shape, _, dtype = reader(member, max_header_size=10_000)
        header = member.tell()
    if dtype.hasobject:
        raise CopycatError(
            f"{what}: array {name!r} holds pickled Python objects ({dtype}), which are never "
            "loaded (allow_pickle=False); store plain numbers"
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared != info.file_size - header:
        raise CopycatError(
            f"{what}: array {name!r} declares shape {tuple(shape)} {dtype} ({declared:,} bytes) but "
            f"stores {info.file_size - header:,} bytes; the file is corrupt or forged"
        )
    if declared > MAX_NPZ_ARRAY_BYTES:
        raise CopycatError(
            f"{what}: array {name!r} holds {declared / 2**30:.1f} GiB, over the "
            f"{MAX_NPZ_ARRAY_BYTES >> 30} GiB limit for .npz files; save it as a .npy file, "
            "which is read memory-mapped"
        )
    return tuple(shape), dtype
