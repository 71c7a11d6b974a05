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
    OUT/target-answers.npz     the target's answers to the test and benign images (bought once)
    OUT/audit-run.json         the arguments: a rerun must make the same purchase
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

    result = audit(TargetSpec("vendor.onnx", price_per_1k=1.5), ["./imagenet"], "runs/audit",
                   plan=AuditPlan(budgets=(1000, 5000)), test_data="fashion-mnist:test")
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
from copycat_tf.attack import Attack, SpendPlan
from copycat_tf.execution import Execution, Stages
from copycat_tf.audit.defences import DEFAULT_DEFENCES, build_defences, defence_names
from copycat_tf.audit.detection import DEFAULT_DELTA
from copycat_tf.audit.label_defences import DEFAULT_TAU, DEFAULT_TAUS, DEFAULT_WATERMARK_RATE
from copycat_tf.audit.owner_view import detection, owner_price, owner_probabilities, sweep
from copycat_tf.audit.report import write_audit_report
from copycat_tf.audit.verdict import verdict
from copycat_tf.audit.results import AuditRow
from copycat_tf.datasets import load_labelled
from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.evaluation import agreement, cohen_kappa, evaluate, per_class_agreement
from copycat_tf.fakeset import derive, label
from copycat_tf.fakeset.ray_engine import open_engine
from copycat_tf.files import UnreadableJson, atomic_write, file_sha256, read_json, write_json
from copycat_tf.oracle import TargetSpec
from copycat_tf.oracle.answer_cache import AnswerCache
from copycat_tf.queries.batch_memory import query_batch_size
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.run_folder import RunFolder
from copycat_tf.strategies import DEFAULT_STRATEGY, Strategy, strategy_named
from copycat_tf.training import TrainConfig

log = logging.getLogger(__name__)

DEFAULT_BUDGETS = (1000, 5000, 20000)
DEFAULT_EVAL_QUERIES = 1000
CELL_FORMAT = "copycat-tf.audit-cell"
#: Part of a cell's cache key: cells scored before per-class agreement and kappa (version 1)
#: are scored again (only the copycat is asked; the target's answers are stored).
CELL_SCORES_VERSION = 2
#: The record of an audit's arguments in its folder: a rerun must make the same purchase.
RUN_RECORD = "audit-run.json"
RUN_FORMAT = "copycat-tf.audit-run"
RUN_VERSION = 1
#: The target's answers to the owner's test and benign images (bought once per audit).
TARGET_ANSWERS = "target-answers.npz"
#: The report's files (:func:`~copycat_tf.audit.report.write_audit_report`).
REPORT_FILES = ("audit.json", "audit.md", "audit.html", "audit_curve.png")
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
        results: its rows as :class:`~copycat_tf.audit.results.AuditRow` records.
        files: the report's files by kind: ``json``, ``markdown``, ``html``, ``curve``.
        fakeset: the :class:`~copycat_tf.fakeset.FakeSet` of the queries bought.
    """

    out_dir: Path
    report: dict
    files: dict
    fakeset: object

    @property
    def results(self) -> list[AuditRow]:
        return [AuditRow.from_json(row) for row in self.report["results"]]

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


@dataclass(frozen=True)
class AuditPlan:
    """What an audit measures: budgets, defences, detection; checked before anything is bought.

    Args:
        budgets: query budgets (a comma list or whole numbers); only the largest is bought.
        defences: output policies (:func:`~copycat_tf.audit.defences.parse_defence` names)
            and label defences (``misinformation``, ``watermark``).
        misinformation_taus: a copycat is trained behind adaptive misinformation at each
            of these thresholds (the share of answers changed is reported for a wider sweep).
        watermark_rate: share of queries the simulated watermark answers falsely.
        eval_queries: fresh query images bought to measure agreement without test data
            (``0``: none; the copycats are then scored on their own hold-out only).
        benign_data: images an honest caller would send (default the test data): the price
            label defences make honest callers pay, and PRADA's control stream.
        detect: replay PRADA detection over the query stream as bought.
        prada_delta: PRADA's alarm threshold on the Shapiro-Wilk ``W``.

    Example:

    >>> AuditPlan(budgets="5000,1000").budgets
    (1000, 5000)
    """

    budgets: tuple[int, ...] | str = DEFAULT_BUDGETS
    defences: tuple[str, ...] | str = DEFAULT_DEFENCES
    misinformation_taus: tuple[float, ...] = (DEFAULT_TAU,)
    watermark_rate: float = DEFAULT_WATERMARK_RATE
    eval_queries: int = DEFAULT_EVAL_QUERIES
    benign_data: str | None = None
    detect: bool = True
    prada_delta: float = DEFAULT_DELTA

    def __post_init__(self):
        object.__setattr__(self, "budgets", tuple(parse_budgets(self.budgets)))
        object.__setattr__(self, "defences", tuple(defence_names(self.defences)))
        object.__setattr__(self, "misinformation_taus", tuple(float(t) for t in self.misinformation_taus))
        check_whole("eval_queries", self.eval_queries, minimum=0)

    @property
    def largest(self) -> int:
        return self.budgets[-1]

    def to_record(self) -> dict:
        return {"budgets": list(self.budgets), "defences": list(self.defences),
                "misinformation_taus": list(self.misinformation_taus), "watermark_rate": self.watermark_rate,
                "eval_queries": self.eval_queries, "benign_data": self.benign_data, "detect": self.detect,
                "prada_delta": self.prada_delta}


def audit(
    target: TargetSpec | str | os.PathLike,
    queries: QuerySpec | Sequence[str],
    out_dir: str | os.PathLike,
    *,
    plan: AuditPlan | None = None,
    strategy: Strategy | str = DEFAULT_STRATEGY,
    train_config: TrainConfig | None = None,
    test_data: str | None = None,
    execution: Execution | None = None,
) -> AuditResult:
    """Measure how well ``target`` can be copied at each budget behind each defence.

    The same attack as :func:`~copycat_tf.pipeline.steal` (:class:`~copycat_tf.attack.Attack`),
    bought once at the largest budget with full probabilities kept, then for each budget and
    defence: derive -> train -> evaluate.

    Args:
        target: a :class:`~copycat_tf.oracle.TargetSpec`, or an ONNX path or http(s) URL.
        queries: a :class:`~copycat_tf.queries.QuerySpec`, or query source spec strings.
        out_dir: the audit's folder; rerun with the same arguments to resume.
        plan: an :class:`AuditPlan` (budgets, defences, detection; default its defaults).
        strategy: a :class:`~copycat_tf.strategies.Strategy` or its name.
        train_config: the copycats' :class:`~copycat_tf.training.TrainConfig` (default
            ``small_cnn`` with the strategy's class balancing); its ``labels`` are set per
            defence (hard where only labels are shown).
        test_data: labelled (or unlabelled) test images: performance ratios (agreement when
            unlabelled). Without it, copycats are scored by agreement with the target on
            ``plan.eval_queries`` fresh query images.
        execution: :class:`~copycat_tf.execution.Execution` (overwrite, engine, devices, progress,
            ``on_stage``).

    Returns:
        An :class:`AuditResult`.

    Raises:
        CopycatError: bad arguments, a folder holding another audit, query sources too
            small for the largest budget.
    """
    plan = plan or AuditPlan()
    strategy = strategy_named(strategy)
    attack = Attack(TargetSpec.of(target), QuerySpec.of(queries), strategy,
                    train_config or TrainConfig(balance=strategy.copycat_balance), execution or Execution())
    out_dir = Path(out_dir)
    # What the purchase depends on must match on a rerun; what is measured on it may change.
    record = {**attack.record(), "purchase": plan.largest, "test_data": test_data, "measured": plan.to_record()}
    RunFolder(out_dir, "audit run", RUN_RECORD, RUN_FORMAT, RUN_VERSION,
              folders=("fakeset", "eval", "fakesets", "copycats", "cells"),
              files=(*REPORT_FILES, PRADA_PLOT, TARGET_ANSWERS),
              free=("measured", "test_data")).claim(record, overwrite=attack.execution.overwrite)

    purchase = out_dir / "fakeset"
    oracle = attack.open_target(plan.largest, resume_from=purchase)
    test = None if test_data is None else load_labelled(test_data, image_shape=oracle.contract.image_shape)
    benign = load_labelled(plan.benign_data, image_shape=oracle.contract.image_shape) if plan.benign_data else test
    chosen = build_defences(plan.defences, num_classes=oracle.contract.num_classes, seed=attack.config.seed,
                            taus=plan.misinformation_taus, watermark_rate=plan.watermark_rate)
    names = _row_names(chosen)
    eval_queries = plan.eval_queries if test is None else 0
    evaluation_images = sum(len(d.images) for d in {id(d): d for d in (test, benign) if d is not None}.values())
    attack.commit(oracle, SpendPlan(plan.largest, evaluation_images=evaluation_images, eval_queries=eval_queries,
                                    probes=oracle.info().probe_queries, price_per_1k=oracle.price_per_1k), "this audit")
    # The target's answers to the owner's test and benign images, bought once per audit.
    answers = AnswerCache(oracle, out_dir / TARGET_ANSWERS)

    cells = [(n, d) for n in plan.budgets for d in chosen]
    stage = Stages(2 + len(cells) + (eval_queries > 0) + plan.detect, attack.execution.on_stage, prefix="audit: ")
    stage(f"buying {plan.largest:,} queries once from {', '.join(attack.queries.sources)} "
          f"({strategy.name} strategy, full probabilities kept)")
    with open_engine(attack.execution.engine) as opened:  # one Ray engine for both purchases
        attack = replace(attack, execution=replace(attack.execution, engine=opened))
        fakeset = attack.collect(oracle, plan.largest, purchase, labels="soft").fakeset
        if fakeset.count < plan.largest and fakeset.exhausted:
            raise CopycatError(
                f"the query sources ran out after {fakeset.count:,} images, short of the largest budget "
                f"{plan.largest:,}; lower --budgets or give more --queries"
            )
        if fakeset.count < plan.largest:
            # A paid target's probe, or answers an interruption lost, came out of the budget.
            log.info("audit: %d of the %d queries bought became records (the rest: probes or answers "
                     "lost to an interruption, paid for all the same)", fakeset.count, plan.largest)
        eval_set = None
        if eval_queries:
            eval_set = _buy_eval_set(attack, oracle, fakeset, out_dir, eval_queries, stage)

    benign_probabilities = owner_probabilities(answers, benign.images) if benign is not None else None
    results = []
    for n, defence in cells:
        stage(f"{n:,} queries behind {names[defence.slug]} ({defence.description}): derive, train, evaluate")
        labels = "hard" if defence.label_only else "soft"
        cell_name = f"{n}-{defence.slug}"
        records = min(n, fakeset.count)  # a budget N attack: what its N queries bought
        derived = derive(fakeset, out_dir / "fakesets" / cell_name, records, defence.attacker_view,
                         name=f"defence:{defence.derivation}", labels=labels)
        # Copycats train from scratch on what this defence lets the attacker see.
        copycat = attack.train(derived, out_dir / "copycats" / cell_name,
                               config=replace(attack.config, labels=labels))
        row = _cell(attack, answers, copycat, derived, fakeset, defence, records, test, eval_set, out_dir, cell_name)
        results.append(AuditRow.from_json({**row, "queries": n, "cost": _cost(n, oracle.price_per_1k),
                                           "defence": names[defence.slug],
                                           **owner_price(defence, benign, benign_probabilities)}))

    detection_block = None
    if plan.detect:
        stage(f"replaying PRADA detection (delta {plan.prada_delta:g}) over the {fakeset.count:,} queries as bought")
        detection_block, prada_png = detection(fakeset, answers, benign, strategy.name, plan.prada_delta)
        atomic_write(out_dir / PRADA_PLOT, lambda handle: handle.write(prada_png))

    stage("writing the report")
    info = oracle.info()
    spent = Spent(fakeset.queries_spent, eval_set.queries_spent if eval_set is not None else 0, answers.bought)
    price = oracle.price_per_1k
    report = {
        "format": "copycat-tf.audit",
        "tool_version": __version__,
        "target": attack.target.shown,
        "sha256": oracle.identity,
        "contract": oracle.contract.to_dict(),
        "model": {"producer": info.producer, "parameters": info.parameters, "metadata": dict(info.metadata),
                  "channels": info.channels_text},
        "queries": list(attack.queries.sources),
        "strategy": strategy.name,
        "seed": attack.config.seed,
        "arch": attack.config.arch,
        # None: trained from scratch; "imagenet" or a weights file: a pretrained copycat.
        "weights": attack.config.weights,
        "test_data": test_data,
        "metric": "performance_ratio" if test is not None and test.labels is not None else "agreement",
        "evaluation_images": len(test.images) if test is not None else (eval_set.count if eval_set else 0),
        "budgets": list(plan.budgets),
        "defences": [{"name": names[d.slug], "description": d.description, "label_only": d.label_only,
                      "keeps_top1": d.keeps_top1, **({"parameters": d.parameters} if d.parameters else {})}
                     for d in chosen],
        "queries_spent": spent.attack,
        "eval_queries_spent": spent.eval_queries,
        "evaluation_images_spent": spent.evaluation_images,
        "total_queries_spent": spent.total,
        "price_per_1k": price,
        "total_cost": _cost(spent.total, price),
        "results": [row.to_json() for row in results],
        "detection": None if detection_block is None else {"prada": detection_block, "plot": PRADA_PLOT},
        "misinformation_sweep": sweep(fakeset, benign_probabilities, DEFAULT_TAUS)
        if "misinformation" in plan.defences else None,
        "benign_data": benign.name if benign is not None else None,
    }
    report["verdict"] = verdict(report)
    files = write_audit_report(report, out_dir)
    return AuditResult(out_dir, report, files, fakeset)


@dataclass(frozen=True)
class Spent:
    """Images the target answered for an audit, in every run together, by purpose."""

    attack: int
    eval_queries: int
    evaluation_images: int

    @property
    def total(self) -> int:
        return self.attack + self.eval_queries + self.evaluation_images


def _cost(queries: int, price_per_1k: float | None) -> float | None:
    return None if price_per_1k is None else round(queries / 1000 * price_per_1k, 6)


def _buy_eval_set(attack: Attack, oracle, fakeset, out_dir: Path, count: int, stage):
    """Fresh query images labelled by the target: the stream positions after the attack's."""

    start = fakeset.next_item
    stage(f"buying {count:,} fresh query images (stream positions {start:,} on) to measure agreement")
    source = attack.queries.open(oracle.contract.image_shape, attack.config.seed)
    view = source.select("audit-eval", np.arange(start, start + _EVAL_SPAN * count + 64))
    eval_set = label(oracle, view, count, out_dir / "eval" / f"from-{start}", labels="hard",
                     batch_size=attack.queries.batch_size, execution=replace(attack.execution, overwrite=False))
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
        return {"eval_set": eval_set.shard_sha256s}
    return {"test_data": test.name, "count": len(test.images)}


def _row_names(defences) -> dict[str, str]:
    """Each defence's name in the results: its plain name, or its setting (e.g.
    ``misinformation-tau0.3``) when several settings of one defence are measured."""
    counts = {}
    for d in defences:
        counts[d.name] = counts.get(d.name, 0) + 1
    return {d.slug: d.name if counts[d.name] == 1 else d.slug for d in defences}


def _cell(attack: Attack, target, copycat, derived, fakeset, defence, n: int, test, eval_set, out_dir: Path,
          cell_name: str) -> dict:
    """``AuditRow`` fields of one (budget, defence) copycat: its scores, computed or read back."""
    return {**_scores(attack, target, copycat, derived, fakeset, defence, n, test, eval_set, out_dir, cell_name),
            "labels": derived.labels,
            "copycat": str(Path(copycat.onnx_path).relative_to(out_dir))
            if Path(copycat.onnx_path).is_relative_to(out_dir) else str(copycat.onnx_path)}


def _scores(attack: Attack, target, copycat, derived, fakeset, defence, n: int, test, eval_set, out_dir: Path,
            cell_name: str) -> dict:
    """Score one (budget, defence) copycat, or read its cached scores."""

    key = {
        "scores_version": CELL_SCORES_VERSION,
        "copycat_sha256": file_sha256(copycat.onnx_path),
        "fakeset": derived.shard_sha256s,
        **_eval_identity(test, eval_set),
    }
    path = out_dir / "cells" / f"{cell_name}.json"
    cached = _read_cell(path)
    if cached is not None and cached.get("key") == key:
        scores = cached["scores"]
    else:
        copycat_oracle = attack.copycat_oracle(copycat)
        scores = _score(target, copycat_oracle, test, eval_set, n)
        scores["top1_kept"] = _top1_kept(fakeset, derived, n)
        scores.update(defence.copy_evidence(fakeset, n, copycat_oracle))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"format": CELL_FORMAT, "key": key, "scores": scores})
    return scores


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
            "per_class_agreement": evaluation.per_class_agreement,
            "kappa": evaluation.kappa,
            "copycat_accuracy": evaluation.copycat.accuracy if evaluation.labelled else None,
            "target_accuracy": evaluation.target.accuracy if evaluation.labelled else None,
        }
    # The target's answers to the fresh images are stored: only the copycat is asked.
    target_labels, copycat_labels = [], []
    batch = query_batch_size(copycat_oracle.contract.image_shape)
    for shard in eval_set.iter_shards():
        target_labels.append(shard["labels"])
        for start in range(0, len(shard["images"]), batch):
            copycat_labels.append(copycat_oracle.query(shard["images"][start:start + batch]).labels)
    target_labels, copycat_labels = np.concatenate(target_labels), np.concatenate(copycat_labels)
    return {
        "performance_ratio": None,
        "agreement": agreement(target_labels, copycat_labels),
        "per_class_agreement": per_class_agreement(target_labels, copycat_labels),
        "kappa": cohen_kappa(target_labels, copycat_labels),
        "copycat_accuracy": None,
        "target_accuracy": None,
    }


def _top1_kept(fakeset, derived, n: int) -> float:
    """Share of the ``n`` records whose label behind the defence is the target's own."""
    original = np.concatenate([s["labels"] for s in fakeset.iter_shards()])[:n]
    seen = np.concatenate([s["labels"] for s in derived.iter_shards()])
    return float(np.mean(original == seen))


