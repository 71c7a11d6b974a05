"""Would the model's owner have noticed the attack? PRADA replayed over a stored query stream.

PRADA (Juuti, Szyller, Marchal, Asokan, "PRADA: Protecting Against DNN Model Stealing
Attacks", IEEE EuroS&P 2019, https://arxiv.org/abs/1805.02628) watches one client's queries
in the order they arrive. Its premise: the distances between a benign client's natural
queries are roughly normally distributed, while an extraction attack's synthetic or
derived queries (perturbations, many views of one image) give a distribution with a spike
of small distances, far from normal. Per class ``c`` predicted by the model it keeps:

- a *growing set* ``G_c`` of past queries, and ``D_G_c`` the distances they joined with;
- a threshold ``T_c`` (0 at first).

For each new query ``x`` predicted as ``c``:

1. the first query of a class joins ``G_c`` (its joining distance counts as 0) and gives
   no distance;
2. any later one gives ``d_min``, its smallest L2 distance to the members of ``G_c``
   (in the model's input space), added to the pool ``D`` of distances;
3. ``x`` joins ``G_c`` when ``d_min > T_c``; then ``T_c = max(T_c, mean(D_G_c) - std(D_G_c))``
   (population standard deviation);
4. after every tenth query (query indices 0, 10, 20, ...), the distances of the classes that
   have given at least 10 are pooled, the pool's outliers further than 3 standard deviations
   from its mean are dropped, and once more than 100 remain the Shapiro-Wilk statistic ``W``
   of the pool is computed; the attack is flagged while ``W < delta``.

These details (the 0 in ``D_G_c``, "classes with at least 10 distances", the check after
query indices 0, 10, 20, ..., the strict ``< 3 sigma`` outlier rule, ``delta`` 0.9 by
default) follow the authors' reference implementation,
https://github.com/SSGAalto/prada-protecting-against-dnn-model-stealing-attacks
(``src/growing_set.py``, ``GrowingDistanceAgent``; ``src/growing_set_ops.py``,
``mean_dif_std``; ``src/main.py`` serves with 0.9). The paper tunes ``delta`` per model;
0.9 is the reference code's serving value.

``W`` comes from :func:`scipy.stats.shapiro`, Royston's algorithm, whose coefficients are
derived for up to 5,000 values: for larger pools it is an extrapolation (scipy then warns
that the *p-value* may be inaccurate; only ``W`` is used here, and the warning is silenced).

Speed: the replay is exact, but vectorised. Queries are taken in chunks; within a chunk,
each class's distances to its growing set as it stood at the chunk's start come from one
float32 matrix product (``|x|^2 + |g|^2 - 2 x.g``), the distances between the chunk's own
queries of that class from another, and only the join decisions, which depend on each
other, run query by query. The expanded form loses small distances to cancellation (for
near-duplicate images its error exceeds the distance itself), so every member it puts
within a float32 error bound of the nearest is measured again directly
(``sum((x - g)^2)``): the distances are the exact nearest ones, to float32 rounding.
Replaying 30,000 Fashion-MNIST images (28x28) took 4.2 s of CPU (11 s wall on a shared,
busy 2-core machine), 3.6 times faster than a per-query transcription already at 5,000
(``benchmarks/prada.py``); about half of it is the 3,000 Shapiro-Wilk checks.

What it catches: streams of synthetic variations of a few seed images (Jacobian-style
augmentation; ``tests/test_detection.py``) drive ``W`` far below 0.9 within the first
checks. Copycat-style streams of natural photographs did not: 5,000 ``photos`` queries to
a Fashion-MNIST target, bought by the ``paper`` and by the ``balanced`` strategy, kept
``W`` at or above 0.945 and 0.966, as high as real Fashion-MNIST test images (0.951).

Example:

>>> rng = np.random.default_rng(0)
>>> natural = rng.normal(size=(1500, 64)).astype(np.float32)
>>> labels = rng.integers(0, 5, 1500)
>>> replay_prada(natural, labels).first_alarm is None     # i.i.d. queries: no alarm
True
>>> seeds, picks = rng.normal(size=(30, 64)), rng.integers(0, 30, 1500)
>>> views = seeds[picks] + rng.normal(scale=0.01, size=(1500, 64))   # near-copies of 30 seeds
>>> replay_prada(views, picks % 5).first_alarm
110
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from copycat_tf.errors import CopycatError

log = logging.getLogger(__name__)

#: The reference implementation's alarm threshold on Shapiro-Wilk's W.
DEFAULT_DELTA = 0.9
#: A check runs after every this many queries.
CHECK_EVERY = 10
#: A check needs more than this many pooled distances (after outliers are dropped).
MIN_POOLED = 100
#: A class's distances enter the pool once it has given this many.
MIN_CLASS_DISTANCES = 10
#: Pooled distances further than this many standard deviations from their mean are dropped.
OUTLIER_SIGMAS = 3.0
#: Queries per vectorised chunk: large enough for matrix products, small enough that the
#: within-chunk distance matrix of one class stays small.
DEFAULT_CHUNK = 512
#: Near-tie margin of the float32 expanded-form squared distances, times sqrt(D) (|x|^2 + max |g|^2):
#: 20 times the largest error measured on Fashion-MNIST (0.2 eps in those units).
_SLACK = 4 * np.finfo(np.float32).eps


@dataclass(frozen=True)
class PradaResult:
    """What a PRADA replay of one query stream found.

    Attributes:
        delta: the alarm threshold on ``W``.
        queries: queries replayed.
        first_alarm: index (0-based, in the order bought) of the query after which ``W`` first
            fell below ``delta``, or ``None`` when the stream never raised the alarm.
        check_indices: query index of each check that had enough distances, int64 ``(m,)``.
        w: Shapiro-Wilk ``W`` at each of those checks, float64 ``(m,)``.
        distances: each query's distance to its class's growing set, float64 ``(queries,)``
            (``NaN`` for the first query of each class).
        joined: whether each query joined its class's growing set, bool ``(queries,)``.
        seconds: wall-clock time of the replay.
    """

    delta: float
    queries: int
    first_alarm: int | None
    check_indices: np.ndarray
    w: np.ndarray
    distances: np.ndarray
    joined: np.ndarray
    seconds: float

    @property
    def growing_set(self) -> int:
        """Queries kept in the growing sets (all classes)."""
        return int(np.count_nonzero(self.joined))

    @property
    def alarmed(self) -> bool:
        return self.first_alarm is not None

    @property
    def queries_to_alarm(self) -> int | None:
        """Queries the owner had received when the alarm first rang (``first_alarm + 1``)."""
        return None if self.first_alarm is None else self.first_alarm + 1

    @property
    def min_w(self) -> float | None:
        return float(self.w.min()) if len(self.w) else None

    def to_dict(self, *, curve: bool = True) -> dict:
        """A JSON-ready summary; ``curve`` adds ``[[query index, W], ...]`` for every check.

        Example:

        >>> quiet = PradaResult(0.9, 2, None, np.zeros(0, np.int64), np.zeros(0), np.array([np.nan, 1.5]),
        ...                     np.array([True, True]), 0.01)
        >>> quiet.to_dict()
        {'delta': 0.9, 'queries': 2, 'first_alarm': None, 'queries_to_alarm': None, 'checks': 0, 'min_w': None, 'final_w': None, 'growing_set': 2, 'seconds': 0.01, 'curve': []}
        """
        summary = {
            "delta": self.delta,
            "queries": self.queries,
            "first_alarm": self.first_alarm,
            "queries_to_alarm": self.queries_to_alarm,
            "checks": len(self.w),
            "min_w": None if self.min_w is None else round(self.min_w, 6),
            "final_w": round(float(self.w[-1]), 6) if len(self.w) else None,
            "growing_set": self.growing_set,
            "seconds": round(self.seconds, 3),
        }
        if curve:
            summary["curve"] = [[int(i), round(float(w), 6)] for i, w in zip(self.check_indices, self.w)]
        return summary


def _nearest_squared(query: np.ndarray, candidates: np.ndarray) -> float:
    """Smallest squared L2 distance from ``query`` to the rows of ``candidates``, measured
    directly (no cancellation)."""
    diff = candidates - query
    return float(np.einsum("ij,ij->i", diff, diff).min())


class _Class:
    """One predicted class's growing set: rows (float32, grown by doubling), squared norms,
    and the running sums of its joining distances for the threshold."""

    def __init__(self, dim: int):
        self.rows = np.empty((16, dim), np.float32)
        self.norms = np.empty(16, np.float32)
        self.count = 0
        self.joined_n = 0
        self.joined_sum = 0.0
        self.joined_sumsq = 0.0
        self.threshold = 0.0
        self.distances = 0  # distances this class has given to the pool
        self.eligible_from: int | None = None  # query index of its MIN_CLASS_DISTANCES-th distance

    def join_distance(self, distance: float) -> None:
        self.joined_n += 1
        self.joined_sum += distance
        self.joined_sumsq += distance * distance
        mean = self.joined_sum / self.joined_n
        std = max(self.joined_sumsq / self.joined_n - mean * mean, 0.0) ** 0.5
        self.threshold = max(self.threshold, mean - std)

    def extend(self, rows: np.ndarray, norms: np.ndarray) -> None:
        needed = self.count + len(rows)
        if needed > len(self.rows):
            capacity = max(needed, 2 * len(self.rows))
            grown = np.empty((capacity, self.rows.shape[1]), np.float32)
            grown[:self.count] = self.rows[:self.count]
            self.rows = grown
            grown_norms = np.empty(capacity, np.float32)
            grown_norms[:self.count] = self.norms[:self.count]
            self.norms = grown_norms
        self.rows[self.count:needed] = rows
        self.norms[self.count:needed] = norms
        self.count = needed


class PradaDetector:
    """PRADA's detector, fed one client's queries in order (see the module docstring).

    Feed it shard by shard with :meth:`update`; :meth:`result` reads where it stands.

    Args:
        delta: alarm while Shapiro-Wilk's ``W`` of the pooled distances is below this.
        chunk_size: queries per vectorised chunk (changes speed only, never the result).

    Example:

    >>> detector = PradaDetector(delta=0.9)
    >>> rng = np.random.default_rng(1)
    >>> for _ in range(3):                                   # three shards of one stream
    ...     detector.update(rng.random((400, 8, 8, 1), np.float32), rng.integers(0, 4, 400))
    >>> result = detector.result()
    >>> result.queries, result.alarmed, len(result.w) > 0
    (1200, False, True)
    """

    def __init__(self, delta: float = DEFAULT_DELTA, *, chunk_size: int = DEFAULT_CHUNK):
        if not (isinstance(delta, (int, float)) and 0.0 < float(delta) <= 1.0):
            raise CopycatError(f"PRADA delta must be a number in (0, 1], e.g. 0.9; received {delta!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise CopycatError(f"chunk size must be a whole number >= 1; received {chunk_size!r}")
        import scipy.stats  # noqa: F401 - imported now, so that the replay's time leaves it out

        self.delta = float(delta)
        self.chunk_size = chunk_size
        self._dim: int | None = None
        self._classes: dict[int, _Class] = {}
        self._count = 0
        self._distances = np.empty(1024, np.float64)  # per query; NaN for a class's first
        self._joined = np.empty(1024, bool)
        self._class_of = np.empty(1024, np.int64)
        self._pool = np.empty(0, np.float64)  # pooled distances, sorted, through the last check
        self._pooled_through = -1
        self._checks: list[int] = []
        self._w: list[float] = []
        self._first_alarm: int | None = None
        self._seconds = 0.0

    def update(self, queries, labels) -> None:
        """Replay the next queries of the stream.

        Args:
            queries: ``(n, ...)`` numbers as the model sees them (e.g. float pixels from
                :meth:`~copycat_tf.contract.Contract.to_model_input`); every query the
                same shape.
            labels: ``(n,)`` whole numbers, the class the model predicted for each query.

        Raises:
            CopycatError: mismatched lengths or shapes, non-finite values, negative labels.
        """
        started = time.perf_counter()
        x = np.asarray(queries)
        y = np.asarray(labels)
        if x.ndim < 1 or y.shape != (len(x),):
            raise CopycatError(f"PRADA needs one label per query; received queries of shape {x.shape} "
                               f"and labels of shape {y.shape}")
        if len(x) == 0:
            return
        if x.dtype.kind not in "biuf" or y.dtype.kind not in "iu":
            raise CopycatError(f"PRADA needs numeric queries and whole-number labels; received "
                               f"{x.dtype} queries and {y.dtype} labels")
        y = y.astype(np.int64)
        if y.min() < 0:
            raise CopycatError(f"PRADA labels must be class indices >= 0; received {int(y.min())}")
        flat = x.reshape(len(x), -1)
        if self._dim is None:
            self._dim = flat.shape[1]
        elif flat.shape[1] != self._dim:
            raise CopycatError(f"PRADA queries must all have the same size; received {flat.shape[1]} "
                               f"values per query after {self._dim}")
        from threadpoolctl import threadpool_limits

        # One BLAS thread: the products here are thin (a chunk's queries of one class against
        # its set), so more threads gain little, and on a busy machine OpenBLAS's spinning
        # threads made a 30,000-query replay 2 to 6 times slower (benchmarks/prada.py).
        with threadpool_limits(limits=1, user_api="blas"):
            for start in range(0, len(flat), self.chunk_size):
                chunk = np.ascontiguousarray(flat[start:start + self.chunk_size], dtype=np.float32)
                if not np.isfinite(chunk).all():
                    raise CopycatError("PRADA queries must be finite numbers; received NaN or infinity")
                self._chunk(chunk, y[start:start + self.chunk_size])
        self._seconds += time.perf_counter() - started

    def result(self) -> PradaResult:
        """Where the replay stands (it can go on with more :meth:`update` calls)."""
        return PradaResult(
            delta=self.delta,
            queries=self._count,
            first_alarm=self._first_alarm,
            check_indices=np.asarray(self._checks, np.int64),
            w=np.asarray(self._w, np.float64),
            distances=self._distances[:self._count].copy(),
            joined=self._joined[:self._count].copy(),
            seconds=self._seconds,
        )

    # ------------------------------------------------------------------ internals

    def _chunk(self, x: np.ndarray, y: np.ndarray) -> None:
        n = len(x)
        base = self._count
        norms = np.einsum("ij,ij->i", x, x)
        distances = np.full(n, np.nan)
        joined = np.zeros(n, bool)
        for label in np.unique(y):
            where = np.flatnonzero(y == label)
            state = self._classes.get(int(label))
            if state is None:
                state = self._classes[int(label)] = _Class(x.shape[1])
            joined[where] = self._class_chunk(state, x[where], norms[where], distances, where)
            state.extend(x[where[joined[where]]], norms[where[joined[where]]])
            given = where[~np.isnan(distances[where])]
            missing = MIN_CLASS_DISTANCES - state.distances
            if state.eligible_from is None and len(given) >= missing:
                # the query at which this class's distances start to count in the pool
                state.eligible_from = base + int(given[missing - 1])
            state.distances += len(given)
        self._append(distances, joined, y)
        for index in range(base + (-base) % CHECK_EVERY, base + n, CHECK_EVERY):
            self._check(index)

    def _class_chunk(self, state: _Class, x: np.ndarray, norms: np.ndarray, distances: np.ndarray,
                     where: np.ndarray) -> np.ndarray:
        """Decide, in order, which of one class's chunk queries join its growing set; write
        their distances into ``distances[where]``. Returns the joining mask."""
        m = len(x)
        # Squared distances in the expanded form are off by up to ~0.2 eps sqrt(D) (|x|^2 + |g|^2)
        # (measured on Fashion-MNIST); every member within 4 eps sqrt(D) (|x|^2 + max |g|^2)
        # of the smallest is measured again directly, so near-ties are settled exactly.
        slack_unit = _SLACK * np.float32(np.sqrt(x.shape[1]))
        before = np.full(m, np.inf)  # exact squared distance to the set as it stood
        if state.count:
            members = state.rows[:state.count]
            squared = norms[:, None] + state.norms[None, :state.count] - 2.0 * (x @ members.T)
            slack = slack_unit * (norms + state.norms[:state.count].max())
            close = squared <= squared.min(axis=1, keepdims=True) + slack[:, None]
            single = close.sum(axis=1) == 1
            rows = np.flatnonzero(single)
            if len(rows):
                diff = x[rows] - members[close[rows].argmax(axis=1)]
                before[rows] = np.einsum("ij,ij->i", diff, diff)
            for t in np.flatnonzero(~single):
                before[t] = _nearest_squared(x[t], members[close[t]])
        within = norms[:, None] + norms[None, :] - 2.0 * (x @ x.T)  # between this chunk's queries
        joined = np.zeros(m, bool)
        first_member = state.count == 0
        for t in range(m):
            if first_member:
                joined[t] = True
                first_member = False
                state.join_distance(0.0)
                continue
            best = before[t]
            earlier = np.flatnonzero(joined[:t])
            if len(earlier):
                row = within[t, earlier]
                slack = slack_unit * (norms[t] + norms[earlier].max())
                best = min(best, _nearest_squared(x[t], x[earlier[row <= row.min() + slack]]))
            distance = float(np.sqrt(best))
            distances[where[t]] = distance
            if distance > state.threshold:
                joined[t] = True
                state.join_distance(distance)
        return joined

    def _append(self, distances: np.ndarray, joined: np.ndarray, y: np.ndarray) -> None:
        needed = self._count + len(distances)
        if needed > len(self._distances):
            capacity = max(needed, 2 * len(self._distances))
            self._distances = np.resize(self._distances, capacity)
            self._joined = np.resize(self._joined, capacity)
            self._class_of = np.resize(self._class_of, capacity)
        self._distances[self._count:needed] = distances
        self._joined[self._count:needed] = joined
        self._class_of[self._count:needed] = y
        self._count = needed

    def _check(self, index: int) -> None:
        """The check after query ``index``: W of the pooled distances given so far.

        The pool is kept sorted and grown by what arrived since the last check (a merge of
        two sorted runs), so the 3-sigma cut is two binary searches and no check re-reads
        the whole stream."""
        from scipy.stats import shapiro

        last = self._pooled_through
        self._pooled_through = index
        eligible = {c: s.eligible_from for c, s in self._classes.items()
                    if s.eligible_from is not None and s.eligible_from <= index}
        if not eligible:
            return
        ids = np.fromiter(eligible, np.int64, len(eligible))
        new = self._class_of[last + 1:index + 1]
        arrived = self._distances[last + 1:index + 1][np.isin(new, ids)]
        # classes that reached MIN_CLASS_DISTANCES since the last check bring their past too
        joining = [c for c, since in eligible.items() if since > last]
        if joining and last >= 0:
            earlier = self._distances[:last + 1][np.isin(self._class_of[:last + 1], joining)]
            arrived = np.concatenate([arrived, earlier])
        arrived = arrived[~np.isnan(arrived)]
        if len(arrived):
            self._pool = np.sort(np.concatenate([self._pool, np.sort(arrived)]), kind="stable")
        pool = self._pool
        if len(pool) <= MIN_POOLED:
            return
        mean, spread = pool.mean(), OUTLIER_SIGMAS * pool.std()
        kept = pool[np.searchsorted(pool, mean - spread, "right"):np.searchsorted(pool, mean + spread, "left")]
        if len(kept) <= MIN_POOLED:
            return
        with warnings.catch_warnings():
            # W only; scipy warns about the p-value of more than 5,000 values
            warnings.simplefilter("ignore", UserWarning)
            w = float(shapiro(kept).statistic)
        self._checks.append(index)
        self._w.append(w)
        if w < self.delta and self._first_alarm is None:
            self._first_alarm = index
            log.info("PRADA: alarm after %d queries (W %.3f < %.3f)", index + 1, w, self.delta)


def replay_prada(queries, labels, *, delta: float = DEFAULT_DELTA,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None,
                 chunk_size: int = DEFAULT_CHUNK) -> PradaResult:
    """Replay PRADA over a whole query stream (an array, or an iterable of ``(queries,
    labels)`` shards in the order bought).

    Args:
        queries: ``(n, ...)`` queries, or an iterable of ``(queries, labels)`` pairs (then
            ``labels`` must be ``None``).
        labels: ``(n,)`` classes the model predicted, or ``None`` with an iterable.
        delta: the alarm threshold on ``W``.
        transform: applied to each array of queries first, e.g. ``contract.to_model_input``
            to measure distances in the model's input space from stored uint8 images.
        chunk_size: queries per vectorised chunk.

    Example:

    >>> rng = np.random.default_rng(2)
    >>> shards = [(rng.integers(0, 256, (300, 6, 6, 1), np.uint8), rng.integers(0, 3, 300)) for _ in range(2)]
    >>> replay_prada(shards, None, transform=lambda a: a / np.float32(255)).queries
    600
    """
    detector = PradaDetector(delta, chunk_size=chunk_size)
    if labels is None:
        if isinstance(queries, np.ndarray):
            raise CopycatError("PRADA needs the predicted labels with an array of queries")
        parts: Iterable = queries
    else:
        parts = [(queries, labels)]
    for part_queries, part_labels in parts:
        detector.update(part_queries if transform is None else transform(part_queries), part_labels)
    return detector.result()


def prada_curve_png(streams: Mapping[str, PradaResult], *, title: str | None = None) -> bytes:
    """PRADA's ``W`` against queries received, one line per stream, ``delta`` dashed and each
    first alarm marked, as PNG bytes.

    Example:

    >>> rng = np.random.default_rng(3)
    >>> benign = replay_prada(rng.normal(size=(400, 16)), rng.integers(0, 2, 400))
    >>> prada_curve_png({"benign": benign})[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    import io

    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = figure.subplots()
    deltas = sorted({r.delta for r in streams.values()})
    lowest = min([*deltas, *(r.min_w for r in streams.values() if r.min_w is not None)], default=0.9)
    for name, result in streams.items():
        if not len(result.w):
            ax.plot([], [], label=f"{name} (too few queries to test)")
            continue
        line, = ax.plot(result.check_indices + 1, result.w, linewidth=1.2,
                        label=f"{name}: " + (f"alarm after {result.queries_to_alarm:,} queries"
                                             if result.alarmed else "no alarm"))
        if result.alarmed:
            at = int(np.searchsorted(result.check_indices, result.first_alarm))
            ax.plot([result.queries_to_alarm], [result.w[at]], marker="o", color=line.get_color())
    for delta in deltas:
        ax.axhline(delta, linestyle="--", color="0.4", linewidth=1)
        ax.annotate(f"delta {delta:g}", (0, delta), xycoords=("axes fraction", "data"),
                    xytext=(4, 3), textcoords="offset points", color="0.3", fontsize=8)
    ax.set_ylim(max(0.0, lowest - 0.05), 1.005)
    ax.set_xlabel("queries received")
    ax.set_ylabel("Shapiro-Wilk W of query distances")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "PRADA: the alarm rings when W falls below delta")
    if streams:
        ax.legend(loc="lower left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
