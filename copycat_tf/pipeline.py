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

:func:`demo` trains (or reuses, when its card records the same settings) a Fashion-MNIST
target and steals it with the built-in ``photos`` queries.

Usage::

    result = steal("target.onnx", ["./imagenet"], "runs/steal", budget=30_000,
                   measure=Measurement(test_data="fashion-mnist:test"))
    print(result.headline)
    result = steal(TargetSpec("http://127.0.0.1:8080/v2/models/fer", price_per_1k=1.5),
                   QuerySpec(("photos",), batch_size=32), "runs/fer",
                   strategy=BalancedStrategy(rounds=3), train_config=TrainConfig(arch="vgg16", seed=1))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from copycat_tf.attack import Attack, Measurement, SpendPlan
from copycat_tf.errors import CopycatError
from copycat_tf.evaluation import evaluate
from copycat_tf.execution import Execution, Stages
from copycat_tf.files import OutputFolder, UnreadableJson, read_json
from copycat_tf.oracle import TargetSpec
from copycat_tf.oracle.answer_cache import AnswerCache
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.report import headline, held_out_line, write_report
from copycat_tf.run_folder import RunFolder
from copycat_tf.strategies import DEFAULT_STRATEGY, Strategy, strategy_named
from copycat_tf.training import TrainConfig, target_settings, train_target

STEAL_BUDGET = 10_000
DEMO_BUDGET = 20_000
#: What a steal folder records about its run (``OUT/steal.json``): a rerun must match it.
RUN_RECORD = "steal.json"
RUN_FORMAT = "copycat-tf.steal"
RUN_VERSION = 2
#: The target's answers to evaluation images (bought once per run).
TARGET_ANSWERS = "target-answers.npz"
#: What the demo's target is trained on, and as.
DEMO_TARGET_DATA = "fashion-mnist"
DEMO_TARGET_ARCH = "small_cnn"
#: The options that set a demo target's settings, by card field (the others are the architecture's).
TARGET_OPTIONS = {"epochs": "--target-epochs", "seed": "--seed"}


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
    return _steal(attack, Path(out_dir), budget, measure,
                  Stages(steal_stages(measure), attack.execution.on_stage))


def steal_stages(measure: Measurement) -> int:
    """Stages :func:`steal` announces: buying, training, and one evaluation per image set.

    >>> steal_stages(Measurement(test_data="fashion-mnist:test"))
    3
    """
    return 2 + (measure.test_data is not None) + (measure.eval_data is not None)


def _steal(attack: Attack, out_dir: Path, budget: int, measure: Measurement, stage: Stages) -> StealResult:
    strategy = attack.strategy
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

    stage(f"buying {budget} queries from {', '.join(attack.queries.sources)} ({strategy.name} strategy)")
    collection = attack.collect(oracle, budget, resume)
    fakeset = collection.fakeset
    stage(f"training the copycat ({attack.config.arch}) on {fakeset.count} records")
    copycat = attack.train(fakeset, out_dir / "copycat", start_model=collection.start_model)
    copycat_oracle = attack.copycat_oracle(copycat)

    answers = AnswerCache(oracle, out_dir / TARGET_ANSWERS)

    def compare(images):
        # The attack's cost is the fake dataset's count; evaluation images are not charged to it.
        return evaluate(answers, copycat_oracle, images, queries=fakeset.queries_spent,
                        progress=attack.execution.evaluation_progress)

    eval_evaluation, eval_files = None, {}
    if held_out is not None:
        stage(f"evaluating target and copycat on {measure.eval_data}")
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

    stage(f"evaluating target and copycat on {measure.test_data}")
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
        execution: as for :func:`steal`; ``overwrite`` starts the steal run again, and
            retrains the target only if its settings (dataset, architecture, epochs, batch,
            learning rate, seed, as ``target.json`` records them) changed: a changed
            ``budget`` buys and trains again, on the same target.

    Raises:
        CopycatError: as for :func:`steal`, or a target in ``out_dir`` trained with other
            settings, without ``overwrite``.
    """
    execution = execution or Execution()
    strategy = strategy_named(strategy)
    train_config = train_config or TrainConfig(balance=strategy.copycat_balance)
    out_dir = Path(out_dir)
    target = out_dir / "target.onnx"
    # With --overwrite the demo writes beside anything there, as every command does; it is
    # the steal run that starts again, and the target only when its own settings changed.
    OutputFolder(out_dir, "demo", files=("target.onnx", "target.json"), folders=("steal",)).claim(
        overwrite=False, holds_run=target.is_file() or execution.overwrite)
    target_config = TrainConfig(arch=DEMO_TARGET_ARCH, epochs=target_epochs, seed=train_config.seed)
    wanted = target_settings(DEMO_TARGET_DATA, target_config)
    differences = _differences(_card(target), wanted)
    measure = Measurement(test_data=f"{DEMO_TARGET_DATA}:test")
    stage = Stages(1 + steal_stages(measure), execution.on_stage)
    if target.is_file() and differences == []:
        stage(f"reusing the target in {target} (trained with the same settings)")
    elif target.is_file() and differences and not execution.overwrite:
        raise CopycatError(f"{target} was trained with {', '.join(differences)}; pass --overwrite to train it "
                           "again (and steal it again), or the options it was trained with")
    else:
        epochs = wanted["epochs"]
        stage(f"training a Fashion-MNIST target ({DEMO_TARGET_ARCH}, {epochs} epoch{'' if epochs == 1 else 's'})")
        train_target(DEMO_TARGET_DATA, target, target_config)  # logs each epoch and its accuracy
    attack = Attack(TargetSpec.of(target), QuerySpec.of(queries), strategy, train_config, execution)
    return _steal(attack, out_dir / "steal", budget, measure, stage)


def _card(target: Path) -> dict | None:
    """The target's card (``target.json``), or ``None`` when missing or unreadable (it is retrained)."""
    try:
        card = read_json(target.with_suffix(".json"))
    except UnreadableJson:
        return None
    return card if isinstance(card, dict) else None


def _differences(card: dict | None, wanted: dict) -> list[str] | None:
    """How a card's settings differ from ``wanted`` (``[]``: none), or ``None`` without a card.

    >>> _differences({"epochs": 1, "seed": 0, "arch": "small_cnn"}, {"epochs": 4, "seed": 0, "arch": "small_cnn"})
    ['epochs 1, not 4 (--target-epochs)']
    """
    if card is None:
        return None
    return [f"{name} {card.get(name)}, not {value}" + (f" ({TARGET_OPTIONS[name]})" if name in TARGET_OPTIONS else "")
            for name, value in wanted.items() if card.get(name) != value]
