"""The whole attack in one resumable call: label -> train -> export -> evaluate.

:func:`steal` composes the stages; each one resumes or is skipped when its output in
``out_dir`` is already complete, so rerunning an interrupted steal buys no query twice
(beyond one unfinished shard) and retrains nothing that finished::

    OUT/fakeset/   the oracle's answers (copycat_tf.fakeset)
    OUT/copycat/   checkpoints, logs, copycat.keras, copycat.onnx (copycat_tf.training)
    OUT/report/    report.json, report.md, plots (copycat_tf.report), with --test-data
    OUT/eval/      the same files for --eval-data (any images; agreement without labels)
    OUT/steal.json the run's arguments, target sha256 and tool version (a rerun must match)

:func:`demo` trains (or reuses) a Fashion-MNIST target and steals it with the built-in
``photos`` queries.

Usage::

    result = steal("target.onnx", ["./imagenet"], "runs/steal", budget=30_000,
                   test_data="fashion-mnist:test")
    print(result.headline)
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from copycat_tf._version import __version__
from copycat_tf.datasets import load_labelled
from copycat_tf.errors import CopycatError
from copycat_tf.evaluation import evaluate
from copycat_tf.fakeset.ray_engine import RayEngine
from copycat_tf.files import OutputFolder, read_state, write_json
from copycat_tf.oracle import OnnxOracle, is_url, open_oracle
from copycat_tf.oracle.http.endpoint import shown_url
from copycat_tf.report import headline, held_out_line, write_report
from copycat_tf.strategies import DEFAULT_BALANCE, DEFAULT_STRATEGY, STRATEGIES, collect, last_scout
from copycat_tf.training import TrainConfig, train_copycat, train_target

log = logging.getLogger(__name__)

STEAL_BUDGET = 10_000
DEMO_BUDGET = 20_000
#: What a steal folder records about its run (``OUT/steal.json``): a rerun must match it.
RUN_RECORD = "steal.json"
RUN_FORMAT = "copycat-tf.steal"
RUN_VERSION = 1


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
    target: str | os.PathLike,
    queries: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    budget: int = STEAL_BUDGET,
    test_data: str | None = None,
    eval_data: str | None = None,
    strategy: str = DEFAULT_STRATEGY,
    train_config: TrainConfig | None = None,
    labels: str = "hard",
    seed: int = 0,
    resize: str = "resize",
    batch_size: int = 64,
    overwrite: bool = False,
    price_per_1k: float | None = None,
    oracle_options: dict | None = None,
    label_progress: Callable | None = None,
    evaluation_progress: Callable[[int, int], None] | None = None,
    fit_verbose: int = 0,
    engine: str | RayEngine = "local",
    devices: int | str | None = None,
) -> StealResult:
    """Copy the ONNX model ``target`` through its answers to ``queries``.

    The attack in four lines: the oracle answers queries chosen by a strategy, its answers
    become a fake dataset, a copycat learns them, and both models are compared.

    Args:
        target: the target ``.onnx`` file (queried through onnxruntime only).
        queries: query source specs (folders, list files, arrays, ``noise:uniform``,
            ``photos``, each with an optional ``:WEIGHT``).
        out_dir: the run's folder; rerun with the same arguments to resume.
        budget: queries to buy.
        test_data: labelled test data spec for the side-by-side report (optional).
        eval_data: any images to measure the copy on (optional): a folder (flat, or of class
            subfolders), a ``.npz`` with ``x`` (and ``y``) or a named split. Agreement always,
            accuracies when labelled; its report goes to ``OUT/eval`` and its line joins the
            headline. Vendor models rarely come with labelled data: this needs none.
        strategy: how queries are chosen (:mod:`copycat_tf.strategies`): ``"balanced"``
            (rounds of class-balanced, transformed queries) or ``"paper"`` (the papers'
            single pass).
        train_config: a :class:`~copycat_tf.training.TrainConfig` (default ``small_cnn``
            with its default epochs and the strategy's class balancing); its ``labels`` and
            ``seed`` must be those given here.
        labels: ``"hard"`` (the paper's threat model) or ``"soft"``.
        seed: seeds the queries and training.
        resize: how query images are fitted: ``resize``, ``center-crop`` or ``pad``.
        batch_size: images per oracle call.
        overwrite: delete an earlier run's files in ``out_dir`` (only those) and start again.
        price_per_1k: price of 1,000 queries: the progress and the result say what was spent.
        oracle_options: :class:`~copycat_tf.oracle.OnnxOracle` keyword arguments (contract
            overrides, providers).
        label_progress: passed to :func:`~copycat_tf.fakeset.label`.
        evaluation_progress: passed to :func:`~copycat_tf.evaluation.evaluate`.
        fit_verbose: Keras ``fit`` verbosity.
        engine: where labeling runs: ``"local"``, ``"ray"`` or a
            :class:`~copycat_tf.fakeset.ray_engine.RayEngine`; not part of the run's record,
            so a run started on one engine resumes on another.
        devices: GPUs of this machine to train the copycat on (``"all"``), see
            :func:`~copycat_tf.training.train_copycat`; not part of the run's record either.

    Raises:
        CopycatError: bad arguments, a folder holding someone else's files or a steal run
            with other arguments, or anything a stage refuses.
    """
    if strategy not in STRATEGIES:
        raise CopycatError(f"strategy must be one of {', '.join(STRATEGIES)}; received {strategy!r}")
    train_config = _checked_config(train_config, strategy, labels, seed)
    out_dir = Path(out_dir)
    if price_per_1k is not None and not (isinstance(price_per_1k, (int, float)) and 0 <= price_per_1k < float("inf")):
        raise CopycatError(f"price-per-1k must be a number >= 0; received {price_per_1k!r}")
    oracle = open_oracle(target, **(oracle_options or {}))
    oracle.price_per_1k = price_per_1k
    run = {"format": RUN_FORMAT, "format_version": RUN_VERSION, "tool_version": __version__,
           "target": {"file": _shown(target), "sha256": oracle.identity},
           "queries": [str(q) for q in queries], "strategy": strategy, "budget": budget,
           "labels": labels, "seed": seed, "resize": resize, "test_data": test_data, "price_per_1k": price_per_1k,
           "eval_data": eval_data, "copycat": train_config.to_dict()}
    # Loaded and checked before any query is bought: a wrong spec fails at no cost.
    held_out = None if eval_data is None else load_labelled(eval_data, image_shape=oracle.contract.image_shape)
    if held_out is not None and held_out.image_shape != oracle.contract.image_shape:
        raise CopycatError(
            f"eval data {eval_data}: images are {'x'.join(map(str, held_out.image_shape))}, the target takes "
            f"{'x'.join(map(str, oracle.contract.image_shape))}; give images at the target's size "
            "(folders of image files are fitted automatically)"
        )
    _claim_run_folder(out_dir, run, overwrite)

    log.info("stage 1/3: buying %d queries from %s (%s strategy)", budget, ", ".join(queries), strategy)
    fakeset = collect(oracle, list(queries), budget, out_dir / "fakeset", strategy=strategy,
                      labels=labels, seed=seed, resize=resize, batch_size=batch_size,
                      arch=train_config.arch, progress=label_progress, engine=engine)
    if not fakeset.complete:
        raise CopycatError(
            f"the fake dataset in {fakeset.directory} holds {fakeset.count} of {budget} records; "
            "rerun to finish labeling"
        )
    log.info("stage 2/3: training the copycat (%s) on %d records", train_config.arch, fakeset.count)
    copycat = train_copycat(fakeset, out_dir / "copycat", train_config, devices=devices,
                            initial_model=last_scout(fakeset.directory), fit_verbose=fit_verbose)
    copycat_oracle = OnnxOracle(copycat.onnx_path, providers=getattr(oracle, "providers", None))
    # The attack's cost is the fake dataset's count; test queries are not charged to it.
    compare = functools.partial(evaluate, oracle, copycat_oracle, queries=fakeset.queries_spent,
                                progress=evaluation_progress)
    eval_evaluation, eval_files = None, {}
    if held_out is not None:
        log.info("evaluating target and copycat on %s", eval_data)
        eval_evaluation = compare(held_out)
        eval_files = write_report(eval_evaluation, out_dir / "eval", provenance=run)
    also = f"; {held_out_line(eval_evaluation)}" if eval_evaluation is not None else ""
    if test_data is None:
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

    log.info("stage 3/3: evaluating target and copycat on %s", test_data)
    evaluation = compare(load_labelled(test_data, image_shape=oracle.contract.image_shape))
    files = write_report(evaluation, out_dir / "report", provenance=run)
    return StealResult(fakeset, copycat, evaluation, files, headline(evaluation) + also, run,
                       eval_evaluation, eval_files)


def _shown(target) -> str:
    """How a run record names its target: a file's name, or a URL without its query string."""
    return shown_url(str(target)) if is_url(target) else Path(target).name


def _checked_config(train_config: TrainConfig | None, strategy: str, labels: str, seed: int) -> TrainConfig:
    """The copycat's config: the default one, or the caller's if it agrees with ``labels`` and ``seed``."""
    if train_config is None:
        return TrainConfig(balance=DEFAULT_BALANCE[strategy], labels=labels, seed=seed)
    conflicts = [f"train_config.{name}={getattr(train_config, name)!r} but {name}={value!r}"
                 for name, value in (("labels", labels), ("seed", seed)) if getattr(train_config, name) != value]
    if conflicts:
        raise CopycatError(f"conflicting settings: {'; '.join(conflicts)}; give the same value to both")
    return train_config


def _claim_run_folder(out_dir: Path, run: dict, overwrite: bool) -> None:
    """One rule for a steal folder: new, ours with the same arguments, or refused."""
    folder = OutputFolder(out_dir, "steal run", files=(RUN_RECORD,),
                          folders=("fakeset", "copycat", "report", "eval"))
    folder.check_not_file()
    fix = "rerun with the same arguments to resume, or pass --overwrite to start again"
    stored = None if overwrite else read_state(out_dir / RUN_RECORD, RUN_FORMAT, RUN_VERSION, fix=fix)
    if stored is not None:
        # Held-out images only measure the copy: adding them to a finished run is no other run.
        differences = _differences(stored, run, skip=("tool_version", "target", "eval_data"))
        if stored["target"]["sha256"] != run["target"]["sha256"]:
            differences.insert(0, f"target sha256 {stored['target']['sha256'][:12]}... vs now "
                                  f"{run['target']['sha256'][:12]}...")
        if differences:
            raise CopycatError(f"output folder {out_dir} holds a steal run made with other arguments "
                               f"({'; '.join(differences)}); {fix}")
    folder.claim(overwrite=overwrite, holds_run=stored is not None)
    write_json(out_dir / RUN_RECORD, run)


def _differences(old: dict, new: dict, *, skip=(), prefix: str = "") -> list[str]:
    """``"name old vs now new"`` for each setting that differs, nested ones by dotted name."""
    lines = []
    for key, value in new.items():
        before = old.get(key)
        if key in skip or before == value:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            lines += _differences(before, value, prefix=f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key} {before!r} vs now {value!r}")
    return lines


def demo(
    out_dir: str | os.PathLike = "runs/demo",
    *,
    budget: int = DEMO_BUDGET,
    queries: Sequence[str] = ("photos",),
    target_epochs: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    **steal_options,
) -> StealResult:
    """Train (or reuse) a Fashion-MNIST target in ``out_dir`` and steal it.

    Args:
        out_dir: the demo's folder: ``target.onnx`` (+ card) and the steal run in ``steal/``.
        budget: queries to buy.
        queries: query source specs (default the built-in ``photos`` pool).
        target_epochs: epochs for the target (default the architecture's).
        seed: seeds everything.
        overwrite: delete an earlier demo's files in ``out_dir`` (only those) and start again.
        **steal_options: passed to :func:`steal`.
    """
    out_dir = Path(out_dir)
    folder = OutputFolder(out_dir, "demo", files=("target.onnx", "target.json"), folders=("steal",))
    target = out_dir / "target.onnx"
    folder.claim(overwrite=overwrite, holds_run=target.is_file())
    if target.is_file() and target.with_suffix(".json").is_file():
        log.info("reusing the target in %s", target)
    else:
        log.info("training a Fashion-MNIST target (small_cnn)")
        train_target("fashion-mnist", "small_cnn", target, epochs=target_epochs, seed=seed)  # logs its accuracy
    return steal(target, list(queries), out_dir / "steal", budget=budget, test_data="fashion-mnist:test",
                 seed=seed, **steal_options)
