"""Writing a fake dataset crash-safely: shards, manifest, rejections, the queries log and
the answers journal.

Each shard is written to a temporary file, synced and renamed; the manifest is rewritten
the same way after every shard. ``queries.log`` records every batch *before* it is sent, so
queries bought are counted whatever happens next; ``answers.journal`` records every batch's
answers as soon as they arrive, so an interrupted run (Ctrl-C, ``kill -9``, power loss, a
full disk) resumes with every answer it received: only a batch in flight at the kill is
lost (a paid API's is still counted as spent).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from copycat_tf._version import __version__
from copycat_tf.errors import CopycatError
from copycat_tf.contract import Contract
from copycat_tf.fakeset.store import (
    ANSWERS_JOURNAL,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    QUERIES_LOG,
    REJECTED,
    REJECTED_HEADER,
    SHARD_NAME,
    fakeset_folder,
    read_manifest,
)
from copycat_tf.files import atomic_write, file_sha256, write_json
from copycat_tf.oracle import Oracle
from copycat_tf.queries import Query

log = logging.getLogger(__name__)


class FakeSetWriter:
    """Owns a fake dataset directory while :func:`label` appends to it.

    Records are buffered until a shard is full, then the shard and the manifest are
    committed atomically. ``queries.log`` notes every paid batch so queries spent on a
    shard that never finished are still counted after a crash. The local query loop and
    the Ray engine (:mod:`copycat_tf.fakeset.ray_engine`) both write through it.
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
        self._journal = None

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
    def open(cls, directory: Path, oracle: Oracle, config: dict, budget: int, overwrite: bool) -> FakeSetWriter:
        """Start a new fake dataset in ``directory`` or take up the one already there."""
        folder = fakeset_folder(directory)
        folder.check_not_file()
        if overwrite:
            folder.remove_own()
        manifest = read_manifest(directory) if directory.is_dir() else None
        if manifest is None:
            folder.claim(overwrite=overwrite)  # refuses someone else's files
            manifest = empty_manifest({"sha256": oracle.identity, "contract": oracle.contract.to_dict()},
                                      oracle.contract.num_classes, config, budget)
        else:
            _check_resumable(directory, manifest, oracle, config)
        writer = cls(directory, manifest)
        writer._recover()
        writer.manifest["budget"] = budget
        if writer.buffered >= writer.shard_size:
            writer.commit()  # the journal held a whole shard (its write was refused): save it now
        # Images the oracle was charged for to set itself up (an API's probe) belong to the
        # first purchase made with it: they count against this budget like any query.
        probes = oracle.take_setup_spend()
        if probes:
            writer.queries_spent += probes
            writer.manifest["queries_spent"] = writer.queries_spent
            writer.manifest["probe_queries"] = writer.manifest.get("probe_queries", 0) + probes
            writer._commit_manifest()
        return writer

    def _recover(self) -> None:
        """Undo what an interrupted run left after its last commit, keeping every answer the
        journal holds."""
        for leftover in self.directory.glob("*.tmp"):
            if SHARD_NAME.fullmatch(leftover.name[:-4]) or leftover.name == MANIFEST + ".tmp":
                leftover.unlink()
        self.queries_spent = max(self.queries_spent, _last_logged(self.directory / QUERIES_LOG))
        committed = self.manifest["rejected_bytes"]
        kept = self._replay_journal()
        if kept is not None:
            # The rejections before the journaled answers stay: the stream goes on after them.
            committed = self.manifest["rejected_bytes"] = kept
            self.manifest["rejected"] = self.rejected
            log.info("resuming %s at record %d: %d answers of the unfinished shard kept from %s",
                     self.directory, self.manifest["count"] + self.buffered, self.buffered, ANSWERS_JOURNAL)
        if self.queries_spent > self.manifest["queries_spent"]:
            lost = self.queries_spent - self.manifest["queries_spent"] - self.buffered
            if lost > 0:
                log.info("resuming %s: %d queries answered after the last saved answer were lost; they "
                         "count as spent", self.directory, lost)
            self.manifest["queries_spent"] = self.queries_spent
        rejected = self.directory / REJECTED
        if rejected.exists() and rejected.stat().st_size > committed:
            os.truncate(rejected, committed)
        elif committed and (not rejected.exists() or rejected.stat().st_size < committed):
            log.warning("%s is shorter than the manifest records; earlier rejections are lost", rejected)
        self._commit_manifest()

    def _replay_journal(self) -> int | None:
        """Buffer the journal's answers that no shard holds yet; return the rejections file's
        length they go with (``None``: nothing replayed). A torn last entry is cut off."""
        path = self.directory / ANSWERS_JOURNAL
        if not path.is_file():
            return None
        contract = Contract.from_dict(self.manifest["oracle"]["contract"])
        good, kept = 0, None
        with open(path, "rb") as handle:
            while True:
                entry = _read_journal_entry(handle, contract, self.soft, self.shard_size)
                if entry is None:
                    break
                header, queries, labels, probabilities = entry
                good = handle.tell()
                first = self.manifest["count"] + self.buffered
                if header["first"] < first:
                    continue  # already in a shard: the run stopped before clearing the journal
                if header["first"] != first:
                    break
                self.buffer.append((queries, labels, probabilities))
                self.buffered += len(queries)
                self.next_item, self.rejected = header["next_item"], header["rejected"]
                kept = header["rejected_bytes"]
        os.truncate(path, good)
        return kept

    def reject(self, query: Query) -> None:
        if self._rejected_file is None:
            self._rejected_file = self._append(REJECTED, header=REJECTED_HEADER)
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
        """Keep a batch's answers: buffered for the shard, and journaled (synced) at once."""
        first = self.manifest["count"] + self.buffered
        self.buffer.append((queries, labels, probabilities))
        self.buffered += len(queries)
        if self._journal is None:
            self._journal = self._append(ANSWERS_JOURNAL)
        if self._rejected_file is not None:
            self._sync(self._rejected_file)  # the rejections before this batch, as the entry says
        header = {"first": first, "n": len(queries), "next_item": self.next_item, "rejected": self.rejected,
                  "rejected_bytes": (self._rejected_file.tell() if self._rejected_file is not None
                                     else self.manifest["rejected_bytes"]),
                  "keys": [q.key for q in queries], "sources": [q.source for q in queries]}
        payload = [np.stack([q.image for q in queries]).astype(np.uint8), np.asarray(labels, np.int64)]
        if self.soft:
            payload.append(np.asarray(probabilities, np.float32))
        self._write(self._journal, json.dumps(header).encode() + b"\n" + b"".join(a.tobytes() for a in payload))
        self._sync(self._journal)

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
            append_shard(self.directory, m, arrays, next_item=self.next_item)
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
        if self._journal is not None:
            os.ftruncate(self._journal.fileno(), 0)  # the answers now live in a shard
        elif (self.directory / ANSWERS_JOURNAL).is_file():
            os.truncate(self.directory / ANSWERS_JOURNAL, 0)

    def close(self) -> None:
        for handle in (self._rejected_file, self._queries_log, self._journal):
            if handle is not None:
                handle.close()
        self._rejected_file = self._queries_log = self._journal = None

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
        write_manifest(self.directory, self.manifest)


def append_shard(directory: Path, manifest: dict, arrays: dict[str, np.ndarray], *, next_item: int) -> None:
    """Write ``arrays`` as the next shard (atomically) and count it in ``manifest`` (not saved)."""
    name = f"shard-{len(manifest['shards']):05d}.npz"
    path = directory / name
    _atomic_write(path, lambda handle: _write_npz(handle, arrays))
    count = len(arrays["labels"])
    manifest["shards"].append({"file": name, "count": count, "sha256": file_sha256(path), "next_item": next_item})
    manifest["count"] += count
    manifest["label_histogram"] = _add_counts(manifest["label_histogram"], arrays["labels"])
    manifest["source_counts"] = _add_counts(manifest["source_counts"], arrays["sources"])


def write_manifest(directory: Path, manifest: dict) -> None:
    """Save ``manifest`` atomically; a full disk or an unwritable folder is a one-line error."""
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


def journaled_records(directory: str | os.PathLike) -> int:
    """Answers the journal of the fake dataset in ``directory`` holds beyond its saved shards:
    what a resume keeps of an interrupted shard (0 when there is none)."""
    directory = Path(directory)
    manifest = read_manifest(directory) if directory.is_dir() else None
    path = directory / ANSWERS_JOURNAL
    if manifest is None or not path.is_file():
        return 0
    contract = Contract.from_dict(manifest["oracle"]["contract"])
    soft, most = manifest["config"]["labels"] == "soft", manifest["config"]["shard_size"]
    kept = 0
    with open(path, "rb") as handle:
        while (entry := _read_journal_entry(handle, contract, soft, most)) is not None:
            if entry[0]["first"] == manifest["count"] + kept:
                kept += entry[0]["n"]
    return kept


def _read_journal_entry(handle, contract: Contract, soft: bool, most: int):
    """The next whole entry of an answers journal, or ``None`` at its end or at a torn or
    malformed entry (what follows is cut off)."""
    line = handle.readline(1 << 24)
    if not line.endswith(b"\n"):
        return None
    try:
        header = json.loads(line)
        n = int(header["n"])
        if not 0 < n <= most or len(header["keys"]) != n or len(header["sources"]) != n:
            return None
        for name in ("first", "next_item", "rejected", "rejected_bytes"):
            if not isinstance(header[name], int) or header[name] < 0:
                return None
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    shape, k = contract.image_shape, contract.num_classes
    sizes = [n * int(np.prod(shape)), n * 8] + ([n * k * 4] if soft else [])
    data = handle.read(sum(sizes))
    if len(data) != sum(sizes):
        return None
    images = np.frombuffer(data[:sizes[0]], np.uint8).reshape(n, *shape)
    labels = np.frombuffer(data[sizes[0]:sizes[0] + sizes[1]], np.int64).copy()
    probabilities = np.frombuffer(data[sizes[0] + sizes[1]:], np.float32).reshape(n, k).copy() if soft else None
    if labels.min() < 0 or labels.max() >= k:
        return None
    queries = [Query(-1, int(source), str(key), image, None)
               for source, key, image in zip(header["sources"], header["keys"], images)]
    return header, queries, labels, probabilities


def _last_logged(path: Path) -> int:
    """The last complete count in ``queries.log`` (0 when there is none)."""
    try:
        lines = path.read_bytes().split(b"\n")[:-1]  # a line cut by a crash has no newline yet
    except FileNotFoundError:
        return 0
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def empty_manifest(oracle: dict, num_classes: int, config: dict, budget: int) -> dict:
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


