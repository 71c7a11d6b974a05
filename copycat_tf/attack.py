"""The attack wired once: target -> strategy -> fake dataset -> copycat, for ``steal`` and ``audit``.

:class:`Attack` holds what every run of the attack needs (the target, the queries, the
strategy, the copycat's :class:`~copycat_tf.training.TrainConfig` and how to execute) and
does the steps both commands share: say what will be bought before anything is, open the
target with that total as its budget (reusing a resumed run's contract, so nothing is
probed twice), collect the fake dataset, train a copycat, and open a copycat as an oracle.

Usage::

    attack = Attack(TargetSpec("target.onnx"), QuerySpec(("photos",)), strategy_named("balanced"),
                    TrainConfig(seed=1))
    oracle = attack.open_target(10_000, resume_from="runs/steal/fakeset")
    attack.commit(oracle, SpendPlan(10_000, evaluation_images=10_000), "this steal")
    collection = attack.collect(oracle, 10_000, "runs/steal/fakeset")
    copycat = attack.train(collection.fakeset, "runs/steal/copycat", start_model=collection.start_model)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from copycat_tf.datasets import load_labelled
from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.execution import Execution
from copycat_tf.fakeset import FakeSet, stored_contract
from copycat_tf.models.pretrained import ensure_weights
from copycat_tf.oracle import OnnxOracle, Oracle, TargetSpec
from copycat_tf.oracle.http.oracle import PROBE_IMAGES
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.strategies import Collection, Strategy
from copycat_tf.training import CopycatResult, TrainConfig, train_copycat, unlabelled_seed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """What a copy is measured on, besides the fake dataset's own hold-out.

    Args:
        test_data: labelled test data (``fashion-mnist:test``, a ``.npz`` with ``x``/``y``,
            a folder of class subfolders): accuracies and the performance ratio.
        eval_data: any images, labelled or not (a folder, a ``.npz`` with ``x``): agreement
            with the target where no labelled data exists. Keep them out of every query pool.
    """

    test_data: str | None = None
    eval_data: str | None = None

    def load(self, image_shape) -> tuple:
        """``(test, held_out)`` :class:`~copycat_tf.datasets.LabelledImages` at ``image_shape``
        (``None`` where not given), checked before any query is bought.

        Raises:
            CopycatError: a spec that does not load, or images of another size.
        """
        loaded = []
        for what, spec in (("test data", self.test_data), ("eval data", self.eval_data)):
            images = None if spec is None else load_labelled(spec, image_shape=image_shape)
            if images is not None and images.image_shape != tuple(image_shape):
                raise CopycatError(
                    f"{what} {spec}: images are {'x'.join(map(str, images.image_shape))}, the target takes "
                    f"{'x'.join(map(str, image_shape))}; give images at the target's size "
                    "(folders of image files are fitted automatically)"
                )
            loaded.append(images)
        return tuple(loaded)


@dataclass(frozen=True)
class SpendPlan:
    """What a run may buy from its target, said before the first query.

    Args:
        attack_queries: the attack's budget (probes of a remote target come out of it).
        evaluation_images: labelled or held-out images the target answers to compare the copy.
        eval_queries: fresh query images bought to measure agreement (``audit``).
        probes: most images a remote target may be probed with to learn its contract.
        price_per_1k: what 1,000 answers cost, or ``None``.

    Example:

    >>> SpendPlan(0, evaluation_images=300).describe()
    'at most 300 images: 300 evaluation images'
    >>> plan = SpendPlan(10_000, evaluation_images=500, probes=2, price_per_1k=1.5)
    >>> print(plan.describe())
    at most 10,500 images: 10,000 attack queries (up to 2 probe images among them), 500 evaluation images;
    15.75 at 1.5 per 1,000
    """

    attack_queries: int
    evaluation_images: int = 0
    eval_queries: int = 0
    probes: int = 0
    price_per_1k: float | None = None

    @property
    def total(self) -> int:
        return self.attack_queries + self.evaluation_images + self.eval_queries

    def announce(self, what: str, target: str) -> None:
        """Log, before the first query, what ``what`` will buy at most from ``target``."""
        log.info("%s will buy %s from %s", what, self.describe(), target)

    def describe(self) -> str:
        parts = [f"{self.attack_queries:,} attack queries"
                 + (f" (up to {self.probes} probe images among them)" if self.probes else "")] \
            if self.attack_queries else []
        if self.evaluation_images:
            parts.append(f"{self.evaluation_images:,} evaluation images")
        if self.eval_queries:
            parts.append(f"{self.eval_queries:,} fresh queries to measure agreement")
        text = f"at most {self.total:,} images: {', '.join(parts)}"
        if self.price_per_1k is not None:
            text += f"; {self.total / 1000 * self.price_per_1k:,.2f} at {self.price_per_1k:g} per 1,000"
        return text


@dataclass(frozen=True)
class Attack:
    """One Copycat CNN attack, set up once and run by ``steal`` or ``audit``.

    Args:
        target: the :class:`~copycat_tf.oracle.TargetSpec` (file or URL).
        queries: the :class:`~copycat_tf.queries.QuerySpec`.
        strategy: the :class:`~copycat_tf.strategies.Strategy` that spends the budget.
        config: the copycat's :class:`~copycat_tf.training.TrainConfig`, the one place for
            its labels, seed and architecture (the seed also seeds the queries).
        execution: :class:`Execution` (how, not what).
    """

    target: TargetSpec
    queries: QuerySpec
    strategy: Strategy
    config: TrainConfig
    execution: Execution = field(default_factory=Execution)

    def record(self) -> dict:
        """What a run records about its attack (compared on a rerun); the target's sha256 too,
        read without opening it (nothing is bought before the run's folder is claimed)."""
        return {"target": {"file": self.target.shown, "sha256": self.target.identity()},
                "target_options": self.target.to_record(), "queries": list(self.queries.sources),
                "resize": self.queries.resize, "strategy": self.strategy.name,
                "strategy_parameters": self.strategy.to_record(), "labels": self.config.labels,
                "seed": self.config.seed, "copycat": self.config.to_dict(), "price_per_1k": self.target.price_per_1k}

    def open_target(self, budget: int, *, resume_from: str | os.PathLike | None = None) -> Oracle:
        """The target as an oracle that may be charged ``budget`` images until :meth:`commit`
        sets the run's whole plan.

        A remote target resumed from the fake dataset ``resume_from`` reuses the contract it
        was labelled under: nothing is probed again. Otherwise it may be probed with up to
        :data:`~copycat_tf.oracle.http.oracle.PROBE_IMAGES` images, out of ``budget``.
        """
        check_whole("budget", budget)
        # Weights that cannot be had fail now, not after the queries are bought.
        ensure_weights(self.config.arch, self.config.weights)
        contract = None if resume_from is None else stored_contract(resume_from)
        if self.target.is_remote and contract is None:
            log.info("opening %s: up to %d probe images, counted in the budget of %d", self.target.shown,
                     PROBE_IMAGES, budget)
        return self.target.open(budget=budget, contract=contract)

    def commit(self, oracle: Oracle, plan: SpendPlan, what: str) -> None:
        """Say, before the first query of the run, what ``what`` will buy at most, and hold the
        oracle to it: it refuses to be charged past ``plan.total``."""
        plan.announce(what, self.target.shown)
        oracle.budget = plan.total

    def collect(self, oracle: Oracle, budget: int, out_dir: str | os.PathLike, *,
                labels: str | None = None) -> Collection:
        """Spend ``budget`` queries with the strategy; the fake dataset keeps ``labels``
        (default the config's).

        Raises:
            CopycatError: labeling stopped before the budget (rerun to finish).
        """
        config = self.config if labels is None else replace(self.config, labels=labels)
        spent_before = oracle.queries_spent
        collection = self.strategy.collect(oracle, self.queries, budget, out_dir, config=config,
                                           execution=self.execution)
        if not collection.fakeset.complete:
            raise CopycatError(f"the fake dataset in {collection.fakeset.directory} holds "
                               f"{collection.fakeset.count} of {budget} records; rerun to finish labeling")
        if oracle.queries_spent == spent_before:
            log.info("fake dataset complete: %s records for %s queries, reused", f"{collection.fakeset.count:,}",
                     f"{collection.fakeset.queries_spent:,}")
        return collection

    def train(self, fakeset: FakeSet, out_dir: str | os.PathLike, *, config: TrainConfig | None = None,
              start_model: Path | None = None) -> CopycatResult:
        """Train (or reuse) a copycat on ``fakeset`` and export it to ONNX.

        With ``config.semi_supervised`` its unlabelled images are further images of the same
        query sources, drawn under another seed (:func:`~copycat_tf.training.unlabelled_seed`)
        and never sent to the target.
        """
        config = config or self.config
        unlabelled = (self.queries.open(fakeset.image_shape, unlabelled_seed(config.seed))
                      if config.semi_supervised else None)
        # A copycat run is claimed by the run's folder: its own overwrite stays off.
        return train_copycat(fakeset, out_dir, config, initial_model=start_model,
                             execution=replace(self.execution, overwrite=False), unlabelled=unlabelled)

    def copycat_oracle(self, copycat: CopycatResult) -> OnnxOracle:
        """The exported copycat as an oracle, on the target's execution providers."""
        return OnnxOracle(copycat.onnx_path, providers=list(self.target.providers) if self.target.providers else None)
