"""The fake dataset on disk: its format, and :class:`FakeSet`, the read-only view of one.

A fake dataset directory holds the exact uint8 images sent, the hard labels, float32
probabilities (``labels="soft"``) and where each image came from::

    DIR/manifest.json      oracle sha256 + contract, config, count, histogram, shard list
    DIR/shard-00000.npz    images, labels, [probabilities], sources, keys (1,024 records)
    DIR/rejected.tsv       inputs that were never sent (source, key, reason)
    DIR/queries.log        queries spent since the last finished shard (crash accounting)
    DIR/answers.journal    answers received since the last finished shard (crash recovery)

Shards are plain uncompressed ``.npz`` files read with numpy alone, always with
``allow_pickle=False``; every manifest and shard header is checked on open, every shard
against its sha256 on first read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copycat_tf.contract import Contract
from copycat_tf.errors import CopycatError
from copycat_tf.files import OutputFolder, UnreadableJson, file_sha256, read_json
from copycat_tf.npz import npz_headers, read_npz
from copycat_tf.oracle import MAX_INPUT_PIXELS

FORMAT = "copycat-tf.fakeset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REJECTED = "rejected.tsv"
QUERIES_LOG = "queries.log"
#: Answers of the shard being filled, appended batch by batch: a kill loses no answer received.
ANSWERS_JOURNAL = "answers.journal"
LABEL_MODES = ("hard", "soft")
DEFAULT_SHARD_SIZE = 1024
SHARD_NAME = re.compile(r"shard-\d{5,}\.npz")
MAX_CLASSES = 1_000_000  # a manifest claiming more is not one copycat-tf wrote
REJECTED_HEADER = b"source\tkey\treason\n"


def fakeset_folder(directory: Path) -> OutputFolder:
    """A fake dataset's folder and the files it owns there."""
    return OutputFolder(Path(directory), "fake dataset", files=(MANIFEST, REJECTED, QUERIES_LOG, ANSWERS_JOURNAL),
                        patterns=(SHARD_NAME.pattern,))


@dataclass(frozen=True)
class ShardEntry:
    """One shard as the manifest lists it."""

    file: str
    count: int
    sha256: str
    next_item: int


@dataclass(frozen=True)
class Manifest:
    """A fake dataset's ``manifest.json`` as a typed record: what other modules read of it.

    :meth:`from_json` checks every field (a one-line :class:`CopycatError` names what is
    wrong); :meth:`to_json` gives the file's object back, unchanged.

    Example:

    >>> Manifest.from_json({"format": "x"})
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: fake dataset manifest: not a copycat-tf.fakeset manifest
    """

    oracle_sha256: str
    contract: Contract
    config: Mapping[str, object]
    budget: int
    count: int
    queries_spent: int
    probe_queries: int
    label_histogram: tuple[int, ...]
    source_counts: tuple[int, ...]
    rejected: int
    rejected_bytes: int
    next_item: int
    complete: bool
    exhausted: bool
    shards: tuple[ShardEntry, ...]
    tool_version: str | None = None

    @property
    def labels(self) -> str:
        """``"hard"`` or ``"soft"``: what the records keep."""
        return str(self.config["labels"])

    @classmethod
    def from_json(cls, data: object, *, where: str = "fake dataset manifest") -> Manifest:
        problem = _manifest_problem(data)
        if problem is not None:
            raise CopycatError(f"{where}: {problem}")
        return cls(
            oracle_sha256=data["oracle"]["sha256"], contract=Contract.from_dict(data["oracle"]["contract"]),
            config=data["config"], budget=data["budget"], count=data["count"],
            queries_spent=data["queries_spent"], probe_queries=int(data.get("probe_queries", 0)),
            label_histogram=tuple(data["label_histogram"]), source_counts=tuple(data["source_counts"]),
            rejected=data["rejected"], rejected_bytes=data["rejected_bytes"], next_item=data["next_item"],
            complete=data["complete"], exhausted=data["exhausted"],
            shards=tuple(ShardEntry(s["file"], s["count"], s["sha256"], s["next_item"]) for s in data["shards"]),
            tool_version=data.get("tool_version"),
        )

    def to_json(self) -> dict:
        data = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "tool_version": self.tool_version,
            "oracle": {"sha256": self.oracle_sha256, "contract": self.contract.to_dict()},
            "config": dict(self.config), "budget": self.budget, "count": self.count,
            "queries_spent": self.queries_spent, "label_histogram": list(self.label_histogram),
            "source_counts": list(self.source_counts), "rejected": self.rejected,
            "rejected_bytes": self.rejected_bytes, "next_item": self.next_item, "complete": self.complete,
            "exhausted": self.exhausted, "shards": [dict(vars(s)) for s in self.shards],
        }
        if self.probe_queries:
            data["probe_queries"] = self.probe_queries
        return data


def stored_contract(directory: str | os.PathLike) -> Contract | None:
    """The contract a fake dataset in ``directory`` was labelled under, or ``None`` (no usable
    manifest there). A resumed run opens its target with it, so nothing is probed twice."""
    try:
        manifest = read_manifest(Path(directory)) if Path(directory).is_dir() else None
        return None if manifest is None else Contract.from_dict(manifest["oracle"]["contract"])
    except (CopycatError, KeyError, TypeError, ValueError):
        return None


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

    Usage::

        fakeset = FakeSet.open("runs/fake")
        fakeset.count, fakeset.num_classes, fakeset.label_histogram
        for shard in fakeset.iter_shards():
            shard["images"].shape, shard["labels"].shape
    """

    def __init__(self, directory: Path, manifest: dict):
        self.directory = directory
        self.manifest = manifest  # the file's object, for this package's writers
        self.record = Manifest.from_json(manifest, where=f"fake dataset {directory}")
        self.contract = self.record.contract
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
        manifest = read_manifest(directory)
        if manifest is None:
            raise CopycatError(
                f"fake dataset {directory}: no {MANIFEST}; create one with `copycat-tf label`"
            )
        return cls(directory, manifest)

    oracle_sha256 = property(lambda self: self.record.oracle_sha256)
    count = property(lambda self: self.record.count)
    complete = property(lambda self: self.record.complete)
    #: The query sources ran out before the budget.
    exhausted = property(lambda self: self.record.exhausted)
    budget = property(lambda self: self.record.budget)
    queries_spent = property(lambda self: self.record.queries_spent)
    #: Stream position after the last record: where a next purchase from the same stream starts.
    next_item = property(lambda self: self.record.next_item)
    rejected = property(lambda self: self.record.rejected)
    label_histogram = property(lambda self: list(self.record.label_histogram))
    num_classes = property(lambda self: self.contract.num_classes)
    image_shape = property(lambda self: self.contract.image_shape)
    #: ``"hard"`` or ``"soft"``: what the records keep.
    labels = property(lambda self: self.record.labels)
    has_probabilities = property(lambda self: self.record.labels == "soft")
    #: The shards' sha256, in order: identifies the records exactly.
    shard_sha256s = property(lambda self: [shard.sha256 for shard in self.record.shards])

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


def read_manifest(directory: Path) -> dict | None:
    """The checked manifest of the fake dataset in ``directory``, or None when it has none.

    Every field is validated and every shard present has its header checked, so a writer
    resuming or deriving from it may trust it; anything wrong is a one-line error.
    """
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
        if not SHARD_NAME.fullmatch(shard["file"]):
            return f"shard file {shard['file']!r} is not a plain shard name inside the folder"
        if not isinstance(shard.get("count"), int) or not isinstance(shard.get("sha256"), str):
            return f"shard {shard['file']!r} lacks count or sha256"
        if shard["count"] < 1:
            return f"shard {shard['file']!r} holds {shard['count']} records"
        total += shard["count"]
    if total != manifest["count"]:
        return f"shards hold {total} records but count is {manifest['count']}"
    return None
