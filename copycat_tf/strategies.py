"""How the query budget is spent: which images go to the oracle, and in what order.

Two strategies fill a fake dataset (:func:`collect`):

``paper``
    The Copycat CNN papers' method (and ART's ``CopycatCNN``): the whole budget goes to
    the query source's images as they come, in one pass.

``balanced`` (the default)
    The budget is spent in rounds. Queries are randomly transformed
    (:class:`~copycat_tf.queries.QueryTransforms`) so that a narrow-domain target answers
    with more of its classes. After each round a *scout* copycat is trained (warm-started,
    a few epochs) on the answers so far; it scores a pool of fresh candidates ten times the
    next round's size, and the round buys, for each class, the candidates the scout rates
    most likely to be that class, with per-class quotas proportional to
    ``1 / sqrt(records of the class + 1)``: rare classes get more of the budget, common ones
    still some. Nothing here looks at the target beyond its answers.

Both write the same fake dataset format (:mod:`copycat_tf.fakeset`); ``balanced`` also
keeps, in ``DIR/rounds/``, each round's chosen stream positions and its scout model, so an
interrupted run resumes without buying any query twice (beyond one unfinished shard) and
without retraining a finished scout. Every record of the first ``N`` was chosen from
answers to earlier records only, so any prefix of a balanced fake dataset is itself an
``N``-query attack (which is what ``copycat-tf audit`` relies on).

Usage::

    oracle = OnnxOracle("target.onnx")
    fakeset = collect(oracle, ["photos"], 10_000, "runs/fake")
    fakeset = collect(oracle, ["./imagenet"], 10_000, "runs/paper", strategy="paper")
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.fakeset import FakeSet, LabelProgress, label
from copycat_tf.fakeset.ray_engine import RayEngine, open_engine
from copycat_tf.files import UnreadableJson, read_json, write_json
from copycat_tf.models import build
from copycat_tf.oracle import Oracle
from copycat_tf.queries import QuerySource, QueryTransforms, open_query_source
from copycat_tf.training.data import make_training_data

log = logging.getLogger(__name__)

STRATEGIES = ("balanced", "paper")
DEFAULT_STRATEGY = "balanced"
#: The copycat's class balancing that goes with each strategy, unless asked otherwise.
DEFAULT_BALANCE = {"balanced": "sqrt-weights", "paper": "none"}
ROUNDS_FOLDER = "rounds"
_SELECTION_FORMAT = "copycat-tf.selection"


@dataclass(frozen=True)
class BalancedRounds:
    """The ``balanced`` strategy's knobs; the defaults need no tuning per target.

    Args:
        rounds: rounds the budget is split into (default :meth:`default_rounds`).
        pool_factor: candidates scored per query bought in a round.
        scout_epochs: epochs a scout trains after each round (default 3, 2 from 20,000
            queries on: more records per epoch).
        scout_learning_rate: the scouts' Adam learning rate.
        transforms: the :class:`~copycat_tf.queries.QueryTransforms` applied to candidates.

    Example:

    >>> BalancedRounds().schedule(10_000)
    [2000, 4000, 6000, 8000, 10000]
    """

    rounds: int | None = None
    pool_factor: int = 10
    scout_epochs: int | None = None
    scout_learning_rate: float = 1e-3
    transforms: QueryTransforms = field(default_factory=QueryTransforms)

    def __post_init__(self):
        for name in ("rounds", "pool_factor", "scout_epochs"):
            check_whole(name, getattr(self, name), optional=True)

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


def collect(
    oracle: Oracle,
    queries: QuerySource | str | Sequence[str],
    budget: int,
    out_dir: str | os.PathLike,
    *,
    strategy: str = DEFAULT_STRATEGY,
    labels: str = "hard",
    seed: int = 0,
    resize: str = "resize",
    batch_size: int = 64,
    arch: str = "small_cnn",
    rounds: BalancedRounds | None = None,
    overwrite: bool = False,
    progress: Callable[[LabelProgress], None] | None = None,
    engine: str | RayEngine = "local",
) -> FakeSet:
    """Spend ``budget`` queries on the oracle with ``strategy`` and return the fake dataset.

    Args:
        oracle: the target (an :class:`~copycat_tf.oracle.Oracle`).
        queries: query source specs (or an open :class:`~copycat_tf.queries.QuerySource`
            for ``paper``).
        budget: records wanted.
        out_dir: the fake dataset's folder; rerun with the same arguments to resume.
        strategy: ``"balanced"`` or ``"paper"``.
        labels: ``"hard"`` or ``"soft"`` (kept in the fake dataset; scouts train on what
            is kept).
        seed: seeds the queries, the transforms, the scouts and the quotas.
        resize: how query images are fitted (``resize``, ``center-crop``, ``pad``).
        batch_size: images per oracle call.
        arch: the scouts' architecture (``balanced``; use the copycat's).
        rounds: :class:`BalancedRounds` knobs (``balanced``).
        overwrite: start over, deleting only this tool's files in ``out_dir``.
        progress: called with a :class:`~copycat_tf.fakeset.LabelProgress` as records come in.
        engine: where labeling runs: ``"local"``, ``"ray"`` or a
            :class:`~copycat_tf.fakeset.ray_engine.RayEngine` (one for every round).

    Raises:
        CopycatError: an unknown strategy, bad arguments, or a folder holding another run.
    """
    if strategy not in STRATEGIES:
        raise CopycatError(f"strategy must be one of {', '.join(STRATEGIES)}; received {strategy!r}")
    check_whole("budget", budget)
    if strategy == "paper":
        if rounds is not None:
            raise CopycatError("rounds belong to the balanced strategy, not to paper")
        if isinstance(queries, QuerySource):
            return label(oracle, queries, budget, out_dir, labels=labels, batch_size=batch_size,
                         overwrite=overwrite, progress=progress, engine=engine)
        return label(oracle, queries, budget, out_dir, labels=labels, seed=seed, resize=resize,
                     batch_size=batch_size, overwrite=overwrite, progress=progress, engine=engine)
    if isinstance(queries, QuerySource):
        raise CopycatError("the balanced strategy opens its own query source; pass spec strings")
    rounds = rounds or BalancedRounds()
    source = open_query_source(queries, oracle.contract.image_shape, seed=seed, resize=resize,
                               transforms=rounds.transforms)
    with open_engine(engine) as opened:  # one Ray engine for every round
        return _BalancedRun(oracle, source, budget, Path(out_dir), rounds, labels=labels, seed=seed,
                            batch_size=batch_size, arch=arch, overwrite=overwrite, progress=progress,
                            engine=opened).run()


def last_scout(out_dir: str | os.PathLike) -> Path | None:
    """The last scout a ``balanced`` run left in fake dataset ``out_dir`` (the copycat's
    natural starting point), or ``None`` (a ``paper`` run)."""
    scouts = sorted((Path(out_dir) / ROUNDS_FOLDER).glob("scout-[0-9][0-9].keras"))
    return scouts[-1] if scouts else None


@dataclass(frozen=True)
class _Selection:
    """One round's choice: the candidate stretch ``[start, stop)`` scored, the positions bought."""

    start: int
    stop: int
    positions: np.ndarray


class _BalancedRun:
    def __init__(self, oracle, source: QuerySource, budget: int, out_dir: Path, rounds: BalancedRounds,
                 *, labels, seed, batch_size, arch, overwrite, progress, engine="local"):
        self.oracle, self.source, self.budget, self.out_dir = oracle, source, budget, out_dir
        self.rounds, self.labels, self.seed = rounds, labels, seed
        self.batch_size, self.arch, self.overwrite, self.progress = batch_size, arch, overwrite, progress
        self.engine = engine
        self.state_dir = out_dir / ROUNDS_FOLDER
        self.schedule = rounds.schedule(budget)
        if progress is not None:
            # Each round labels towards its own target; the caller follows the whole budget.
            self.progress = lambda report: progress(replace(report, budget=budget))

    def run(self) -> FakeSet:
        if self.overwrite:
            self._remove_own_files()
        selections: list[np.ndarray] = []
        fakeset = self._label(None, self.schedule[0], overwrite=self.overwrite)
        pool_start = fakeset.manifest["next_item"]
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

    # -- labeling ----------------------------------------------------------------------

    def _label(self, positions, budget: int, overwrite: bool = False) -> FakeSet:
        view = self.source.select("balanced", positions)
        return label(self.oracle, view, budget, self.out_dir, labels=self.labels,
                     batch_size=self.batch_size, overwrite=overwrite, progress=self.progress,
                     engine=self.engine)

    # -- scouts ------------------------------------------------------------------------

    def _scout_path(self, number: int) -> Path:
        return self.state_dir / f"scout-{number:02d}.keras"

    def _scout(self, number: int, fakeset: FakeSet):
        """The scout trained after round ``number`` (loaded when already on disk)."""
        import keras

        from copycat_tf.training.callbacks import save_model_atomically

        path = self._scout_path(number)
        if path.is_file():
            return keras.models.load_model(path, safe_mode=True)
        previous = self._scout_path(number - 1)
        keras.utils.set_random_seed(self.seed + number)
        model = (keras.models.load_model(previous, safe_mode=True) if number > 0 and previous.is_file()
                 else build(self.arch, fakeset.image_shape, fakeset.num_classes))
        soft = self.labels == "soft"
        model.compile(
            optimizer=keras.optimizers.Adam(self.rounds.scout_learning_rate),
            loss=keras.losses.CategoricalCrossentropy() if soft else keras.losses.SparseCategoricalCrossentropy(),
        )
        data = make_training_data(fakeset, batch_size=128, labels=self.labels, balance="sqrt-weights",
                                  validation_fraction=0.0, seed=self.seed + number)
        epochs = self.rounds.epochs_per_scout(self.budget)
        log.info("round %d/%d: training a scout (%s) on %d records for %d epochs", number + 1,
                 len(self.schedule), self.arch, fakeset.count, epochs)
        model.fit(data.train, epochs=epochs, shuffle=False, verbose=0)  # the dataset shuffles itself
        self.state_dir.mkdir(exist_ok=True)
        save_model_atomically(model, path)
        return model

    # -- selection ---------------------------------------------------------------------

    def _selection_path(self, number: int) -> Path:
        return self.state_dir / f"selection-{number:02d}.json"

    def _read_selection(self, number: int) -> _Selection | None:
        path = self._selection_path(number)
        try:
            data = read_json(path)
            if data is None:
                return None
            if not isinstance(data, dict) or data.get("format") != _SELECTION_FORMAT:
                raise ValueError("not a copycat-tf selection")
            return _Selection(int(data["start"]), int(data["stop"]), np.asarray(data["positions"], np.int64))
        except (UnreadableJson, ValueError, KeyError, TypeError) as exc:
            raise CopycatError(f"{path} is unreadable ({exc}); pass --overwrite to start again") from exc

    def _select(self, number: int, scout, fakeset: FakeSet, start: int, wanted: int) -> _Selection:
        pool = wanted * self.rounds.pool_factor
        log.info("round %d/%d: scoring %d candidates to choose %d queries", number + 1,
                 len(self.schedule), pool, wanted)
        positions, scores, stop = _score_candidates(self.source, scout, start, pool)
        rng = np.random.default_rng([self.seed, 7, number])
        chosen = choose_by_class(scores, fakeset.label_histogram, wanted, rng)
        selection = _Selection(start, stop, positions[chosen])
        self.state_dir.mkdir(exist_ok=True)
        write_json(self._selection_path(number), {"format": _SELECTION_FORMAT, "round": number, "start": start,
                                                  "stop": stop, "positions": selection.positions.tolist()})
        return selection

    def _remove_own_files(self) -> None:
        if not self.state_dir.is_dir():
            return
        for path in self.state_dir.iterdir():
            if path.name.startswith(("scout-", "selection-")) and path.is_file():
                path.unlink()
        if not any(self.state_dir.iterdir()):
            self.state_dir.rmdir()


def _score_candidates(source: QuerySource, scout, start: int, pool: int, chunk: int = 1024):
    """The scout's class probabilities for the accepted items of ``[start, start + pool)``."""
    positions, scores, images = [], [], []

    def flush():
        if images:
            batch = np.stack(images).astype(np.float32)
            scores.append(np.asarray(scout.predict_on_batch(batch)))
            images.clear()

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
        raise CopycatError("the query sources are used up: no candidates left for the next round")
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
