"""The whole attack in one resumable call: label -> train -> export -> evaluate.

:func:`steal` composes the stages; each one resumes or is skipped when its output in
``out_dir`` is already complete, so rerunning an interrupted steal buys no query twice
(beyond one unfinished shard) and retrains nothing that finished::

    OUT/fakeset/   the oracle's answers (copycat_tf.fakeset)
    OUT/copycat/   checkpoints, logs, copycat.keras, copycat.onnx (copycat_tf.training)
    OUT/report/    report.json, report.md, plots (copycat_tf.report), with --test-data

:func:`demo` trains (or reuses) a Fashion-MNIST target and steals it with the built-in
``photos`` queries.

Example:

>>> result = steal("target.onnx", ["./imagenet"], "runs/steal", budget=30_000,   # doctest: +SKIP
...                test_data="fashion-mnist:test")
>>> print(result.headline)                                                       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from copycat_tf.datasets import load_labelled
from copycat_tf.errors import CopycatError
from copycat_tf.evaluation import evaluate
from copycat_tf.oracle import OnnxOracle
from copycat_tf.report import headline, write_report
from copycat_tf.strategies import DEFAULT_BALANCE, STRATEGIES, collect, last_scout
from copycat_tf.training import TrainConfig, train_copycat, train_target

log = logging.getLogger(__name__)

DEMO_BUDGET = 20_000


@dataclass(frozen=True)
class StealResult:
    """What a steal produced.

    Attributes:
        fakeset: the :class:`~copycat_tf.fakeset.FakeSet`.
        copycat: the :class:`~copycat_tf.training.CopycatResult`.
        evaluation: the :class:`~copycat_tf.evaluation.Evaluation`, or ``None`` without test data.
        report_files: the report's files by kind (empty without test data).
        headline: the one-line result.
    """

    fakeset: object
    copycat: object
    evaluation: object | None
    report_files: dict
    headline: str


def steal(
    target: str | os.PathLike,
    queries: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    budget: int = 10_000,
    test_data: str | None = None,
    strategy: str = "balanced",
    train_config=None,
    labels: str = "hard",
    seed: int = 0,
    resize: str = "resize",
    batch_size: int = 64,
    oracle_options: dict | None = None,
    label_progress: Callable | None = None,
    evaluation_progress: Callable[[int, int], None] | None = None,
    fit_verbose: int = 0,
) -> StealResult:
    """Copy the ONNX model ``target`` through its answers to ``queries``.

    Args:
        target: the target ``.onnx`` file (queried through onnxruntime only).
        queries: query source specs (folders, list files, arrays, ``noise:uniform``,
            ``photos``, each with an optional ``:WEIGHT``).
        out_dir: the run's folder; rerun with the same arguments to resume.
        budget: queries to buy.
        test_data: labelled test data spec for the side-by-side report (optional).
        strategy: how queries are chosen (:mod:`copycat_tf.strategies`): ``"balanced"``
            (rounds of class-balanced, transformed queries) or ``"paper"`` (the papers'
            single pass).
        train_config: a :class:`~copycat_tf.training.TrainConfig` (default ``small_cnn``
            with its default epochs, see ``TrainConfig.resolved``, and the strategy's class
            balancing; ``labels`` is taken from ``labels``).
        labels: ``"hard"`` (the paper's threat model) or ``"soft"``.
        seed: seeds the queries and training.
        resize: how query images are fitted: ``resize``, ``center-crop`` or ``pad``.
        batch_size: images per oracle call.
        oracle_options: :class:`~copycat_tf.oracle.OnnxOracle` keyword arguments (contract
            overrides, providers).
        label_progress: passed to :func:`~copycat_tf.fakeset.label`.
        evaluation_progress: passed to :func:`~copycat_tf.evaluation.evaluate`.
        fit_verbose: Keras ``fit`` verbosity.
    """


    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CopycatError(f"--out {out_dir} is a file; give a folder for the run")
    if strategy not in STRATEGIES:
        raise CopycatError(f"strategy must be one of {', '.join(STRATEGIES)}; received {strategy!r}")
    train_config = train_config or TrainConfig(balance=DEFAULT_BALANCE[strategy])
    oracle = OnnxOracle(target, **(oracle_options or {}))
    log.info("stage 1/3: buying %d queries from %s (%s strategy)", budget, ", ".join(queries), strategy)
    fakeset = collect(oracle, list(queries), budget, out_dir / "fakeset", strategy=strategy,
                      labels=labels, seed=seed, resize=resize, batch_size=batch_size,
                      arch=train_config.arch, progress=label_progress)
    if not fakeset.complete:
        raise CopycatError(
            f"the fake dataset in {fakeset.directory} holds {fakeset.count} of {budget} records; "
            "rerun to finish labeling"
        )
    config = replace(train_config, labels=labels, seed=seed)
    log.info("stage 2/3: training the copycat (%s) on %d records", config.arch, fakeset.count)
    copycat = train_copycat(fakeset, out_dir / "copycat", config, initial_model=last_scout(fakeset.directory),
                            fit_verbose=fit_verbose)
    if test_data is None:
        agreement = copycat.validation_agreement
        headline = (
            f"copycat agrees with the target on {agreement:.1%} of held-out queries "
            f"({fakeset.queries_spent:,} queries); pass --test-data for accuracies"
            if agreement is not None
            else f"copycat trained on {fakeset.queries_spent:,} queries; pass --test-data to evaluate it"
        )
        return StealResult(fakeset, copycat, None, {}, headline)
    return _evaluate_stage(oracle, copycat, fakeset, test_data, out_dir, evaluation_progress)


def _evaluate_stage(target, copycat, fakeset, test_data, out_dir, progress) -> StealResult:

    log.info("stage 3/3: evaluating target and copycat on %s", test_data)
    test = load_labelled(test_data, image_shape=target.contract.image_shape)
    copycat_oracle = OnnxOracle(copycat.onnx_path, providers=target.providers)
    # The attack's cost is the fake dataset's count; test queries are not charged to it.
    evaluation = evaluate(target, copycat_oracle, test, queries=fakeset.queries_spent,
                          progress=progress)
    files = write_report(evaluation, out_dir / "report")
    return StealResult(fakeset, copycat, evaluation, files, headline(evaluation))


def demo(
    out_dir: str | os.PathLike = "runs/demo",
    *,
    budget: int = DEMO_BUDGET,
    queries: Sequence[str] = ("photos",),
    train_config=None,
    target_epochs: int | None = None,
    seed: int = 0,
    **steal_options,
) -> StealResult:
    """Train (or reuse) a Fashion-MNIST target in ``out_dir`` and steal it.

    Args:
        out_dir: the demo's folder: ``target.onnx`` (+ card) and the steal run.
        budget: queries to buy.
        queries: query source specs (default the built-in ``photos`` pool).
        train_config: the copycat's :class:`~copycat_tf.training.TrainConfig`.
        target_epochs: epochs for the target (default the architecture's).
        seed: seeds everything.
        **steal_options: passed to :func:`steal`.
    """

    out_dir = Path(out_dir)
    target = out_dir / "target.onnx"
    if target.is_file() and target.with_suffix(".json").is_file():
        log.info("reusing the target in %s", target)
    else:
        log.info("training a Fashion-MNIST target (small_cnn)")
        result = train_target("fashion-mnist", "small_cnn", target, epochs=target_epochs, seed=seed)
        log.info("target test accuracy %.4f", result.test_accuracy)
    return steal(target, list(queries), out_dir / "steal", budget=budget,
                 test_data="fashion-mnist:test", train_config=train_config, seed=seed,
                 **steal_options)
