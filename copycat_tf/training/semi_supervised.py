"""Semi-supervised training: images the oracle never labelled put to work, at no query cost.

FixMatch-style pseudo-labels (Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning
with Consistency and Confidence", NeurIPS 2020, https://arxiv.org/abs/2001.07685), as one
last, resumable stage of :func:`~copycat_tf.training.train_copycat`:

1. the copycat as the labelled stages left it predicts ``unlabelled_count`` images of an
   unlabelled :class:`~copycat_tf.queries.QuerySource` under a weak view (the image and
   its mirror image, probabilities averaged);
2. an image whose top averaged probability reaches ``pseudo_label_threshold`` takes that
   class as its label; the others are dropped;
3. the stage trains on the last labelled fake dataset plus the pseudo-labelled images, each
   batch of the fake dataset joined by its share of pseudo-labelled images under strong
   augmentation (flips, shifts, zooms, contrast, brightness, erased patches; the fake
   dataset's records keep the run's own augmentation), at the fine-tuning learning rate.

Unlike FixMatch the labels are chosen once, from the stage's starting model, not at every
step: the stage is then an ordinary stage of the run, with its checkpoint after every good
epoch. The labels are written to ``DIR/checkpoints/semi-pseudo-labels.npz`` (stream
positions, classes, confidences) before the first epoch, so a resumed run trains on the
very same ones and re-reads only those images from the source. With soft labels
(``labels="soft"``) a pseudo-label is the one-hot vector of its class: the copycat's own
probabilities would only teach it what it already believes.

The pseudo-labelled images are held in memory (``count * H * W * C`` bytes at most).

Usage::

    source = open_query_source(["./photos-of-my-own"], fakeset.image_shape, seed=1)
    train_copycat(fakeset, "runs/copycat", TrainConfig(semi_supervised=True), unlabelled=source)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from copycat_tf.errors import CopycatError
from copycat_tf.files import atomic_write
from copycat_tf.npz import read_npz
from copycat_tf.training.config import TrainConfig
from copycat_tf.training.data import TrainingData
from copycat_tf.training.run_state import TrainingStage

log = logging.getLogger(__name__)

#: The pseudo-labels' file in the run's ``checkpoints/`` folder.
PSEUDO_LABELS_FILE = "semi-pseudo-labels.npz"
#: Unlabelled images decoded and predicted at a time: bounds the scan's memory to one chunk
#: beyond the images kept.
SCAN_CHUNK = 1024
#: Seed-sequence tag of the unlabelled images' seed, apart from every seed of the queries.
_UNLABELLED_SEED_TAG = 7


@dataclass(frozen=True)
class Unlabelled:
    """Images for the semi-supervised stage and how many of them to pseudo-label.

    Attributes:
        source: a :class:`~copycat_tf.queries.QuerySource` at the fake dataset's image shape.
        count: images to predict (rejected files do not count).
        threshold: least top probability that makes a prediction a label.
    """

    source: object
    count: int
    threshold: float

    def record(self) -> dict:
        """What a resumed stage must share with the run it resumes (``training.json``)."""
        return {"source": self.source.config(), "count": self.count, "threshold": self.threshold}


@dataclass(frozen=True)
class PseudoLabels:
    """The unlabelled images the copycat labelled confidently.

    Attributes:
        positions: their positions in the unlabelled stream (int64, increasing).
        labels: their classes (int64).
        confidence: their top averaged probabilities (float32).
        images: the images, uint8 ``(N, H, W, C)``.
        scanned: images predicted to choose them.
    """

    positions: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    images: np.ndarray
    scanned: int

    def summary(self, num_classes: int) -> dict:
        """Counts for ``training.json`` and the log: scanned, selected, per class."""
        return {"scanned": self.scanned, "selected": int(len(self.labels)),
                "per_class": np.bincount(self.labels, minlength=num_classes).tolist()}


def unlabelled_seed(seed: int) -> int:
    """The seed of a run's unlabelled images: drawn from ``seed``, so the same sources give other
    images than the queries they sent (a photo pool's other crops, a folder in another order).

    >>> unlabelled_seed(0) != 0 and unlabelled_seed(0) == unlabelled_seed(0)
    True
    """
    return int(np.random.SeedSequence([seed, _UNLABELLED_SEED_TAG]).generate_state(1)[0])


def semi_supervised_stage(previous: TrainingStage, config: TrainConfig, source) -> TrainingStage:
    """The semi-supervised stage that follows ``previous``: its fake dataset and trainable part,
    ``semi_epochs`` at ``finetune_learning_rate`` (``config`` resolved), and ``source``'s images
    to pseudo-label.

    Raises:
        CopycatError: ``config.semi_supervised`` without a source or the reverse, or a source
            at another image shape than the fake dataset's.
    """
    if not config.semi_supervised:
        raise CopycatError("unlabelled images were given but semi-supervised training is off; "
                           "pass --semi-supervised (TrainConfig(semi_supervised=True)) to use them")
    if source is None:
        raise CopycatError("semi-supervised training needs images the oracle never labelled; pass "
                           "--unlabelled SPEC (a folder, array or photos, as for --queries)")
    fakeset = previous.fakeset
    if tuple(source.image_shape) != tuple(fakeset.image_shape):
        raise CopycatError(
            f"unlabelled images are fitted to {'x'.join(map(str, source.image_shape))}, the fake dataset "
            f"{fakeset.directory} holds {'x'.join(map(str, fakeset.image_shape))}; open them at its shape"
        )
    unlabelled = Unlabelled(source, config.unlabelled_count or fakeset.count, config.pseudo_label_threshold)
    return TrainingStage("semi", fakeset, config.semi_epochs, config.finetune_learning_rate, "semi-supervised",
                         after=previous.name, trainable=previous.trainable, unlabelled=unlabelled)


def weak_view_probabilities(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's probabilities for ``images`` (uint8 or float ``(N, H, W, C)``, pixels in
    ``[0, 255]``) averaged with those for their mirror images: FixMatch's weak view."""
    pixels = np.asarray(images, np.float32)
    as_is = model.predict(pixels, batch_size=batch_size, verbose=0)
    mirrored = model.predict(pixels[:, :, ::-1, :], batch_size=batch_size, verbose=0)
    return (np.asarray(as_is, np.float32) + np.asarray(mirrored, np.float32)) / 2


def select_pseudo_labels(probabilities: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(chosen, labels, confidence)``: the rows whose top probability reaches ``threshold``
    (a boolean mask), and the class and top probability of every row.

    >>> chosen, labels, _ = select_pseudo_labels(np.array([[0.97, 0.03], [0.6, 0.4]]), 0.95)
    >>> chosen.tolist(), labels.tolist()
    ([True, False], [0, 0])
    """
    probabilities = np.asarray(probabilities, np.float32)
    labels = probabilities.argmax(axis=1).astype(np.int64)
    confidence = probabilities.max(axis=1)
    return confidence >= np.float32(threshold), labels, confidence


def pseudo_label(model, unlabelled: Unlabelled, batch_size: int) -> PseudoLabels:
    """Predict the first ``unlabelled.count`` images of its stream under the weak view and keep
    those labelled confidently (a finite source may hold fewer: all of them are predicted)."""
    kept = {"positions": [], "labels": [], "confidence": [], "images": []}
    scanned = 0
    chunk, positions = [], []

    def predict_chunk():
        images = np.stack(chunk)
        chosen, labels, confidence = select_pseudo_labels(weak_view_probabilities(model, images, batch_size),
                                                          unlabelled.threshold)
        for name, values in (("positions", np.asarray(positions, np.int64)), ("labels", labels),
                             ("confidence", confidence), ("images", images)):
            kept[name].append(values[chosen])

    for query in unlabelled.source.queries():
        if query.image is None:
            continue  # a file that cannot be read is no unlabelled image
        chunk.append(query.image)
        positions.append(query.position)
        scanned += 1
        if len(chunk) == SCAN_CHUNK or scanned == unlabelled.count:
            predict_chunk()
            chunk, positions = [], []
        if scanned == unlabelled.count:
            break
    if chunk:
        predict_chunk()
    if not scanned:
        raise CopycatError(f"the unlabelled images ({', '.join(unlabelled.source.specs)}) hold no readable image")
    # Every chunk left its (possibly empty) selection, so each list holds at least one array.
    return PseudoLabels(scanned=scanned, **{name: np.concatenate(values) for name, values in kept.items()})


def with_pseudo_labels(run, stage: TrainingStage, model, data: TrainingData, config: TrainConfig) -> TrainingData:
    """``data`` (the stage's fake dataset) joined by pseudo-labelled images: those recorded in
    ``run``, or, on the stage's first start, those ``model`` labels now (written, then recorded).

    Raises:
        CopycatError: recorded pseudo-labels whose file or images are gone or changed.
    """
    path = run.checkpoint(stage.name).with_name(PSEUDO_LABELS_FILE)
    num_classes = stage.fakeset.num_classes
    recorded = run.stage(stage.name).get("pseudo_labels")
    if recorded is None:
        pseudo = pseudo_label(model, stage.unlabelled, config.batch_size)
        atomic_write(path, lambda f: np.savez(f, positions=pseudo.positions, labels=pseudo.labels,
                                               confidence=pseudo.confidence))
        run.record_pseudo_labels(stage.name, {**pseudo.summary(num_classes), "file": PSEUDO_LABELS_FILE})
    else:
        pseudo = _read_pseudo_labels(path, stage.unlabelled, recorded["scanned"])
    _log_pseudo_labels(pseudo, stage.unlabelled, num_classes)
    if not len(pseudo.labels):
        log.warning("no unlabelled image reached the threshold %g, so the semi-supervised stage trains on the "
                    "fake dataset alone; lower the threshold or give more unlabelled images",
                    stage.unlabelled.threshold)
        return data
    return mixed_training_data(data, pseudo, num_classes=num_classes, soft=config.labels == "soft",
                               batch_size=config.batch_size, seed=config.seed)


def _read_pseudo_labels(path, unlabelled: Unlabelled, scanned: int) -> PseudoLabels:
    """The recorded pseudo-labels and their images, re-read from the (unchanged) source."""
    fix = "rerun with --overwrite to train again"
    if not path.is_file():
        raise CopycatError(f"{path} is missing, so the semi-supervised stage cannot resume; {fix}")
    stored = read_npz(path, ["positions", "labels", "confidence"], what=f"pseudo-labels {path}")
    positions = stored["positions"]
    images = [query.image for query in unlabelled.source.select("pseudo-labels", positions).queries()]
    if len(images) != len(positions) or any(image is None for image in images):
        raise CopycatError(f"the unlabelled images behind {path} can no longer all be read; {fix}")
    shape = (0, *unlabelled.source.image_shape)
    return PseudoLabels(positions, stored["labels"], stored["confidence"],
                        np.stack(images) if images else np.zeros(shape, np.uint8), scanned)


def _log_pseudo_labels(pseudo: PseudoLabels, unlabelled: Unlabelled, num_classes: int) -> None:
    counts = np.bincount(pseudo.labels, minlength=num_classes)
    per_class = (" ".join(f"{c}:{n}" for c, n in enumerate(counts)) if num_classes <= 20
                 else f"min {counts.min()}, median {int(np.median(counts))}, max {counts.max()}")
    log.info("semi-supervised: %s unlabelled images from %s, %s (%.1f%%) reached %g and were pseudo-labelled; "
             "per class %s", f"{pseudo.scanned:,}", ", ".join(unlabelled.source.specs), f"{len(pseudo.labels):,}",
             100 * len(pseudo.labels) / max(1, pseudo.scanned), unlabelled.threshold, per_class)


def make_strong_augmenter(seed: int):
    """FixMatch's strong view with Keras preprocessing layers, on ``[0, 255]`` pixels: flips,
    shifts, zooms, contrast, brightness and an erased patch (its Cutout).

    Usage::

        augment = make_strong_augmenter(seed=0)
        augment(pixels, training=True).shape
    """
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom(0.2, fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomContrast(0.4, value_range=(0, 255), seed=seed + 3),
            keras.layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 4),
            keras.layers.RandomErasing(factor=0.5, scale=(0.02, 0.2), value_range=(0, 255), seed=seed + 5),
        ],
        name="strong_augment",
    )


def mixed_training_data(data: TrainingData, pseudo: PseudoLabels, *, num_classes: int, soft: bool,
                        batch_size: int, seed: int) -> TrainingData:
    """``data`` whose training batches each carry their share of pseudo-labelled images.

    A batch of ``batch_size`` fake records is joined by ``batch_size * pseudo / records``
    pseudo-labelled images (at least one), strongly augmented, so an epoch of the fake
    dataset also passes once over the pseudo-labelled images. Class-balancing loss weights
    (``balance="weights"`` or ``"sqrt-weights"``) stay on the fake records; pseudo-labelled
    images weigh 1.
    Validation is the fake dataset's, unchanged.
    """
    import tensorflow as tf

    count = len(pseudo.labels)
    share = max(1, round(batch_size * count / max(1, data.train_records)))
    augment = make_strong_augmenter(seed)
    images, labels = tf.constant(pseudo.images), tf.constant(pseudo.labels)

    def pseudo_batch(chosen):
        pixels = augment(tf.cast(tf.gather(images, chosen), tf.float32), training=True)
        targets = tf.gather(labels, chosen)
        return pixels, tf.one_hot(targets, num_classes) if soft else targets

    extra = (tf.data.Dataset.from_tensor_slices(np.arange(count, dtype=np.int64))
             .shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()
             .batch(share).map(pseudo_batch, num_parallel_calls=tf.data.AUTOTUNE))

    def join(fake, more):
        pixels, targets = more
        joined = (tf.concat([fake[0], pixels], 0), tf.concat([fake[1], tf.cast(targets, fake[1].dtype)], 0))
        if len(fake) == 3:
            return (*joined, tf.concat([fake[2], tf.ones(tf.shape(targets)[:1], fake[2].dtype)], 0))
        return joined

    train = tf.data.Dataset.zip((data.train, extra)).map(join, num_parallel_calls=tf.data.AUTOTUNE)
    return replace(data, train=train.prefetch(tf.data.AUTOTUNE))
