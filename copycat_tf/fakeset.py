"""The fake dataset: query images and the oracle's answers, stored so a copycat can learn them.

:func:`label` queries the oracle with a :class:`~copycat_tf.queries.QuerySource` and writes
a directory that holds the exact uint8 images sent, the hard labels, float32
probabilities (``labels="soft"``) and where each image came from::

    DIR/manifest.json      oracle sha256 + contract, config, count, histogram, shard list
    DIR/shard-00000.npz    images, labels, [probabilities], sources, keys (1,024 records)
    DIR/rejected.tsv       inputs that were never sent (source, key, reason)
    DIR/queries.log        queries spent since the last finished shard (crash accounting)

Shards are plain uncompressed ``.npz`` files: labeling needs no TensorFlow (a fast start and
a light process beside onnxruntime), and the files are read with numpy alone, always with
``allow_pickle=False``. Each shard is written to a temporary file, synced and renamed; the
manifest is rewritten the same way after every shard, so an interrupted run (Ctrl-C,
``kill -9``, power loss, a full disk) resumes from its last finished shard and ends with the
same records as an uninterrupted run.

Example:

>>> oracle = OnnxOracle("target.onnx")                                  # doctest: +SKIP
>>> fakeset = label(oracle, ["imagenet/", "photos:0.2"], 50_000, "runs/fake")  # doctest: +SKIP
>>> fakeset.summary()["label_histogram"]                                # doctest: +SKIP
>>> dataset = FakeSet.open("runs/fake").as_dataset().shuffle(10_000).batch(64)  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copycat_tf._version import __version__
from copycat_tf.contract import Contract
from copycat_tf.errors import CopycatError
from copycat_tf.files import UnreadableJson, atomic_write, read_json, write_json
from copycat_tf.oracle import MAX_INPUT_PIXELS, Oracle, file_sha256
from copycat_tf.queries import Query, QuerySource, open_query_source

log = logging.getLogger(__name__)

FORMAT = "copycat-tf.fakeset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REJECTED = "rejected.tsv"
QUERIES_LOG = "queries.log"
LABEL_MODES = ("hard", "soft")
DEFAULT_SHARD_SIZE = 1024
_SHARD_NAME = re.compile(r"shard-\d{5,}\.npz")
MAX_CLASSES = 1_000_000  # a manifest claiming more is not one copycat-tf wrote
_REJECTED_HEADER = b"source\tkey\treason\n"


@dataclass(frozen=True)
class LabelProgress:
    """Where a labeling run stands; passed to :func:`label`'s ``progress`` callable.

    Attributes:
        labeled: records in the fake dataset (including those of earlier runs).
        budget: records asked for.
        rejected: inputs rejected so far.
        queries_spent: images sent to the oracle, all runs together.
    """

    labeled: int
    budget: int
    rejected: int
    queries_spent: int


class FakeSet:
    """A fake dataset directory written by :func:`label`, opened read-only.

    Attributes:
        directory: the folder.
        manifest: the parsed ``manifest.json``.
        contract: the oracle's :class:`~copycat_tf.contract.Contract` when it was queried.
        oracle_sha256: the target file's sha256.
        count: records stored; ``complete``: the budget was reached or the sources ran out.
        queries_spent: images sent, all runs together (re-bought ones included).
        rejected: inputs rejected and never sent.
        label_histogram: records per class; ``num_classes``, ``image_shape`` from the contract.
        has_probabilities: the records carry float32 probabilities (``labels="soft"``).

    Example:

    >>> fakeset = FakeSet.open("runs/fake")                          # doctest: +SKIP
    >>> fakeset.count, fakeset.num_classes, fakeset.label_histogram    # doctest: +SKIP
    >>> for shard in fakeset.iter_shards():                           # doctest: +SKIP
    ...     shard["images"].shape, shard["labels"].shape
    >>> fakeset.as_dataset().batch(64)                                # doctest: +SKIP
    """

    def __init__(self, directory: Path, manifest: dict):
        self.directory = directory
        self.manifest = manifest
        self.contract = Contract.from_dict(manifest["oracle"]["contract"])
        self._verified: set[str] = set()

    @classmethod
    def open(cls, directory: str | os.PathLike) -> FakeSet:
        """Open a fake dataset directory.

        Raises:
            CopycatError: no fake dataset there, or its manifest is malformed.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise CopycatError(f"fake dataset {directory}: no such folder")
        manifest = _read_manifest(directory)
        if manifest is None:
            raise CopycatError(
                f"fake dataset {directory}: no {MANIFEST}; create one with `copycat-tf label`"
            )
        return cls(directory, manifest)

    oracle_sha256 = property(lambda self: self.manifest["oracle"]["sha256"])
    count = property(lambda self: int(self.manifest["count"]))
    complete = property(lambda self: bool(self.manifest["complete"]))
    queries_spent = property(lambda self: int(self.manifest["queries_spent"]))
    rejected = property(lambda self: int(self.manifest["rejected"]))
    label_histogram = property(lambda self: list(self.manifest["label_histogram"]))
    num_classes = property(lambda self: self.contract.num_classes)
    image_shape = property(lambda self: self.contract.image_shape)
    has_probabilities = property(lambda self: self.manifest["config"]["labels"] == "soft")

    @property
    def shard_paths(self) -> list[Path]:
        return [self.directory / shard["file"] for shard in self.manifest["shards"]]

    def verify(self) -> None:
        """Check every shard against its sha256; raise :class:`CopycatError` on a mismatch."""
        for shard in self.manifest["shards"]:
            self._check(shard)

    def _check(self, shard: dict) -> None:
        if shard["file"] in self._verified:
            return
        path = self.directory / shard["file"]
        if not path.is_file():
            raise CopycatError(f"fake dataset {self.directory}: shard {shard['file']} is missing")
        if file_sha256(path) != shard["sha256"]:
            raise CopycatError(
                f"fake dataset {self.directory}: shard {shard['file']} does not match its sha256 "
                "in the manifest (modified or damaged); relabel with --overwrite"
            )
        self._verified.add(shard["file"])

    def iter_shards(self, *, with_probabilities: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """Each shard as numpy arrays, in record order; checksums verified on first read.

        Yields:
            dicts with ``images`` uint8 ``(n, H, W, C)``, ``labels`` int64 ``(n,)``,
            ``index`` int64 ``(n,)`` (record numbers), ``sources`` int32 ``(n,)``, ``keys``
            str ``(n,)`` and, when asked, ``probabilities`` float32 ``(n, K)``.
        """
        if with_probabilities and not self.has_probabilities:
            raise CopycatError(
                f"fake dataset {self.directory} holds hard labels only; relabel with --labels soft"
            )
        start = 0
        for shard in self.manifest["shards"]:
            arrays = self._load(shard, with_probabilities)
            arrays["index"] = np.arange(start, start + shard["count"], dtype=np.int64)
            start += shard["count"]
            yield arrays

    def _load(self, shard: dict, with_probabilities: bool) -> dict[str, np.ndarray]:
        from copycat_tf.datasets import read_npz

        self._check(shard)
        names = ["images", "labels", "sources", "keys"] + (["probabilities"] if with_probabilities else [])
        where = f"fake dataset {self.directory}: shard {shard['file']}"
        arrays = read_npz(self.directory / shard["file"], names, what=where)
        missing = [name for name in names if name not in arrays]
        if missing:
            raise CopycatError(f"{where} lacks {missing}")
        n = shard["count"]
        for name, value in arrays.items():
            _check_shard_array(where, name, value.shape, value.dtype, n, self.image_shape, self.num_classes)
        labels = arrays["labels"]
        if n and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise CopycatError(
                f"{where} has labels from {labels.min()} to {labels.max()}; the oracle has "
                f"{self.num_classes} classes (0 to {self.num_classes - 1})"
            )
        arrays["labels"] = labels.astype(np.int64)
        if with_probabilities:
            probabilities = arrays["probabilities"].astype(np.float32)
            if not np.all(np.isfinite(probabilities)) or (probabilities < 0).any():
                raise CopycatError(f"{where} has probabilities that are negative, NaN or infinite")
            arrays["probabilities"] = probabilities
        return arrays

    def as_dataset(self, with_probabilities: bool = False):
        """An unbatched ``tf.data.Dataset`` of records in order, read shard by shard.

        Each element is a dict: ``image`` uint8 ``(H, W, C)``, ``label`` int64, ``index``
        int64 and, when asked, ``probabilities`` float32 ``(K,)``. Whole shards cross into
        TensorFlow and are split there, so no Python runs per record.

        Example:

        >>> ds = fakeset.as_dataset().shuffle(8192, seed=0).batch(64)  # doctest: +SKIP
        """
        import tensorflow as tf

        if with_probabilities and not self.has_probabilities:
            raise CopycatError(
                f"fake dataset {self.directory} holds hard labels only; relabel with --labels soft"
            )
        signature = {
            "image": tf.TensorSpec((None, *self.image_shape), tf.uint8),
            "label": tf.TensorSpec((None,), tf.int64),
            "index": tf.TensorSpec((None,), tf.int64),
        }
        if with_probabilities:
            signature["probabilities"] = tf.TensorSpec((None, self.num_classes), tf.float32)

        def shards():
            for arrays in self.iter_shards(with_probabilities=with_probabilities):
                record = {"image": arrays["images"], "label": arrays["labels"], "index": arrays["index"]}
                if with_probabilities:
                    record["probabilities"] = arrays["probabilities"]
                yield record

        dataset = tf.data.Dataset.from_generator(shards, output_signature=signature)
        return dataset.prefetch(1).unbatch().apply(tf.data.experimental.assert_cardinality(self.count))

    def summary(self) -> dict:
        """Summary figures: count, queries spent, rejections, label histogram, dominant class."""
        histogram = self.label_histogram
        dominant = int(np.argmax(histogram)) if self.count else None
        sources = self.manifest["config"]["sources"]
        return {
            "count": self.count,
            "budget": int(self.manifest["budget"]),
            "complete": self.complete,
            "exhausted": bool(self.manifest["exhausted"]),
            "queries_spent": self.queries_spent,
            "rebought": self.queries_spent - self.count,
            "rejected": self.rejected,
            "label_histogram": histogram,
            "dominant_class": dominant,
            "dominant_share": histogram[dominant] / self.count if self.count else 0.0,
            "source_counts": [{"spec": s["spec"], "count": n}
                              for s, n in zip(sources, self.manifest["source_counts"])],
        }


def _read_manifest(directory: Path) -> dict | None:
    try:
        manifest = read_json(directory / MANIFEST)
    except UnreadableJson as exc:
        raise CopycatError(f"fake dataset {directory}: {MANIFEST} is unreadable ({exc})") from exc
    if manifest is None:
        return None
    problem = _manifest_problem(manifest)
    if problem:
        raise CopycatError(f"fake dataset {directory}: malformed {MANIFEST}: {problem}")
    root = directory.resolve()
    contract = Contract.from_dict(manifest["oracle"]["contract"])
    for shard in manifest["shards"]:
        shard_path = directory / shard["file"]
        if shard_path.is_symlink() and not shard_path.resolve().is_relative_to(root):
            raise CopycatError(
                f"fake dataset {directory}: shard {shard['file']} is a link to "
                f"{os.readlink(shard_path)}, outside the folder; refusing to read it"
            )
        if shard_path.is_file():  # a missing one is reported when it is needed
            _check_shard_headers(directory, shard, contract)
    return manifest


def _check_shard_headers(directory: Path, shard: dict, contract: Contract) -> None:
    """Refuse a listed shard whose arrays are not what label writes, from headers alone (cheap)."""
    from copycat_tf.datasets import npz_headers

    where = f"fake dataset {directory}: shard {shard['file']}"
    try:
        headers = npz_headers(directory / shard["file"], what=where)
    except CopycatError:
        if file_sha256(directory / shard["file"]) != shard["sha256"]:
            return  # damaged after labeling: verify() and reading say so, naming the checksum
        raise
    for name, (shape, dtype) in headers.items():  # a missing array is reported when it is needed
        _check_shard_array(where, name, shape, dtype, shard["count"], contract.image_shape, contract.num_classes)


#: The numpy dtype kinds each shard array may have (images must be exactly uint8).
_SHARD_KINDS = {"images": "u", "labels": "iu", "sources": "iu", "keys": "U", "probabilities": "f"}


def _check_shard_array(where: str, name: str, shape: tuple, dtype: np.dtype, count: int,
                       image_shape: tuple, num_classes: int) -> None:
    """Refuse a shard array (named as :func:`label` writes them) of another shape or type."""
    if name not in _SHARD_KINDS:
        return
    expected = {"images": (count, *image_shape), "probabilities": (count, num_classes)}.get(name, (count,))
    if tuple(shape) != expected:
        raise CopycatError(f"{where} has {name} of shape {tuple(shape)}; the manifest says {expected}")
    if dtype.kind not in _SHARD_KINDS[name] or (name == "images" and dtype != np.uint8):
        raise CopycatError(f"{where} has {name} of type {dtype}, which copycat-tf never writes")


def _manifest_problem(manifest) -> str | None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"not a {FORMAT} manifest"
    if manifest.get("format_version") != FORMAT_VERSION:
        return (f"format version {manifest.get('format_version')!r}; this copycat-tf reads "
                f"version {FORMAT_VERSION}")
    required = {"oracle": dict, "config": dict, "count": int, "queries_spent": int, "budget": int,
                "label_histogram": list, "source_counts": list, "shards": list, "rejected": int,
                "rejected_bytes": int, "next_item": int, "complete": bool, "exhausted": bool}
    for name, kind in required.items():
        if not isinstance(manifest.get(name), kind):
            return f"field {name!r} missing or not a {kind.__name__}"
    try:
        contract = Contract.from_dict(manifest["oracle"]["contract"])
        sha = manifest["oracle"]["sha256"]
        labels = manifest["config"]["labels"]
        shape, classes = contract.image_shape, contract.num_classes
    except (KeyError, TypeError, ValueError, CopycatError) as exc:
        return f"bad oracle or config entry ({exc})"
    if not isinstance(sha, str) or labels not in LABEL_MODES:
        return "bad oracle sha256 or labels mode"
    if (not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
            or shape[2] not in (1, 3) or shape[0] * shape[1] > MAX_INPUT_PIXELS):
        return f"image shape {list(shape)} is not (height, width, 1 or 3) within {MAX_INPUT_PIXELS} pixels"
    if not 2 <= classes <= MAX_CLASSES:
        return f"the oracle's {classes} classes are not between 2 and {MAX_CLASSES}"
    histogram = manifest["label_histogram"]
    if len(histogram) != classes or not all(isinstance(v, int) and v >= 0 for v in histogram):
        return f"label_histogram is not {classes} counts, one per class"
    if any(not isinstance(manifest[name], int) or manifest[name] < 0
           for name in ("count", "queries_spent", "budget", "rejected", "rejected_bytes", "next_item")):
        return "a count is negative"
    if sum(histogram) != manifest["count"]:
        return f"label_histogram adds up to {sum(histogram)} but count is {manifest['count']}"
    total = 0
    for shard in manifest["shards"]:
        if not isinstance(shard, dict) or not isinstance(shard.get("file"), str):
            return "a shard entry has no file name"
        if not _SHARD_NAME.fullmatch(shard["file"]):
            return f"shard file {shard['file']!r} is not a plain shard name inside the folder"
        if not isinstance(shard.get("count"), int) or not isinstance(shard.get("sha256"), str):
            return f"shard {shard['file']!r} lacks count or sha256"
        if shard["count"] < 1:
            return f"shard {shard['file']!r} holds {shard['count']} records"
        total += shard["count"]
    if total != manifest["count"]:
        return f"shards hold {total} records but count is {manifest['count']}"
    return None


# ------------------------------------------------------------------------------ writing


class _Writer:
    """Owns a fake dataset directory while :func:`label` appends to it.

    Records are buffered until a shard is full, then the shard and the manifest are
    committed atomically. ``queries.log`` notes every paid batch so queries spent on a
    shard that never finished are still counted after a crash.
    """

    def __init__(self, directory: Path, manifest: dict):
        self.directory = directory
        self.manifest = manifest
        self.shard_size = manifest["config"]["shard_size"]
        self.soft = manifest["config"]["labels"] == "soft"
        self.next_item = manifest["next_item"]
        self.rejected = manifest["rejected"]
        self.queries_spent = manifest["queries_spent"]
        self.buffer: list[tuple] = []
        self.buffered = 0
        self._rejected_file = None
        self._queries_log = None

    @property
    def labeled(self) -> int:
        return self.manifest["count"] + self.buffered

    @property
    def shard_room(self) -> int:
        return self.shard_size - self.buffered

    @property
    def sources(self) -> list[dict]:
        return self.manifest["config"]["sources"]

    @classmethod
    def open(cls, directory: Path, oracle: Oracle, config: dict, budget: int, overwrite: bool) -> _Writer:
        """Start a new fake dataset in ``directory`` or take up the one already there."""
        if overwrite:
            _remove_own_files(directory)
        manifest = _read_manifest(directory) if directory.is_dir() else None
        if manifest is None:
            # A run killed while writing its first manifest leaves only manifest.json.tmp.
            if directory.is_dir() and not overwrite and any(p.name != MANIFEST + ".tmp"
                                                            for p in directory.iterdir()):
                raise CopycatError(
                    f"output folder {directory} is not empty and holds no fake dataset; choose another "
                    "folder, or pass --overwrite to write beside the files there"
                )
            manifest = _new_manifest({"sha256": oracle.identity, "contract": oracle.contract.to_dict()},
                                     oracle.contract.num_classes, config, budget)
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CopycatError(f"cannot create output folder {directory} ({exc.strerror})") from exc
        else:
            _check_resumable(directory, manifest, oracle, config)
        writer = cls(directory, manifest)
        writer._recover()
        writer.manifest["budget"] = budget
        return writer

    def _recover(self) -> None:
        """Undo what an interrupted run left after its last commit."""
        for leftover in self.directory.glob("*.tmp"):
            if _SHARD_NAME.fullmatch(leftover.name[:-4]) or leftover.name == MANIFEST + ".tmp":
                leftover.unlink()
        self.queries_spent = max(self.queries_spent, _last_logged(self.directory / QUERIES_LOG))
        if self.queries_spent > self.manifest["queries_spent"]:
            log.info("resuming %s at record %d; %d queries of an unfinished shard are bought again",
                     self.directory, self.manifest["count"],
                     self.queries_spent - self.manifest["queries_spent"])
            self.manifest["queries_spent"] = self.queries_spent
        rejected = self.directory / REJECTED
        committed = self.manifest["rejected_bytes"]
        if rejected.exists() and rejected.stat().st_size > committed:
            os.truncate(rejected, committed)
        elif committed and (not rejected.exists() or rejected.stat().st_size < committed):
            log.warning("%s is shorter than the manifest records; earlier rejections are lost", rejected)
        self._commit_manifest()

    def reject(self, query: Query) -> None:
        if self._rejected_file is None:
            self._rejected_file = self._append(REJECTED, header=_REJECTED_HEADER)
        spec = self.sources[query.source]["spec"]
        line = "\t".join(_tsv(v) for v in (spec, query.key, query.rejection)) + "\n"
        self._write(self._rejected_file, line.encode("utf-8", "surrogateescape"))
        self.rejected += 1
        log.debug("rejected %s %s: %s", spec, query.key, query.rejection)

    def spent(self, n: int) -> None:
        self.queries_spent += n
        if self._queries_log is None:
            self._queries_log = self._append(QUERIES_LOG)
        self._write(self._queries_log, f"{self.queries_spent}\n".encode())

    def add(self, queries: list[Query], labels: np.ndarray, probabilities: np.ndarray | None) -> None:
        self.buffer.append((queries, labels, probabilities))
        self.buffered += len(queries)

    def commit(self, *, complete: bool = False, exhausted: bool = False) -> None:
        """Write the buffered shard (if any) and the manifest."""
        m = self.manifest
        if self.buffered:
            queries = [q for batch, _, _ in self.buffer for q in batch]
            labels = np.concatenate([b[1] for b in self.buffer]).astype(np.int64)
            arrays = {
                "images": np.stack([q.image for q in queries]),
                "labels": labels,
                "sources": np.array([q.source for q in queries], dtype=np.int32),
                "keys": np.array([q.key for q in queries], dtype=str),
            }
            if self.soft:
                arrays["probabilities"] = np.concatenate([b[2] for b in self.buffer]).astype(np.float32)
            _append_shard(self.directory, m, arrays, next_item=self.next_item)
            self.buffer, self.buffered = [], 0
        if self._rejected_file is not None:
            self._sync(self._rejected_file)
            m["rejected_bytes"] = self._rejected_file.tell()
        m["rejected"] = self.rejected
        m["next_item"] = self.next_item
        m["queries_spent"] = self.queries_spent
        m["complete"] = complete
        m["exhausted"] = exhausted
        self._commit_manifest()
        if self._queries_log is not None:
            # Committed spending now lives in the manifest; the log restarts from there.
            os.ftruncate(self._queries_log.fileno(), 0)

    def close(self) -> None:
        for handle in (self._rejected_file, self._queries_log):
            if handle is not None:
                handle.close()
        self._rejected_file = self._queries_log = None

    def _append(self, name: str, header: bytes = b""):
        path = self.directory / name
        try:
            handle = open(path, "ab", buffering=0)
            if header and handle.tell() == 0:
                self._write(handle, header)
        except OSError as exc:
            raise _write_error(path, exc) from exc
        return handle

    @staticmethod
    def _write(handle, data: bytes) -> None:
        try:
            handle.write(data)
        except OSError as exc:
            raise _write_error(Path(handle.name), exc) from exc

    @staticmethod
    def _sync(handle) -> None:
        try:
            os.fsync(handle.fileno())
        except OSError as exc:
            raise _write_error(Path(handle.name), exc) from exc

    def _commit_manifest(self) -> None:
        _write_manifest(self.directory, self.manifest)


def _append_shard(directory: Path, manifest: dict, arrays: dict[str, np.ndarray], *, next_item: int) -> None:
    """Write ``arrays`` as the next shard (atomically) and count it in ``manifest`` (not saved)."""
    name = f"shard-{len(manifest['shards']):05d}.npz"
    path = directory / name
    _atomic_write(path, lambda handle: _write_npz(handle, arrays))
    count = len(arrays["labels"])
    manifest["shards"].append({"file": name, "count": count, "sha256": file_sha256(path), "next_item": next_item})
    manifest["count"] += count
    manifest["label_histogram"] = _add_counts(manifest["label_histogram"], arrays["labels"])
    manifest["source_counts"] = _add_counts(manifest["source_counts"], arrays["sources"])


def _write_manifest(directory: Path, manifest: dict) -> None:
    try:
        write_json(directory / MANIFEST, manifest)
    except OSError as exc:
        raise _write_error(directory / MANIFEST, exc) from exc


def _add_counts(histogram: list[int], values: np.ndarray) -> list[int]:
    return (np.asarray(histogram) + np.bincount(values, minlength=len(histogram))).tolist()


def _write_npz(handle, arrays: dict[str, np.ndarray]) -> None:
    np.savez(handle, **arrays)


def _atomic_write(path: Path, write: Callable) -> None:
    try:
        atomic_write(path, write)
    except OSError as exc:
        raise _write_error(path, exc) from exc


def _write_error(path: Path, exc: OSError) -> CopycatError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CopycatError(
            f"disk full while writing {path}; every finished shard and the manifest are intact: "
            "free some space and rerun the same command to resume"
        )
    return CopycatError(
        f"cannot write {path} ({exc.strerror or exc}); fix the folder and rerun the same command "
        "to resume"
    )


def _tsv(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _last_logged(path: Path) -> int:
    """The last complete count in ``queries.log`` (0 when there is none)."""
    try:
        lines = path.read_bytes().split(b"\n")[:-1]  # a line cut by a crash has no newline yet
    except FileNotFoundError:
        return 0
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def _new_manifest(oracle: dict, num_classes: int, config: dict, budget: int) -> dict:
    """An empty manifest; ``oracle`` is the manifest's ``{"sha256", "contract"}`` entry."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "oracle": oracle,
        "config": config,
        "budget": budget,
        "count": 0,
        "queries_spent": 0,
        "label_histogram": [0] * num_classes,
        "source_counts": [0] * len(config["sources"]),
        "rejected": 0,
        "rejected_bytes": 0,
        "next_item": 0,
        "complete": False,
        "exhausted": False,
        "shards": [],
    }


def _resume_key(config: dict) -> dict:
    """The config without what may change between runs: spec spelling and folder location."""
    sources = [{k: v for k, v in s.items() if k != "spec"} for s in config["sources"]]
    return {**config, "sources": sources}


def _check_resumable(directory: Path, manifest: dict, oracle: Oracle, config: dict) -> None:
    fix = "pass --overwrite to start again, or choose another output folder"
    if manifest["oracle"]["sha256"] != oracle.identity:
        raise CopycatError(
            f"output folder {directory} holds a fake dataset labeled by another oracle (sha256 "
            f"{manifest['oracle']['sha256'][:12]}..., this one is {oracle.identity[:12]}...); {fix}"
        )
    if manifest["oracle"]["contract"] != oracle.contract.to_dict():
        raise CopycatError(
            f"output folder {directory} was labeled under another input/output contract "
            f"(preprocessing, layout or output differ); {fix}"
        )
    old, new = _resume_key(manifest["config"]), _resume_key(config)
    if old == new:
        return
    differences = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        if name == "sources":
            before = [s["spec"] for s in manifest["config"]["sources"]]
            after = [s["spec"] for s in config["sources"]]
            if before == after:
                differences.append(f"the contents of query source(s) {', '.join(after)} changed")
            else:
                differences.append(f"query sources {before} vs now {after}")
        else:
            differences.append(f"{name} {old.get(name)!r} vs now {new.get(name)!r}")
    raise CopycatError(
        f"output folder {directory} holds a fake dataset made with other options "
        f"({'; '.join(differences)}); rerun with the same options to resume, or {fix}"
    )


def _remove_own_files(directory: Path) -> None:
    """``--overwrite``: delete what this tool wrote there, nothing else."""
    if not directory.is_dir():
        return
    own = {MANIFEST, MANIFEST + ".tmp", REJECTED, QUERIES_LOG}
    for path in directory.iterdir():
        shard = path.name[:-4] if path.name.endswith(".tmp") else path.name
        if path.is_file() and (path.name in own or _SHARD_NAME.fullmatch(shard)):
            path.unlink()


# ----------------------------------------------------------------------------- labeling


def label(
    oracle: Oracle,
    source: QuerySource | str | Sequence[str],
    budget: int,
    out_dir: str | os.PathLike,
    *,
    labels: str = "hard",
    seed: int | None = None,
    resize: str | None = None,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    workers: int | None = None,
    progress: Callable[[LabelProgress], None] | None = None,
) -> FakeSet:
    """Query the oracle with images from ``source`` and store its answers as a fake dataset.

    Rerunning with the same arguments after an interruption resumes from the last finished
    shard; a larger ``budget`` extends a finished dataset.

    Args:
        oracle: the target, e.g. an :class:`~copycat_tf.oracle.OnnxOracle`. Its own
            budget, if set, is respected too.
        source: a :class:`~copycat_tf.queries.QuerySource`, or spec strings for
            :func:`~copycat_tf.queries.open_query_source`.
        budget: records wanted in the fake dataset (= queries, without interruptions).
        out_dir: the fake dataset's folder (created; must not be inside a query folder).
        labels: ``"hard"`` (class labels) or ``"soft"`` (also float32 probabilities).
        seed: seed for opening spec strings (default 0); a ``QuerySource`` has its own.
        resize: resize policy for spec strings (default ``"resize"``).
        batch_size: images per oracle call.
        shard_size: records per shard file; a crash re-buys at most one shard.
        overwrite: delete a fake dataset (and only its files) already in ``out_dir``.
        workers: decoding threads (default one per core, at most 8).
        progress: called with a :class:`LabelProgress` at the start and after each batch.

    Returns:
        The :class:`FakeSet`.

    Raises:
        CopycatError: bad arguments, an incompatible dataset in ``out_dir``, a full disk.

    Example:

    >>> fakeset = label(OnnxOracle("target.onnx"), ["photos"], 10_000, "runs/fake",
    ...                 labels="soft", seed=1)                       # doctest: +SKIP
    """
    _check_positive(budget=budget, batch_size=batch_size, shard_size=shard_size)
    if labels not in LABEL_MODES:
        raise CopycatError(f"labels must be one of {LABEL_MODES}; received {labels!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CopycatError(f"output folder {out_dir} is a file; give a folder for the fake dataset")
    source = _as_source(source, oracle, seed, resize)
    for folder in source.folders:
        if out_dir.resolve().is_relative_to(folder.resolve()):
            raise CopycatError(
                f"output folder {out_dir} is inside the query folder {folder}, so its shards "
                "would become queries; choose an output folder outside it"
            )
    config = {**source.config(), "labels": labels, "shard_size": shard_size}
    writer = _Writer.open(out_dir, oracle, config, budget, overwrite)
    try:
        _run(writer, oracle, source, budget, labels == "soft", batch_size, workers, progress)
    finally:
        writer.close()
    fakeset = FakeSet.open(out_dir)
    if fakeset.count == 0 and fakeset.manifest["exhausted"]:
        raise CopycatError(
            f"no usable query image: the query sources ran out after {fakeset.rejected} rejected "
            f"input(s) and nothing could be sent (reasons in {out_dir / REJECTED})"
        )
    return fakeset


def _check_positive(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise CopycatError(f"{name.replace('_', '-')} must be a whole number >= 1; received {value!r}")


def _as_source(source, oracle: Oracle, seed, resize) -> QuerySource:
    shape = oracle.contract.image_shape
    if isinstance(source, QuerySource):
        if seed is not None or resize is not None:
            raise CopycatError("seed and resize belong to the QuerySource; pass them to open_query_source")
        if source.image_shape != shape:
            raise CopycatError(
                f"the query source makes {source.image_shape} images but the oracle takes {shape}"
            )
        return source
    return open_query_source(source, shape, seed=0 if seed is None else seed,
                             resize=resize or "resize")


def _run(writer: _Writer, oracle: Oracle, source: QuerySource, budget: int, soft: bool,
         batch_size: int, workers: int | None, progress) -> None:
    left = oracle.queries_left
    limit = budget if left is None else min(budget, writer.labeled + left)
    if writer.labeled >= budget:
        log.info("%s already holds %d records (budget %d)", writer.directory, writer.labeled, budget)
        if not writer.manifest["complete"]:
            writer.commit(complete=True, exhausted=writer.manifest["exhausted"])
        return

    def report():
        if progress is not None:
            progress(LabelProgress(writer.labeled, budget, writer.rejected, writer.queries_spent))

    report()
    caller_budget = oracle.budget
    # The oracle refuses anything past the limit, whatever happens in this loop.
    oracle.budget = oracle.queries_spent + (limit - writer.labeled)
    stream = source.queries(writer.next_item, workers=workers, window=2 * batch_size + 16)
    exhausted = False
    try:
        while writer.labeled < limit and not exhausted:
            want = min(batch_size, writer.shard_room, limit - writer.labeled)
            batch = []
            for query in stream:
                writer.next_item = query.position + 1
                if query.rejection is not None:
                    writer.reject(query)
                    continue
                batch.append(query)
                if len(batch) == want:
                    break
            else:
                exhausted = True
            if batch:
                answers = oracle.query(np.stack([q.image for q in batch]), soft=soft)
                writer.spent(len(batch))
                writer.add(batch, answers.labels, answers.probabilities)
                if writer.shard_room == 0:
                    writer.commit()
                report()
    finally:
        stream.close()
        oracle.budget = caller_budget
    if exhausted:
        log.info("query sources used up after %d records", writer.labeled)
    elif writer.labeled < budget:
        log.warning("the oracle's query budget ran out at %d of %d records", writer.labeled, budget)
    writer.commit(complete=exhausted or writer.labeled >= budget, exhausted=exhausted)
    report()


# ----------------------------------------------------------------------------- deriving


def derive(
    fakeset: FakeSet,
    out_dir: str | os.PathLike,
    count: int,
    answers: Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray | None]] | None = None,
    *,
    name: str = "prefix",
    labels: str | None = None,
) -> FakeSet:
    """A new fake dataset of the first ``count`` records of ``fakeset``, answers rewritten.

    Nothing is queried: the images, sources and keys are copied, and ``answers`` turns the
    stored answers into the ones kept (``copycat-tf audit`` uses it to show a copycat what an
    attacker behind an output policy would have seen, from one purchase of queries). The
    result has the same format, oracle sha256 and contract as ``fakeset``; its
    ``queries_spent`` is ``count`` (what an attack of that size pays) and its config notes
    ``derived_from`` (the source's records) and ``derivation`` (``name``). Shards are
    written atomically and the manifest last, so a folder either holds the finished
    dataset or is rewritten by the next call; a finished one with the same source records,
    ``name`` and ``labels`` is returned as it is.

    Args:
        fakeset: the source (complete, holding at least ``count`` records).
        out_dir: the derived dataset's folder.
        count: records to take from the start.
        answers: ``answers(labels, probabilities) -> (labels, probabilities or None)`` per
            shard (``probabilities`` is ``None`` when the source holds hard labels); default
            keeps the stored answers.
        name: what ``answers`` does, recorded in the config (and part of the identity).
        labels: ``"hard"`` or ``"soft"`` (default the source's); ``"soft"`` needs
            ``answers`` to return probabilities.

    Raises:
        CopycatError: bad arguments, or ``out_dir`` holding something else.

    Example:

    >>> small = derive(FakeSet.open("runs/fake"), "runs/fake-1000", 1000)   # doctest: +SKIP
    >>> small.count, small.queries_spent                                    # doctest: +SKIP
    (1000, 1000)
    """
    _check_positive(count=count)
    labels = labels or fakeset.manifest["config"]["labels"]
    if labels not in LABEL_MODES:
        raise CopycatError(f"labels must be one of {LABEL_MODES}; received {labels!r}")
    if not fakeset.complete or fakeset.count < count:
        raise CopycatError(
            f"fake dataset {fakeset.directory} holds {fakeset.count} records"
            f"{'' if fakeset.complete else ' (incomplete)'}; cannot take the first {count}"
        )
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CopycatError(f"output folder {out_dir} is a file; give a folder for the fake dataset")
    if out_dir.resolve() == fakeset.directory.resolve():
        raise CopycatError(f"derive {fakeset.directory} into another folder, not into itself")
    covered, total = [], 0
    for shard in fakeset.manifest["shards"]:
        if total >= count:
            break
        covered.append(shard["sha256"])
        total += shard["count"]
    source_config = fakeset.manifest["config"]
    config = {
        **{k: v for k, v in source_config.items() if k not in ("derived_from", "derivation")},
        "labels": labels,
        "derived_from": {"directory": str(fakeset.directory), "oracle_sha256": fakeset.oracle_sha256,
                         "count": count, "shards_sha256": covered},
        "derivation": name,
    }

    def identity(c: dict) -> dict:
        return {**c, "derived_from": {k: v for k, v in c["derived_from"].items() if k != "directory"}}

    existing = _read_manifest(out_dir) if out_dir.is_dir() else None
    if existing is not None:
        if "derived_from" not in existing["config"]:
            raise CopycatError(f"output folder {out_dir} holds a labeled fake dataset; choose another folder")
        if identity(existing["config"]) == identity(config) and existing["complete"]:
            return FakeSet(out_dir, existing)
        log.info("%s holds another derivation; writing it again", out_dir)
    elif out_dir.is_dir():
        strangers = [p.name for p in out_dir.iterdir()
                     if not (p.name == MANIFEST + ".tmp" or _SHARD_NAME.fullmatch(p.name.removesuffix(".tmp")))]
        if strangers:
            raise CopycatError(
                f"output folder {out_dir} is not empty and holds no fake dataset ({strangers[0]}, ...); "
                "choose another folder"
            )
    _remove_own_files(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CopycatError(f"cannot create output folder {out_dir} ({exc.strerror})") from exc

    num_classes = fakeset.num_classes
    manifest = {**_new_manifest(fakeset.manifest["oracle"], num_classes, config, count),
                "queries_spent": count, "complete": True}
    shard_size = int(source_config.get("shard_size", DEFAULT_SHARD_SIZE))
    soft_source = fakeset.has_probabilities
    pending: dict[str, list[np.ndarray]] = {}

    def flush(final: bool) -> None:
        while pending and (final or sum(len(a) for a in pending["labels"]) >= shard_size):
            joined = {key: np.concatenate(parts) for key, parts in pending.items()}
            take = min(shard_size, len(joined["labels"]))
            if take == 0:
                break
            arrays = {key: value[:take] for key, value in joined.items()}
            rest = {key: value[take:] for key, value in joined.items()}
            pending.clear()
            if len(rest["labels"]):
                pending.update({key: [value] for key, value in rest.items()})
            _append_shard(out_dir, manifest, arrays, next_item=0)

    taken = 0
    for shard in fakeset.iter_shards(with_probabilities=soft_source):
        if taken >= count:
            break
        n = min(count - taken, len(shard["labels"]))
        stored_probabilities = shard["probabilities"][:n] if soft_source else None
        new_labels, new_probabilities = (shard["labels"][:n], stored_probabilities)
        if answers is not None:
            new_labels, new_probabilities = answers(shard["labels"][:n], stored_probabilities)
        new_labels = np.asarray(new_labels, np.int64)
        if new_labels.shape != (n,) or (n and (new_labels.min() < 0 or new_labels.max() >= num_classes)):
            raise CopycatError(f"derivation {name!r} returned labels of shape {new_labels.shape} "
                               f"or outside 0..{num_classes - 1}")
        arrays = {"images": shard["images"][:n], "labels": new_labels,
                  "sources": shard["sources"][:n], "keys": shard["keys"][:n]}
        if labels == "soft":
            if new_probabilities is None:
                raise CopycatError(f"derivation {name!r} gives labels only; derive it with labels='hard'")
            arrays["probabilities"] = np.asarray(new_probabilities, np.float32).reshape(n, num_classes)
        for key, value in arrays.items():
            pending.setdefault(key, []).append(value)
        taken += n
        flush(final=False)
    flush(final=True)
    _write_manifest(out_dir, manifest)
    return FakeSet.open(out_dir)
