"""``balanced`` (the default): the budget spent in rounds, chosen to reach the target's rare classes.

Queries are randomly transformed (:class:`~copycat_tf.queries.QueryTransforms`) so that a
narrow-domain target answers with more of its classes. After each round a *scout* copycat
is trained (:func:`~copycat_tf.training.scout.train_scout`, under the run's TrainConfig,
warm-started, a few epochs) on the answers so far; it scores a pool of fresh candidates ten
times the next round's size, and the round buys, for each class, the candidates the scout
rates most likely to be that class, with per-class quotas proportional to
``1 / sqrt(records of the class + 1)``: rare classes get more of the budget, common ones
still some. Nothing here looks at the target beyond its answers.

The fake dataset keeps, in ``DIR/rounds/``, each round's chosen stream positions and its
scout model, so an interrupted run resumes without buying any query twice (beyond one
unfinished shard) and without retraining a finished scout. Every record of the first ``N``
was chosen from answers to earlier records only, so any prefix of a balanced fake dataset
is itself an ``N``-query attack (which is what ``copycat-tf audit`` relies on).

Example:

>>> BalancedStrategy().schedule(10_000)
[2000, 4000, 6000, 8000, 10000]
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from copycat_tf.errors import CopycatError, check_positive_number, check_whole
from copycat_tf.execution import Execution
from copycat_tf.fakeset import FakeSet, label
from copycat_tf.fakeset.ray_engine import open_engine
from copycat_tf.files import UnreadableJson, read_json, write_json
from copycat_tf.queries import QuerySource, QueryTransforms
from copycat_tf.strategies.base import Collection, Strategy, register
from copycat_tf.training.scout import train_scout

log = logging.getLogger(__name__)

ROUNDS_FOLDER = "rounds"
SELECTION_FORMAT = "copycat-tf.selection"


@register
@dataclass(frozen=True)
class BalancedStrategy(Strategy):
    """Rounds of class-balanced, transformed queries chosen by scouts; the defaults need no
    tuning per target.

    Args:
        rounds: rounds the budget is split into (default :meth:`default_rounds`).
        pool_factor: candidates scored per query bought in a round.
        scout_epochs: epochs a scout trains after each round (default 3, 2 from 20,000
            queries on: more records per epoch).
        scout_learning_rate: the scouts' learning rate.
        transforms: the :class:`~copycat_tf.queries.QueryTransforms` applied to candidates.

    Example:

    >>> BalancedStrategy(rounds=3).schedule(10)
    [3, 7, 10]
    >>> BalancedStrategy(pool_factor=0)
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: pool-factor must be a whole number >= 1; received 0
    """

    name = "balanced"
    copycat_balance = "sqrt-weights"

    rounds: int | None = None
    pool_factor: int = 10
    scout_epochs: int | None = None
    scout_learning_rate: float = 1e-3
    transforms: QueryTransforms = field(default_factory=QueryTransforms)

    def __post_init__(self):
        for name in ("rounds", "pool_factor", "scout_epochs"):
            check_whole(name, getattr(self, name), optional=True)
        check_positive_number("scout_learning_rate", self.scout_learning_rate)

    @staticmethod
    def default_rounds(budget: int) -> int:
        """``2 + floor(log2(budget / 1000))``, between 2 and 8: 5 rounds at 10,000 queries."""
        return max(2, min(8, 2 + int(math.log2(max(budget, 1000) / 1000))))

    def schedule(self, budget: int) -> list[int]:
        """Records in the fake dataset at the end of each round (cumulative, ends at ``budget``)."""
        rounds = min(self.rounds or self.default_rounds(budget), budget)
        return [round(budget * (r + 1) / rounds) for r in range(rounds)]

    def epochs_per_scout(self, budget: int) -> int:
        return self.scout_epochs or (3 if budget < 20_000 else 2)

    def collect(self, oracle, queries, budget, out_dir, *, config, execution=None) -> Collection:
        check_whole("budget", budget)
        execution = execution or Execution()
        source = queries.open(oracle.contract.image_shape, config.seed, transforms=self.transforms)
        with open_engine(execution.engine) as opened:  # one Ray engine for every round
            rounds = _Rounds(self, oracle, source, budget, Path(out_dir), config, batch_size=queries.batch_size,
                             scoring_batch=queries.batch_size_for(source.image_shape),
                             execution=replace(execution, engine=opened))
            fakeset = rounds.run()
        return Collection(fakeset, rounds.last_scout())

    def to_record(self) -> dict:
        given = {name: getattr(self, name) for name in ("rounds", "pool_factor", "scout_epochs",
                                                        "scout_learning_rate")}
        defaults = BalancedStrategy()
        changed = {name: value for name, value in given.items() if value != getattr(defaults, name)}
        return {"name": self.name, **changed}

    def __repr__(self) -> str:
        return f"BalancedStrategy({', '.join(f'{k}={v!r}' for k, v in self.to_record().items() if k != 'name')})"


@dataclass(frozen=True)
class Selection:
    """One round's choice: the candidate stretch ``[start, stop)`` scored, the positions bought."""

    start: int
    stop: int
    positions: np.ndarray


class _Rounds:
    """One balanced collection: label a round, train a scout, select the next round, repeat.

    Each of these steps reports its own progress (labeling towards the round's own target,
    a scout's epochs, candidates scored), so that an estimate made from one step's rate is
    never stretched over the others: a scout and its scoring take as long as labeling does.
    """

    def __init__(self, strategy: BalancedStrategy, oracle, source: QuerySource, budget: int, out_dir: Path,
                 config, *, batch_size: int | None, scoring_batch: int, execution: Execution):
        self.strategy, self.oracle, self.source, self.budget = strategy, oracle, source, budget
        self.out_dir, self.config, self.batch_size, self.execution = out_dir, config, batch_size, execution
        self.scoring_batch = scoring_batch
        self.state_dir = out_dir / ROUNDS_FOLDER
        self.schedule = strategy.schedule(budget)

    def run(self) -> FakeSet:
        selections: list[np.ndarray] = []
        fakeset = self._label(None, self.schedule[0])
        pool_start = fakeset.next_item
        for number, target in enumerate(self.schedule[1:], start=1):
            selection = self._read_selection(number)
            if selection is None:
                if fakeset.count >= target:
                    # A finished dataset extended with a larger budget: earlier rounds are
                    # already bought, so a missing selection here means another run's folder.
                    raise CopycatError(
                        f"{self.out_dir} holds {fakeset.count} records but no record of round "
                        f"{number}'s selection; pass --overwrite to start again"
                    )
                scout = self._scout(number - 1, fakeset)
                selection = self._select(number, scout, fakeset, pool_start, target - fakeset.count)
            selections.append(selection.positions)
            pool_start = selection.stop
            fakeset = self._label(np.concatenate(selections), target)
        return fakeset

    def last_scout(self) -> Path | None:
        """The last scout this run trained (the copycat's natural starting point), if any."""
        scouts = sorted(self.state_dir.glob("scout-[0-9][0-9].keras"))
        return scouts[-1] if scouts else None

    def _label(self, positions, budget: int) -> FakeSet:
        view = self.source.select("balanced", positions)
        return label(self.oracle, view, budget, self.out_dir, labels=self.config.labels, batch_size=self.batch_size,
                     execution=Execution(engine=self.execution.engine, label_progress=self.execution.label_progress))

    def _scout_path(self, number: int) -> Path:
        return self.state_dir / f"scout-{number:02d}.keras"

    def _scout(self, number: int, fakeset: FakeSet):
        """The scout trained after round ``number`` (loaded when already on disk)."""
        path, previous = self._scout_path(number), self._scout_path(number - 1)
        epochs = self.strategy.epochs_per_scout(self.budget)
        what = f"round {number + 2}/{len(self.schedule)} scout"
        if not path.is_file():
            self.execution.step(what, 0, epochs, "epoch")
            log.info("round %d/%d: training a scout (%s) on %d records for %d epochs", number + 2,
                     len(self.schedule), self.config.arch, fakeset.count, epochs)
        return train_scout(fakeset, path, replace(self.config, seed=self.config.seed + number), epochs=epochs,
                           learning_rate=self.strategy.scout_learning_rate,
                           start_from=previous if number > 0 and previous.is_file() else None,
                           devices=self.execution.devices,
                           progress=lambda done: self.execution.step(what, done, epochs, "epoch"))

    def _selection_path(self, number: int) -> Path:
        return self.state_dir / f"selection-{number:02d}.json"

    def _read_selection(self, number: int) -> Selection | None:
        path = self._selection_path(number)
        try:
            data = read_json(path)
            if data is None:
                return None
            if not isinstance(data, dict) or data.get("format") != SELECTION_FORMAT:
                raise ValueError("not a copycat-tf selection")
            return Selection(int(data["start"]), int(data["stop"]), np.asarray(data["positions"], np.int64))
        except (UnreadableJson, ValueError, KeyError, TypeError) as exc:
            raise CopycatError(f"{path} is unreadable ({exc}); pass --overwrite to start again") from exc

    def _select(self, number: int, scout, fakeset: FakeSet, start: int, wanted: int) -> Selection:
        pool = wanted * self.strategy.pool_factor
        what = f"round {number + 1}/{len(self.schedule)} scoring"
        self.execution.step(what, 0, pool, "img")
        log.info("round %d/%d: scoring %d candidates to choose %d queries", number + 1,
                 len(self.schedule), pool, wanted)
        positions, scores, stop = _score_candidates(self.source, scout, start, pool, self.scoring_batch,
                                                    progress=lambda done: self.execution.step(what, done, pool, "img"))
        rng = np.random.default_rng([self.config.seed, 7, number])
        chosen = choose_by_class(scores, fakeset.label_histogram, wanted, rng)
        selection = Selection(start, stop, positions[chosen])
        self.state_dir.mkdir(exist_ok=True)
        write_json(self._selection_path(number), {"format": SELECTION_FORMAT, "round": number, "start": start,
                                                  "stop": stop, "positions": selection.positions.tolist()})
        return selection


def _score_candidates(source: QuerySource, scout, start: int, pool: int, chunk: int, progress=None):
    """The scout's class probabilities for the accepted items of ``[start, start + pool)``,
    ``chunk`` images held and scored at a time (the query batch: bounded by the input's size);
    ``progress`` is called with the stream positions gone through after each scored chunk."""
    positions, scores, images = [], [], []

    def flush():
        if images:
            batch = np.stack(images).astype(np.float32)
            scores.append(np.asarray(scout.predict_on_batch(batch)))
            images.clear()
            if progress is not None:
                progress(min(stop - start, pool))

    stop = start
    stream = source.queries(start)
    try:
        for query in stream:
            stop = query.position + 1
            if query.image is not None:
                positions.append(query.position)
                images.append(query.image)
                if len(images) == chunk:
                    flush()
            if stop >= start + pool:
                break
    finally:
        stream.close()
    flush()
    if not positions:
        hint = source.used_up_hint()
        raise CopycatError("the query sources are used up: no candidates left for the next round"
                           + (f"; {hint}" if hint else ""))
    return np.asarray(positions, np.int64), np.concatenate(scores), stop


def choose_by_class(scores: np.ndarray, histogram, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``wanted`` candidates, favouring classes the fake dataset lacks.

    Per-class quotas are drawn with probabilities proportional to ``1 / sqrt(n_c + 1)``;
    rarest class first, each takes its quota of the free candidates the scout gives the
    highest probability of that class.

    Args:
        scores: ``(candidates, classes)`` scout probabilities.
        histogram: records per class so far.
        wanted: how many to choose (at most the number of candidates).
        rng: draws the quotas.

    Example:

    >>> scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.7, 0.3]])
    >>> sorted(choose_by_class(scores, [1000, 0], 2, np.random.default_rng(0)).tolist())
    [2, 3]
    """
    counts = np.asarray(histogram, np.float64)
    share = 1.0 / np.sqrt(counts + 1.0)
    quotas = rng.multinomial(min(wanted, len(scores)), share / share.sum())
    taken = np.zeros(len(scores), bool)
    for cls in np.argsort(counts, kind="stable"):
        order = np.argsort(-scores[:, cls], kind="stable")
        free = order[~taken[order]][: quotas[cls]]
        taken[free] = True
    return np.flatnonzero(taken)
