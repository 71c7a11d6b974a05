"""From a fake dataset on disk to the batches a copycat trains on (``tf.data``).

One entry point, :func:`make_training_data`, turns a :class:`~copycat_tf.fakeset.FakeSet`
into a training and a validation ``tf.data.Dataset`` of ``(pixels, targets[, weights])``
batches. The input pipeline must never be what limits training speed, so:

- a fake dataset that fits in ``in_memory_bytes`` is read once into arrays, and each
  batch is one vectorised gather from them (the same work ``model.fit`` does on arrays);
- a larger one streams shard by shard from disk (:meth:`FakeSet.iter_shards`) through a
  bounded shuffle pool, so it never has to fit in memory;
- either way nothing runs per record (whole batches are gathered, or whole shards
  selected and shuffled with numpy), and batches are prefetched.

Both paths hold out the same validation records (chosen from record indices with a seed)
and apply the same class balancing, so they train on the same examples.

Usage::

    data = make_training_data(FakeSet.open("runs/fake"), batch_size=64)
    model.fit(data.train, validation_data=data.validation, epochs=5)
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

from copycat_tf.errors import CopycatError

log = logging.getLogger(__name__)

LABEL_MODES = ("hard", "soft")
BALANCE_MODES = ("none", "replicate", "weights", "sqrt-weights")
#: ``sqrt-weights`` never weighs a record more than this many times a record of the largest class.
MAX_SQRT_WEIGHT = 10.0
#: Fake datasets up to this size are trained from memory; larger ones stream from disk.
IN_MEMORY_BYTES = 1 << 30
#: Memory the streaming shuffle pool may take (decoded uint8 records; the pool is sized at
#: half of this, as it is copied once while being permuted).
SHUFFLE_BUFFER_BYTES = 256 << 20
_HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative hash: spreads consecutive indices over [0, 2^32)
_HASH_RANGE = 1 << 32


@dataclass(frozen=True)
class TrainingData:
    """Batches for ``model.fit`` and what they hold.

    Attributes:
        train: ``tf.data.Dataset`` of ``(pixels, targets)`` or ``(pixels, targets,
            weights)`` batches; ``pixels`` float32 ``(B, H, W, C)`` in ``[0, 255]``,
            ``targets`` int64 labels (hard) or float32 probabilities (soft).
        validation: the held-out records as ``(pixels, targets)`` batches, or ``None``.
        train_records: records held for training (before replication).
        validation_records: records held out.
        in_memory: whether the records were read into memory (else streamed).
    """

    train: object
    validation: object | None
    train_records: int
    validation_records: int
    in_memory: bool


def validation_mask(count: int, fraction: float, seed: int) -> np.ndarray:
    """Which records (by index) are held out: exactly ``round(fraction * count)`` of them.

    The choice depends only on ``count``, ``fraction`` and ``seed``, so every run, every
    resume and both input pipelines hold out the same records.

    Example:

    >>> int(validation_mask(10, 0.2, seed=0).sum())
    2
    """
    held_out = int(round(fraction * count))
    if fraction > 0 and count >= 2:
        held_out = min(max(held_out, 1), count - 1)
    mask = np.zeros(count, bool)
    mask[np.random.default_rng(seed).permutation(count)[:held_out]] = True
    return mask


def replication_factors(histogram) -> np.ndarray:
    """How many times each class must be seen to match the largest: ``max(n) / n_c``.

    Classes without records get 0. This is the 2021 paper's balancing: images of rare
    classes are replicated until every class is as frequent as the most common one.

    Example:

    >>> replication_factors([10, 4, 0]).tolist()
    [1.0, 2.5, 0.0]
    """
    return _per_present_class(histogram, lambda counts, n: counts.max() / n)


def replication_copies(labels, index, factors, seed: int) -> np.ndarray:
    """Copies of each record for ``balance="replicate"``, as int64.

    A record of class ``c`` is kept ``floor(f_c)`` or ``floor(f_c) + 1`` times, the extra
    copy decided by a seeded hash of its record index, so class ``c`` ends up close to
    ``f_c * n_c`` records in total. It depends on the record alone, so the streaming and
    the in-memory pipelines replicate the very same records.

    Args:
        labels: int64 class labels.
        index: int64 record indices, same shape.
        factors: :func:`replication_factors` of the class histogram.
        seed: varies which records get the extra copy.

    Example:

    >>> replication_copies(np.array([1, 1]), np.array([0, 1]), np.array([1.0, 2.5]), 0)
    array([2, 3])
    """
    factor = np.asarray(factors, np.float64)[labels]
    whole = np.floor(factor)
    offset = ((int(seed) + 1) * _HASH_MULTIPLIER) % _HASH_RANGE  # a seed moves every threshold
    hashed = (np.asarray(index, np.int64) * _HASH_MULTIPLIER + offset) % _HASH_RANGE
    uniform = hashed.astype(np.float64) / _HASH_RANGE
    return whole.astype(np.int64) + (uniform < factor - whole).astype(np.int64)


def class_weights(histogram) -> np.ndarray:
    """Per-class loss weights for ``balance="weights"``: ``N / (classes present * n_c)``.

    Every class then contributes equally to the loss; classes without records get 0.

    Example:

    >>> class_weights([30, 10, 0]).tolist()
    [0.6666666666666666, 2.0, 0.0]
    """
    return _per_present_class(histogram, lambda counts, n: counts.sum() / (len(n) * n))


def sqrt_class_weights(histogram) -> np.ndarray:
    """Tempered loss weights for ``balance="sqrt-weights"``: ``sqrt(max(n) / n_c)``, at most 10.

    Full inverse-frequency weights let a few hundred records of a rare class dominate the
    loss and get memorised; the square root lifts rare classes while the common ones keep
    most of their say. Classes without records get 0.

    Example:

    >>> sqrt_class_weights([400, 100, 1, 0]).tolist()
    [1.0, 2.0, 10.0, 0.0]
    """
    return _per_present_class(histogram, lambda counts, n: np.minimum(np.sqrt(counts.max() / n), MAX_SQRT_WEIGHT))


def _per_present_class(histogram, value) -> np.ndarray:
    """``value(counts, counts of the classes present)`` for classes with records, 0 for the others."""
    counts = np.asarray(histogram, np.float64)
    present = counts > 0
    result = np.zeros_like(counts)
    result[present] = value(counts, counts[present])
    return result


def make_augmenter(seed: int):
    """Mild random shifts and zooms, batch-wise in TensorFlow.

    No flips: the oracle labelled each image as it was, and a flipped digit or letter can
    mean another class; small shifts and zooms rarely change what a classifier sees.

    Usage::

        augment = make_augmenter(seed=0)
        augment(pixels, training=True).shape
    """
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
            keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 1),
        ],
        name="augment",
    )


def make_training_data(
    fakeset,
    *,
    batch_size: int,
    labels: str = "hard",
    balance: str = "none",
    augment: bool = False,
    validation_fraction: float = 0.1,
    seed: int = 0,
    in_memory_bytes: int = IN_MEMORY_BYTES,
) -> TrainingData:
    """Training and validation batches from a fake dataset.

    Args:
        fakeset: an open :class:`~copycat_tf.fakeset.FakeSet`.
        batch_size: records per batch.
        labels: ``"hard"`` (train on the oracle's classes, as in the paper) or ``"soft"``
            (on its probabilities; the fake dataset must have kept them).
        balance: ``"none"``, ``"replicate"`` (repeat records of rare classes),
            ``"weights"`` (weight the loss per class instead) or ``"sqrt-weights"``
            (:func:`sqrt_class_weights`, the ``balanced`` strategy's default).
        augment: apply :func:`make_augmenter` to training batches.
        validation_fraction: share of records held out to measure agreement, in
            ``[0, 0.5]``.
        seed: shuffling, validation choice, replication and augmentation.
        in_memory_bytes: largest fake dataset read into memory; larger ones stream.

    Raises:
        CopycatError: bad options, or soft labels asked of a hard-label fake dataset.
    """
    import tensorflow as tf

    check_options(labels, balance, validation_fraction)
    soft = labels == "soft"
    if soft:
        require_probabilities(fakeset)
    if fakeset.count < 2:
        raise CopycatError(
            f"fake dataset {fakeset.directory} holds {fakeset.count} record(s); a copycat needs "
            "at least 2 (label more images with `copycat-tf label`)"
        )
    mask = validation_mask(fakeset.count, validation_fraction, seed)
    histogram = fakeset.label_histogram
    record_bytes = int(np.prod(fakeset.image_shape)) + (4 * fakeset.num_classes if soft else 0) + 16
    in_memory = fakeset.count * record_bytes <= in_memory_bytes
    source = _ArrayRecords(fakeset, soft) if in_memory else _StreamedRecords(fakeset, soft, record_bytes)
    factors = replication_factors(histogram) if balance == "replicate" else None
    weighting = {"weights": class_weights, "sqrt-weights": sqrt_class_weights}.get(balance)
    weights = None if weighting is None else tf.constant(weighting(histogram), tf.float32)
    augmenter = make_augmenter(seed) if augment else None
    target_key = "probabilities" if soft else "label"

    def to_example(batch, training):
        pixels = tf.cast(batch["image"], tf.float32)
        if training and augmenter is not None:
            pixels = augmenter(pixels, training=True)
        if training and weights is not None:
            return pixels, batch[target_key], tf.gather(weights, batch["label"])
        return pixels, batch[target_key]

    train = source.batches(~mask, batch_size, seed=seed, factors=factors)
    train = train.map(lambda b: to_example(b, True), num_parallel_calls=tf.data.AUTOTUNE)
    validation = None
    if mask.any():
        validation = source.batches(mask, batch_size)
        if not in_memory and mask.sum() * record_bytes <= in_memory_bytes:
            validation = validation.cache()  # read the held-out records from disk once, not every epoch
        validation = validation.map(lambda b: to_example(b, False), num_parallel_calls=tf.data.AUTOTUNE)
        validation = validation.prefetch(tf.data.AUTOTUNE)
    return TrainingData(
        train=train.prefetch(tf.data.AUTOTUNE),
        validation=validation,
        train_records=int((~mask).sum()),
        validation_records=int(mask.sum()),
        in_memory=in_memory,
    )


def check_options(labels: str, balance: str, validation_fraction: float) -> None:
    """Raise :class:`CopycatError` for a label mode, balance mode or fraction out of range."""
    if labels not in LABEL_MODES:
        raise CopycatError(f"labels must be one of {', '.join(LABEL_MODES)}; received {labels!r}")
    if balance not in BALANCE_MODES:
        raise CopycatError(f"balance must be one of {', '.join(BALANCE_MODES)}; received {balance!r}")
    is_number = isinstance(validation_fraction, (int, float)) and not isinstance(validation_fraction, bool)
    if not is_number or not 0 <= validation_fraction <= 0.5:
        raise CopycatError(
            f"validation fraction must lie in [0, 0.5]; received {validation_fraction}"
        )


def require_probabilities(fakeset, option: str = "FAKESET_DIR") -> None:
    """Raise :class:`CopycatError` unless ``fakeset`` kept the oracle's probabilities."""
    if not fakeset.has_probabilities:
        raise CopycatError(
            f"--labels soft needs the oracle's probabilities, but fake dataset "
            f"{fakeset.directory} ({option}) holds hard labels only; relabel it with "
            "`copycat-tf label --labels soft` or train with --labels hard"
        )


class _ArrayRecords:
    """The whole fake dataset in memory; each batch is one gather of record positions."""

    def __init__(self, fakeset, soft: bool):
        import tensorflow as tf

        # Filled shard by shard (not concatenated) so the peak is one copy plus one shard;
        # a record's position in these arrays is its index.
        arrays = {
            "image": np.empty((fakeset.count, *fakeset.image_shape), np.uint8),
            "label": np.empty(fakeset.count, np.int64),
        }
        if soft:
            arrays["probabilities"] = np.empty((fakeset.count, fakeset.num_classes), np.float32)
        for shard in fakeset.iter_shards(with_probabilities=soft):
            for name, stored in (("image", "images"), ("label", "labels"), ("probabilities", "probabilities")):
                if name in arrays:
                    arrays[name][shard["index"]] = shard[stored]
        self.labels = arrays["label"]
        self.columns = {name: tf.constant(values) for name, values in arrays.items()}

    def batches(self, selected: np.ndarray, batch_size: int, *, seed: int | None = None, factors=None):
        """Batches of the ``selected`` records; shuffled each epoch when ``seed`` is given."""
        import tensorflow as tf

        positions = np.flatnonzero(selected)
        if factors is not None:
            copies = replication_copies(self.labels[positions], positions, factors, seed)
            positions = np.repeat(positions, copies)
        dataset = tf.data.Dataset.from_tensor_slices(positions.astype(np.int64))
        if seed is not None:
            dataset = dataset.shuffle(len(positions), seed=seed, reshuffle_each_iteration=True)
        columns = self.columns
        return dataset.batch(batch_size).map(
            lambda chosen: {name: tf.gather(column, chosen) for name, column in columns.items()},
            num_parallel_calls=tf.data.AUTOTUNE,
        )


class _StreamedRecords:
    """The fake dataset read from disk each epoch, shard by shard, shuffled in a bounded pool.

    Whole shards are selected, replicated and shuffled with numpy and leave as finished
    batches, so no per-record ``tf.data`` operation runs: filtering, ``flat_map`` and a
    record-level shuffle buffer cost more CPU per record than the small copycats take to
    train on it. The pool holds at most ``buffer`` records (``SHUFFLE_BUFFER_BYTES``); each
    time it fills, it is permuted, all but half of it leaves as batches and the other half
    stays to mix with the next shards. A fake dataset no larger than the pool is shuffled
    exactly, like the in-memory path.
    """

    def __init__(self, fakeset, soft: bool, record_bytes: int):
        self.fakeset = fakeset
        self.soft = soft
        # Records come in query order, already random; a pool of 16k records (carrying half
        # of itself over) mixes them well and keeps small records' memory small too.
        self.buffer = int(np.clip(SHUFFLE_BUFFER_BYTES // (2 * record_bytes), 1024, 16384))
        self.columns = {"image": "images", "label": "labels"}
        if soft:
            self.columns["probabilities"] = "probabilities"

    def batches(self, selected: np.ndarray, batch_size: int, *, seed: int | None = None, factors=None):
        """Batches of the ``selected`` records; shuffled each epoch when ``seed`` is given."""

        import tensorflow as tf

        fakeset, columns = self.fakeset, self.columns
        signature = {
            "image": tf.TensorSpec((None, *fakeset.image_shape), tf.uint8),
            "label": tf.TensorSpec((None,), tf.int64),
        }
        if self.soft:
            signature["probabilities"] = tf.TensorSpec((None, fakeset.num_classes), tf.float32)
        epochs = itertools.count()  # the generator restarts every epoch: a new order each time

        def chunks():
            for shard in fakeset.iter_shards(with_probabilities=self.soft):
                keep = selected[shard["index"]]
                if not keep.any():
                    continue
                chunk = {name: shard[stored][keep] for name, stored in columns.items()}
                if factors is not None:
                    copies = replication_copies(chunk["label"], shard["index"][keep], factors, seed)
                    chunk = {name: np.repeat(values, copies, axis=0) for name, values in chunk.items()}
                yield chunk

        def generate():
            rng = None if seed is None else np.random.default_rng([seed, next(epochs)])
            pending, count, carry = [], 0, None
            for chunk in chunks():
                pending.append(chunk)
                count += len(chunk["label"])
                if count >= (self.buffer if rng is not None else batch_size):
                    pool = _concat(([carry] if carry else []) + pending)
                    order = rng.permutation(len(pool["label"])) if rng is not None else None
                    keep = self.buffer // 2 if rng is not None else 0
                    leaving = (len(pool["label"]) - keep) // batch_size * batch_size
                    yield from _split(pool, order, 0, leaving, batch_size)
                    carry = _take(pool, order, leaving, len(pool["label"]))
                    pending, count = [], len(carry["label"])
            if carry is not None or pending:
                pool = _concat(([carry] if carry else []) + pending)
                order = rng.permutation(len(pool["label"])) if rng is not None else None
                yield from _split(pool, order, 0, len(pool["label"]), batch_size)

        return tf.data.Dataset.from_generator(generate, output_signature=signature)


def _concat(chunks: list[dict]) -> dict:
    if len(chunks) == 1:
        return chunks[0]
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def _take(pool: dict, order: np.ndarray | None, start: int, stop: int) -> dict:
    if order is None:
        return {name: values[start:stop] for name, values in pool.items()}
    return {name: values[order[start:stop]] for name, values in pool.items()}


def _split(pool: dict, order: np.ndarray | None, start: int, stop: int, batch_size: int):
    for first in range(start, stop, batch_size):
        yield _take(pool, order, first, min(first + batch_size, stop))
