"""The whole attack in one resumable call: label -> train -> export -> evaluate.

:func:`steal` composes the stages; each one resumes or is skipped when its output in
``out_dir`` is already complete, so rerunning an interrupted steal buys no query twice
(beyond one unfinished shard) and retrains nothing that finished::

    OUT/fakeset/   the oracle's answers (copycat_tf.fakeset)
    OUT/copycat/   checkpoints, logs, copycat.keras, copycat.onnx (copycat_tf.training)
    OUT/report/    report.json, report.md, plots (copycat_tf.report), with --test-data
    OUT/eval/      the same files for --eval-data (any images; agreement without labels)
    OUT/target-answers.npz  the target's answers to those images (bought once: a rerun sends nothing)
    OUT/steal.json the run's arguments, target sha256 and tool version (a rerun must match)

:func:`demo` trains (or reuses) a Fashion-MNIST target and steals it with the built-in
``photos`` queries.

Usage::

    result = steal("target.onnx", ["./imagenet"], "runs/steal", budget=30_000,
                   measure=Measurement(test_data="fashion-mnist:test"))
    print(result.headline)
    result = steal(TargetSpec("http://127.0.0.1:8080/v2/models/fer", price_per_1k=1.5),
                   QuerySpec(("photos",), batch_size=32), "runs/fer",
                   strategy=BalancedStrategy(rounds=3), train_config=TrainConfig(arch="vgg16", seed=1))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from copycat_tf.attack import Attack, Measurement, SpendPlan
from copycat_tf.execution import Execution
from copycat_tf.datasets import load_labelled
from copycat_tf.errors import CopycatError
from copycat_tf.evaluation import evaluate
from copycat_tf.files import OutputFolder
from copycat_tf.oracle import TargetSpec
from copycat_tf.oracle.answer_cache import AnswerCache
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.report import headline, held_out_line, write_report
from copycat_tf.run_folder import RunFolder
from copycat_tf.strategies import DEFAULT_STRATEGY, Strategy, strategy_named
from copycat_tf.training import TrainConfig, train_target

log = logging.getLogger(__name__)

STEAL_BUDGET = 10_000
DEMO_BUDGET = 20_000
#: What a steal folder records about its run (``OUT/steal.json``): a rerun must match it.
RUN_RECORD = "steal.json"
RUN_FORMAT = "copycat-tf.steal"
RUN_VERSION = 2
#: The target's answers to evaluation images (bought once per run).
TARGET_ANSWERS = "target-answers.npz"


@dataclass(frozen=True)
class StealResult:
    """What a steal produced.

    Attributes:
        fakeset: the :class:`~copycat_tf.fakeset.FakeSet`.
        copycat: the :class:`~copycat_tf.training.CopycatResult`.
        evaluation: the :class:`~copycat_tf.evaluation.Evaluation`, or ``None`` without test data.
        report_files: the report's files by kind (empty without test data).
        headline: the one-line result.
        run: the run's record (``OUT/steal.json``): target sha256, queries, strategy, budget,
            seed, copycat settings and tool version.
        eval_evaluation: the :class:`~copycat_tf.evaluation.Evaluation` on ``eval_data``, or
            ``None`` without it.
        eval_report_files: its report's files by kind (empty without eval data).
    """

    fakeset: object
    copycat: object
    evaluation: object | None
    report_files: dict
    headline: str
    run: dict
    eval_evaluation: object | None = None
    eval_report_files: dict = field(default_factory=dict)


def steal(
    target: TargetSpec | str | os.PathLike,
    queries: QuerySpec | Sequence[str],
    out_dir: str | os.PathLike,
    *,
    budget: int = STEAL_BUDGET,
    strategy: Strategy | str = DEFAULT_STRATEGY,
    train_config: TrainConfig | None = None,
    measure: Measurement | None = None,
    execution: Execution | None = None,
) -> StealResult:
    """Copy ``target`` through its answers to ``queries``: collect -> train -> export -> evaluate.

    Args:
        target: a :class:`~copycat_tf.oracle.TargetSpec`, or an ONNX path or http(s) URL.
        queries: a :class:`~copycat_tf.queries.QuerySpec`, or query source spec strings.
        out_dir: the run's folder; rerun with the same arguments to resume.
        budget: queries to buy (a remote target's probe comes out of it).
        strategy: a :class:`~copycat_tf.strategies.Strategy` or its name (``"balanced"``,
            ``"paper"``).
        train_config: the copycat's :class:`~copycat_tf.training.TrainConfig`, the one place
            for labels (``"hard"``, the paper's threat model, or ``"soft"``), seed (which also
            seeds the queries) and architecture; default ``small_cnn`` with the strategy's
            class balancing.
        measure: what to measure the copy on (:class:`~copycat_tf.attack.Measurement`):
            labelled ``test_data`` for the side-by-side report, and/or any ``eval_data``
            images for agreement without labels (its report goes to ``OUT/eval``).
        execution: :class:`~copycat_tf.execution.Execution` (overwrite, engine, devices, progress).

    Raises:
        CopycatError: bad arguments, a folder holding someone else's files or a steal run
            with other arguments, or anything a stage refuses.
    """
    strategy = strategy_named(strategy)
    attack = Attack(TargetSpec.of(target), QuerySpec.of(queries), strategy,
                    train_config or TrainConfig(balance=strategy.copycat_balance), execution or Execution())
    measure = measure or Measurement()
    out_dir = Path(out_dir)
    run = {**attack.record(), "budget": budget, "test_data": measure.test_data, "eval_data": measure.eval_data}
    folder = RunFolder(out_dir, "steal run", RUN_RECORD, RUN_FORMAT, RUN_VERSION,
                       folders=("fakeset", "copycat", "report", "eval"), files=(TARGET_ANSWERS,),
                       free=("eval_data",))  # held-out images only measure the copy: no other run
    run = folder.claim(run, overwrite=attack.execution.overwrite)

    resume = out_dir / "fakeset"
    oracle = attack.open_target(budget, resume_from=resume)
    # Loaded and checked before any query is bought: a wrong spec fails at no cost.
    test, held_out = measure.load(oracle.contract.image_shape)
    evaluation_images = sum(len(images.images) for images in (test, held_out) if images is not None)
    attack.commit(oracle, SpendPlan(budget, evaluation_images=evaluation_images, probes=oracle.info().probe_queries,
                                    price_per_1k=oracle.price_per_1k),
                  "this steal")

    log.info("stage 1/3: buying %d queries from %s (%s strategy)", budget, ", ".join(attack.queries.sources),
             strategy.name)
    collection = attack.collect(oracle, budget, resume)
    fakeset = collection.fakeset
    log.info("stage 2/3: training the copycat (%s) on %d records", attack.config.arch, fakeset.count)
    copycat = attack.train(fakeset, out_dir / "copycat", start_model=collection.start_model)
    copycat_oracle = attack.copycat_oracle(copycat)

    answers = AnswerCache(oracle, out_dir / TARGET_ANSWERS)

    def compare(images):
        # The attack's cost is the fake dataset's count; evaluation images are not charged to it.
        return evaluate(answers, copycat_oracle, images, queries=fakeset.queries_spent,
                        progress=attack.execution.evaluation_progress)

    eval_evaluation, eval_files = None, {}
    if held_out is not None:
        log.info("evaluating target and copycat on %s", measure.eval_data)
        eval_evaluation = compare(held_out)
        eval_files = write_report(eval_evaluation, out_dir / "eval", provenance=run)
    also = f"; {held_out_line(eval_evaluation)}" if eval_evaluation is not None else ""
    if test is None:
        agreement = copycat.validation_agreement
        headline_text = (
            f"copycat agrees with the target on {agreement:.1%} of held-out queries "
            f"({fakeset.queries_spent:,} queries)"
            if agreement is not None
            else f"copycat trained on {fakeset.queries_spent:,} queries"
        )
        if not also:
            headline_text += ("; pass --test-data for accuracies" if agreement is not None
                              else "; pass --test-data to evaluate it")
        return StealResult(fakeset, copycat, None, {}, headline_text + also, run, eval_evaluation, eval_files)

    log.info("stage 3/3: evaluating target and copycat on %s", measure.test_data)
    evaluation = compare(test)
    files = write_report(evaluation, out_dir / "report", provenance=run)
    return StealResult(fakeset, copycat, evaluation, files, headline(evaluation) + also, run,
                       eval_evaluation, eval_files)


def demo(
    out_dir: str | os.PathLike = "runs/demo",
    *,
    budget: int = DEMO_BUDGET,
    queries: QuerySpec | Sequence[str] = ("photos",),
    strategy: Strategy | str = DEFAULT_STRATEGY,
    train_config: TrainConfig | None = None,
    target_epochs: int | None = None,
    execution: Execution | None = None,
) -> StealResult:
    """Train (or reuse) a Fashion-MNIST target in ``out_dir`` and steal it.

    Args:
        out_dir: the demo's folder: ``target.onnx`` (+ card) and the steal run in ``steal/``.
        budget: queries to buy.
        queries: query sources (default the built-in ``photos`` pool).
        strategy: as for :func:`steal`.
        train_config: the copycat's, as for :func:`steal`; its seed seeds the target too.
        target_epochs: epochs for the target (default the architecture's).
        execution: as for :func:`steal`; ``overwrite`` deletes an earlier demo's files in
            ``out_dir`` (only those) and starts again.
    """
    execution = execution or Execution()
    strategy = strategy_named(strategy)
    train_config = train_config or TrainConfig(balance=strategy.copycat_balance)
    out_dir = Path(out_dir)
    folder = OutputFolder(out_dir, "demo", files=("target.onnx", "target.json"), folders=("steal",))
    target = out_dir / "target.onnx"
    folder.claim(overwrite=execution.overwrite, holds_run=target.is_file())
    if target.is_file() and target.with_suffix(".json").is_file():
        log.info("reusing the target in %s", target)
    else:
        log.info("training a Fashion-MNIST target (small_cnn)")
        train_target("fashion-mnist", target,  # logs its accuracy
                     TrainConfig(arch="small_cnn", epochs=target_epochs, seed=train_config.seed))
    return steal(target, queries, out_dir / "steal", budget=budget, strategy=strategy, train_config=train_config,
                 measure=Measurement(test_data="fashion-mnist:test"), execution=replace(execution, overwrite=False))
