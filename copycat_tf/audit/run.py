"""``copycat-tf audit``: how much of a model can be copied, for how many queries, behind which output policy.

An audit is run by the model's owner. It buys the largest budget's queries **once**, with
soft labels (so every output policy can be simulated from the stored probabilities), then,
for each budget ``N`` and each defence (:mod:`copycat_tf.audit.defences`), trains a copycat from
scratch on the first ``N`` records as an attacker behind that policy would have seen them,
and measures it against the target::

    OUT/fakeset/               the attack's queries and the target's full answers (bought once)
    OUT/eval/from-P/           without --test-data: fresh query images (stream positions P on,
                               after every one the attack used), labelled by the target
    OUT/fakesets/N-DEFENCE/    the first N records as seen behind DEFENCE (derived, no queries)
    OUT/copycats/N-DEFENCE/    the copycat trained on them (copycat.onnx, training.json, ...)
    OUT/cells/N-DEFENCE.json   that cell's scores (cached)
    OUT/audit.json, audit.md, audit.html, audit_curve.png    the report

Why the first ``N`` records are a genuine ``N``-query attack: the ``paper`` strategy sends
queries in stream order, and the ``balanced`` strategy chooses each record from the
answers to earlier records only (:mod:`copycat_tf.strategies`), so no record of the prefix
depends on anything after it. Copycats train from scratch rather than from the balanced
strategy's last scout: that scout saw records past ``N`` and undefended answers, so starting
from it would leak.

Every stage resumes: a rerun of the same call buys nothing, retrains nothing and reuses
every cached score.

Usage::

    result = audit("vendor.onnx", ["./imagenet"], "runs/audit", budgets=(1000, 5000),
                   test_data="fashion-mnist:test", price_per_1k=1.5)
    print(result.verdict)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from copycat_tf._version import __version__
from copycat_tf.audit.defences import DEFAULT_DEFENCES, build_defences, defence_names
from copycat_tf.audit.detection import DEFAULT_DELTA
from copycat_tf.audit.label_defences import (
    DEFAULT_TAU,
    DEFAULT_TAUS,
    DEFAULT_WATERMARK_RATE,
    AdaptiveMisinformation,
    Watermark,
)
from copycat_tf.audit.owner_view import detection, owner_price, owner_probabilities, sweep, watermark_scores
from copycat_tf.audit.report import verdict, write_audit_report
from copycat_tf.datasets import load_labelled
from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.evaluation import agreement, evaluate
from copycat_tf.fakeset import derive, label
from copycat_tf.fakeset.ray_engine import RayEngine, open_engine
from copycat_tf.files import UnreadableJson, atomic_write, file_sha256, read_json, write_json
from copycat_tf.oracle import OnnxOracle, is_url, open_oracle
from copycat_tf.oracle.http.endpoint import shown_url
from copycat_tf.queries import open_query_source
from copycat_tf.strategies import DEFAULT_BALANCE, STRATEGIES, collect
from copycat_tf.training import TrainConfig, train_copycat

log = logging.getLogger(__name__)

DEFAULT_BUDGETS = (1000, 5000, 20000)
DEFAULT_EVAL_QUERIES = 1000
CELL_FORMAT = "copycat-tf.audit-cell"
#: The PRADA replay's W-over-queries plot, beside the report.
PRADA_PLOT = "audit_prada.png"
#: Stream positions reserved for the agreement images, per image wanted (room for rejects).
_EVAL_SPAN = 4


@dataclass(frozen=True)
class AuditResult:
    """What an audit produced.

    Attributes:
        out_dir: the audit's folder.
        report: the ``audit.json`` contents (``results``, ``verdict``, ``queries_spent``, ...).
        files: the report's files by kind: ``json``, ``markdown``, ``html``, ``curve``.
        fakeset: the :class:`~copycat_tf.fakeset.FakeSet` of the queries bought.
    """

    out_dir: Path
    report: dict
    files: dict
    fakeset: object

    @property
    def results(self) -> list[dict]:
        return self.report["results"]

    @property
    def verdict(self) -> str:
        return self.report["verdict"]


def parse_budgets(budgets: str | Sequence[int]) -> list[int]:
    """Sorted, distinct whole budgets >= 1 from a comma list or a sequence.

    Example:

    >>> parse_budgets("5000,1000,5000")
    [1000, 5000]
    """
    parts = budgets.split(",") if isinstance(budgets, str) else list(budgets)
    parsed = []
    for part in parts:
        try:
            value = int(str(part).strip().replace("_", ""))
            if isinstance(part, bool) or value < 1 or (not isinstance(part, str) and value != part):
                raise ValueError
        except ValueError:
            raise CopycatError(f"budgets must be whole numbers >= 1, e.g. 1000,5000; received {budgets!r}") from None
        parsed.append(value)
    if not parsed:
        raise CopycatError("budgets must be whole numbers >= 1, e.g. 1000,5000; received none")
    return sorted(set(parsed))


def audit(
    target: str | os.PathLike,
    queries: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    budgets: str | Sequence[int] = DEFAULT_BUDGETS,
    defences: str | Sequence[str] = DEFAULT_DEFENCES,
    test_data: str | None = None,
    strategy: str = "balanced",
    train_config=None,
    seed: int = 0,
    price_per_1k: float | None = None,
    eval_queries: int = DEFAULT_EVAL_QUERIES,
    resize: str = "resize",
    batch_size: int = 64,
    oracle_options: dict | None = None,
    misinformation_taus: Sequence[float] = (DEFAULT_TAU,),
    watermark_rate: float = DEFAULT_WATERMARK_RATE,
    benign_data: str | None = None,
    detect: bool = True,
    prada_delta: float = DEFAULT_DELTA,
    progress: Callable | None = None,
    on_stage: Callable[[int, int, str], None] | None = None,
    fit_verbose: int = 0,
    engine: str | RayEngine = "local",
    devices: int | str | None = None,
) -> AuditResult:
    """Measure how well ``target`` can be copied at each budget behind each output policy.

    Args:
        target: the ``.onnx`` model (queried through onnxruntime only).
        queries: query source specs, as for ``steal``.
        out_dir: the audit's folder; rerun with the same arguments to resume.
        budgets: query budgets (a comma list or whole numbers); only the largest is bought.
        defences: output policies (:func:`~copycat_tf.audit.defences.parse_defence` names)
            and label defences (``misinformation``, ``watermark``; see
            :mod:`copycat_tf.audit.label_defences`).
        test_data: labelled test data spec: gives performance ratios. Without it, copycats
            are scored by agreement with the target on ``eval_queries`` fresh query images.
        strategy: ``"balanced"`` or ``"paper"`` (:mod:`copycat_tf.strategies`).
        train_config: the copycats' :class:`~copycat_tf.training.TrainConfig` (default
            ``small_cnn`` with the strategy's class balancing); its ``seed`` must be ``seed``,
            and its ``labels`` are set per defence (hard where only labels are shown).
        seed: seeds the queries and training.
        price_per_1k: price of 1,000 queries, for the report's costs (optional).
        eval_queries: fresh images for the agreement check without ``test_data``.
        resize: how query images are fitted: ``resize``, ``center-crop`` or ``pad``.
        batch_size: images per oracle call.
        oracle_options: :class:`~copycat_tf.oracle.OnnxOracle` keyword arguments.
        misinformation_taus: a copycat is trained behind adaptive misinformation at each
            of these thresholds (the share of answers changed is reported for a wider sweep).
        watermark_rate: share of queries the simulated watermark answers falsely.
        benign_data: images an honest caller would send (default ``test_data``): the price
            label defences make honest callers pay, and PRADA's control stream.
        detect: replay PRADA detection over the query stream as bought.
        prada_delta: PRADA's alarm threshold on the Shapiro-Wilk ``W``.
        progress: called with a :class:`~copycat_tf.fakeset.LabelProgress` while buying.
        on_stage: called as ``on_stage(k, n, what)`` when stage ``k`` of ``n`` starts.
        fit_verbose: Keras ``fit`` verbosity.
        engine: where labeling runs (the attack's queries and the agreement set):
            ``"local"``, ``"ray"`` or a :class:`~copycat_tf.fakeset.ray_engine.RayEngine`.
        devices: GPUs of this machine to train each copycat on (``"all"``), see
            :func:`~copycat_tf.training.train_copycat`.

    Returns:
        An :class:`AuditResult`.

    Raises:
        CopycatError: bad arguments, a folder holding another audit, query sources too
            small for the largest budget.
    """

    budgets = parse_budgets(budgets)
    defence_names(defences)  # checked before anything is bought
    if strategy not in STRATEGIES:
        raise CopycatError(f"strategy must be one of {', '.join(STRATEGIES)}; received {strategy!r}")
    if price_per_1k is not None and not (price_per_1k >= 0 and np.isfinite(price_per_1k)):
        raise CopycatError(f"price per 1,000 queries must be a number >= 0; received {price_per_1k!r}")
    check_whole("eval_queries", eval_queries)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CopycatError(f"--out {out_dir} is a file; give a folder for the audit")
    train_config = train_config or TrainConfig(balance=DEFAULT_BALANCE[strategy], seed=seed)
    if train_config.seed != seed:
        raise CopycatError(f"conflicting settings: train_config.seed={train_config.seed!r} but seed={seed!r}; "
                           "give the same value to both")
    oracle = open_oracle(target, **(oracle_options or {}))
    test = None
    if test_data is not None:  # loaded first: a wrong spec should fail before any query is bought

        test = load_labelled(test_data, image_shape=oracle.contract.image_shape)
    benign = load_labelled(benign_data, image_shape=oracle.contract.image_shape) if benign_data else test
    chosen = build_defences(defences, num_classes=oracle.contract.num_classes, seed=seed,
                            taus=misinformation_taus, watermark_rate=watermark_rate)
    names = _row_names(chosen)

    cells = [(n, d) for n in budgets for d in chosen]
    total = 2 + len(cells) + (test is None) + detect
    stage = _Stages(total, on_stage)
    largest = budgets[-1]
    stage(f"buying {largest:,} queries once from {', '.join(map(str, queries))} "
          f"({strategy} strategy, full probabilities kept)")
    with open_engine(engine) as opened:  # one Ray engine for both purchases
        fakeset = collect(oracle, list(map(str, queries)), largest, out_dir / "fakeset", strategy=strategy,
                          labels="soft", seed=seed, resize=resize, batch_size=batch_size,
                          arch=train_config.arch, progress=progress, engine=opened)
        if not fakeset.complete:
            raise CopycatError(f"the fake dataset in {fakeset.directory} holds {fakeset.count} of {largest} "
                               "records; rerun to finish labeling")
        if fakeset.count < largest:
            raise CopycatError(
                f"the query sources ran out after {fakeset.count:,} images, short of the largest budget "
                f"{largest:,}; lower --budgets or give more --queries"
            )

        eval_set = None
        if test is None:
            eval_set = _buy_eval_set(oracle, queries, fakeset, out_dir, eval_queries, seed, resize,
                                     batch_size, progress, stage, opened)

    # The owner's own benign images, asked once: the honest answers label defences would change.
    benign_probabilities = owner_probabilities(oracle, benign.images) if benign is not None else None
    results = []
    for n, defence in cells:
        stage(f"{n:,} queries behind {names[defence.slug]} ({defence.description}): derive, train, evaluate")
        labels = "hard" if defence.label_only else "soft"
        cell_name = f"{n}-{defence.slug}"
        derived = derive(fakeset, out_dir / "fakesets" / cell_name, n, defence.attacker_view,
                         name=f"defence:{defence.derivation}", labels=labels)
        config = replace(train_config, labels=labels)  # what this defence lets the attacker see
        copycat = train_copycat(derived, out_dir / "copycats" / cell_name, config, fit_verbose=fit_verbose,
                                devices=devices)
        row = _cell(oracle, copycat, derived, fakeset, defence, n, test, eval_set, out_dir, cell_name, price_per_1k)
        results.append({**row, "defence": names[defence.slug], **owner_price(defence, benign, benign_probabilities)})

    detection_block = None
    if detect:
        stage(f"replaying PRADA detection (delta {prada_delta:g}) over the {fakeset.count:,} queries as bought")
        detection_block, prada_png = detection(fakeset, oracle, benign, strategy, prada_delta)
        atomic_write(out_dir / PRADA_PLOT, lambda handle: handle.write(prada_png))

    stage("writing the report")

    info = oracle.info()
    report = {
        "format": "copycat-tf.audit",
        "tool_version": __version__,
        "target": shown_url(str(target)) if is_url(target) else Path(target).name,
        "sha256": oracle.identity,
        "contract": oracle.contract.to_dict(),
        "model": {"producer": info.producer, "parameters": info.parameters, "metadata": dict(info.metadata)},
        "queries": [str(q) for q in queries],
        "strategy": strategy,
        "seed": seed,
        "arch": train_config.arch,
        "test_data": test_data,
        "metric": "performance_ratio" if test is not None and test.labels is not None else "agreement",
        "evaluation_images": len(test.images) if test is not None else (eval_set.count if eval_set else 0),
        "budgets": budgets,
        "defences": [{"name": names[d.slug], "description": d.description, "label_only": d.label_only,
                      "keeps_top1": d.keeps_top1, **({"parameters": d.parameters} if hasattr(d, "parameters") else {})}
                     for d in chosen],
        "queries_spent": fakeset.queries_spent,
        "eval_queries_spent": eval_set.queries_spent if eval_set is not None else 0,
        "price_per_1k": price_per_1k,
        "total_cost": None if price_per_1k is None else _cost(
            fakeset.queries_spent + (eval_set.queries_spent if eval_set is not None else 0), price_per_1k),
        "results": results,
        "detection": None if detection_block is None else {"prada": detection_block, "plot": PRADA_PLOT},
        "misinformation_sweep": sweep(fakeset, benign_probabilities, DEFAULT_TAUS)
        if any(isinstance(d, AdaptiveMisinformation) for d in chosen) else None,
        "benign_data": benign.name if benign is not None else None,
    }
    report["verdict"] = verdict(report)
    files = write_audit_report(report, out_dir)
    return AuditResult(out_dir, report, files, fakeset)


class _Stages:
    def __init__(self, total: int, callback):
        self.total, self.callback, self.number = total, callback, 0

    def __call__(self, what: str) -> None:
        self.number += 1
        log.info("audit: stage %d/%d: %s", self.number, self.total, what)
        if self.callback is not None:
            self.callback(self.number, self.total, what)


def _cost(queries: int, price_per_1k: float | None) -> float | None:
    return None if price_per_1k is None else round(queries / 1000 * price_per_1k, 6)


def _buy_eval_set(oracle, queries, fakeset, out_dir: Path, count: int, seed: int, resize: str,
                  batch_size: int, progress, stage, engine):
    """Fresh query images labelled by the target: the stream positions after the attack's."""

    start = int(fakeset.manifest["next_item"])
    stage(f"buying {count:,} fresh query images (stream positions {start:,} on) to measure agreement")
    source = open_query_source(list(map(str, queries)), oracle.contract.image_shape, seed=seed, resize=resize)
    view = source.select("audit-eval", np.arange(start, start + _EVAL_SPAN * count + 64))
    eval_set = label(oracle, view, count, out_dir / "eval" / f"from-{start}", labels="hard",
                     batch_size=batch_size, progress=progress, engine=engine)
    if eval_set.count == 0:
        raise CopycatError(
            "no query images are left after the attack's to measure agreement on; pass --test-data "
            "(labelled data), or give more --queries"
        )
    if eval_set.count < count:
        log.warning("audit: only %d fresh query images were left to measure agreement on", eval_set.count)
    return eval_set


def _eval_identity(test, eval_set) -> dict:
    if eval_set is not None:
        return {"eval_set": [s["sha256"] for s in eval_set.manifest["shards"]]}
    return {"test_data": test.name, "count": len(test.images)}


def _row_names(defences) -> dict[str, str]:
    """Each defence's name in the results: its plain name, or its setting (e.g.
    ``misinformation-tau0.3``) when several settings of one defence are measured."""
    counts = {}
    for d in defences:
        counts[d.name] = counts.get(d.name, 0) + 1
    return {d.slug: d.name if counts[d.name] == 1 else d.slug for d in defences}


def _cell(oracle, copycat, derived, fakeset, defence, n: int, test, eval_set, out_dir: Path,
          cell_name: str, price_per_1k) -> dict:
    """Score one (budget, defence) copycat, or read its cached scores."""

    key = {
        "copycat_sha256": file_sha256(copycat.onnx_path),
        "fakeset": [s["sha256"] for s in derived.manifest["shards"]],
        **_eval_identity(test, eval_set),
    }
    path = out_dir / "cells" / f"{cell_name}.json"
    cached = _read_cell(path)
    if cached is not None and cached.get("key") == key:
        scores = cached["scores"]
    else:
        copycat_oracle = OnnxOracle(copycat.onnx_path, providers=getattr(oracle, "providers", None))
        scores = _score(oracle, copycat_oracle, test, eval_set, n)
        scores["top1_kept"] = _top1_kept(fakeset, derived, n)
        if isinstance(defence, Watermark):
            scores.update(watermark_scores(defence, fakeset, n, copycat_oracle))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"format": CELL_FORMAT, "key": key, "scores": scores})
    return {
        "queries": n,
        **scores,
        "cost": _cost(n, price_per_1k),
        "labels": derived.manifest["config"]["labels"],
        "copycat": str(Path(copycat.onnx_path).relative_to(out_dir)) if Path(copycat.onnx_path).is_relative_to(out_dir)
        else str(copycat.onnx_path),
    }


def _read_cell(path: Path) -> dict | None:
    try:
        data = read_json(path)
    except UnreadableJson:
        return None  # a cell cut short by an interruption is computed again
    if not isinstance(data, dict) or data.get("format") != CELL_FORMAT or not isinstance(data.get("scores"), dict):
        return None
    return data


def _score(target, copycat_oracle, test, eval_set, n: int) -> dict:

    if test is not None:
        evaluation = evaluate(target, copycat_oracle, test, queries=n)
        return {
            "performance_ratio": evaluation.performance_ratio,
            "agreement": evaluation.agreement,
            "copycat_accuracy": evaluation.copycat.accuracy if evaluation.labelled else None,
            "target_accuracy": evaluation.target.accuracy if evaluation.labelled else None,
        }
    # The target's answers to the fresh images are stored: only the copycat is asked.
    target_labels, copycat_labels = [], []
    for shard in eval_set.iter_shards():
        target_labels.append(shard["labels"])
        for start in range(0, len(shard["images"]), 256):
            copycat_labels.append(copycat_oracle.query(shard["images"][start:start + 256]).labels)
    return {
        "performance_ratio": None,
        "agreement": agreement(np.concatenate(target_labels), np.concatenate(copycat_labels)),
        "copycat_accuracy": None,
        "target_accuracy": None,
    }


def _top1_kept(fakeset, derived, n: int) -> float:
    """Share of the ``n`` records whose label behind the defence is the target's own."""
    original = np.concatenate([s["labels"] for s in fakeset.iter_shards()])[:n]
    seen = np.concatenate([s["labels"] for s in derived.iter_shards()])
    return float(np.mean(original == seen))


