"""Training-side levers of issue 17 on a finished steal, measured label-free: no new query.

Takes a ``copycat-tf steal`` folder (a ``balanced`` run) and its target, retrains copies of
the copycat from the same fake dataset, and prints each one's agreement with the target on
held-out image folders beside the steal's own copycat (the reference) and their ratio:

    scratch      the default copycat training from random weights (the reference copy
                 starts from the last scout instead)
    pretrained   the same, from weights pretrained without labels (SimCLR, Chen et al.
                 2020: two augmented views of each image, NT-Xent loss, temperature 0.2) on
                 ``--unlabelled`` images of the query sources; the SwiftThief idea (IJCAI 2024)
    distilled    the steal's copycat as a teacher: a student starting from the last scout
                 learns the oracle's labels on the fake dataset plus the teacher's answers on
                 ``--unlabelled`` never-queried images under shifts, flips and random
                 erasing (self-distillation, as in Black-box Dissector, Wang et al. 2022)

Usage:
    python -m benchmarks.research.levers runs/c10 runs/targets/cifar10-cnn.onnx \\
        --eval-data heldout/natural --eval-data heldout/faces
    python -m benchmarks.research.levers runs/c10 target.onnx --eval-data heldout/natural --levers distilled
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

LEVERS = ("scratch", "pretrained", "distilled")


def unlabelled_images(specs, shape, count: int, seed: int):
    """``count`` images of the query sources from another seed than the steal's (none bought)."""
    import numpy as np

    from copycat_tf.queries import open_query_source

    stream = open_query_source(specs, shape, seed=seed).queries()
    try:
        return np.stack([q.image for q in (next(stream) for _ in range(count)) if q.image is not None])
    finally:
        stream.close()


def _views(shape):
    """Random crop-resize, flip, brightness/contrast and (colour) saturation and grayscale."""
    import numpy as np
    import tensorflow as tf

    height, width, channels = shape

    def augment(batch):
        n = tf.shape(batch)[0]
        scale = tf.random.uniform([n], 0.35, 1.0)
        ratio = tf.exp(tf.random.uniform([n], np.log(3 / 4), np.log(4 / 3)))
        h, w = tf.minimum(tf.sqrt(scale / ratio), 1.0), tf.minimum(tf.sqrt(scale * ratio), 1.0)
        y0, x0 = tf.random.uniform([n]) * (1 - h), tf.random.uniform([n]) * (1 - w)
        out = tf.image.crop_and_resize(batch, tf.stack([y0, x0, y0 + h, x0 + w], 1), tf.range(n), (height, width))
        out = tf.where(tf.random.uniform([n, 1, 1, 1]) < 0.5, tf.image.flip_left_right(out), out) / 255.0
        mean = tf.reduce_mean(out, [1, 2, 3], keepdims=True)
        out = (out - mean) * tf.random.uniform([n, 1, 1, 1], 0.6, 1.4) + mean + tf.random.uniform([n, 1, 1, 1], -0.3, 0.3)
        if channels == 3:
            gray = tf.reduce_mean(out, -1, keepdims=True)
            out = gray + (out - gray) * tf.random.uniform([n, 1, 1, 1], 0.4, 1.6)
            out = tf.where(tf.random.uniform([n, 1, 1, 1]) < 0.2, tf.repeat(gray, 3, -1), out)
        return tf.clip_by_value(out, 0, 1) * 255.0

    return augment


def simclr_pretrained(shape, num_classes: int, images, epochs: int, path: Path) -> Path:
    """A ``small_cnn`` whose layers up to its 128-unit dense layer are SimCLR-pretrained."""
    import keras
    import numpy as np
    import tensorflow as tf

    from copycat_tf.models import build

    model = build("small_cnn", shape, num_classes)
    features = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    encoder = keras.Model(model.input, features.output)
    head = keras.Sequential([keras.layers.Dense(128, activation="relu"), keras.layers.Dense(64)])
    optimizer = keras.optimizers.Adam(1e-3)
    augment = _views(shape)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            views = [tf.math.l2_normalize(head(encoder(augment(batch), training=True), training=True), 1)
                     for _ in range(2)]
            z = tf.concat(views, 0)
            n = tf.shape(views[0])[0]
            logits = tf.matmul(z, z, transpose_b=True) / 0.2 - 1e9 * tf.eye(2 * n)
            positives = tf.concat([tf.range(n, 2 * n), tf.range(n)], 0)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(positives, logits))
        variables = encoder.trainable_variables + head.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rng = np.random.default_rng(0)
    pixels = images.astype(np.float32)
    for epoch in range(epochs):
        order = rng.permutation(len(pixels))
        losses = [float(step(tf.constant(pixels[order[s:s + 256]]))) for s in range(0, len(pixels) - 255, 256)]
        print(f"  SimCLR epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f}", file=sys.stderr)
    model.save(path)
    return path


def self_distilled(run: Path, shape, num_classes: int, images, epochs: int, path: Path) -> Path:
    """A student from the last scout: oracle labels on the fake set + the copycat's answers on ``images``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from copycat_tf.fakeset import FakeSet
    from copycat_tf.strategies import ROUNDS_FOLDER

    height, width, channels = shape
    shards = list(FakeSet.open(run / "fakeset").iter_shards())
    x_fake = np.concatenate([s["images"] for s in shards]).astype(np.float32)
    y_fake = keras.utils.to_categorical(np.concatenate([s["labels"] for s in shards]), num_classes).astype(np.float32)
    teacher = keras.models.load_model(run / "copycat" / "copycat.keras", compile=False)
    # the balanced strategy's last scout, which the steal's copycat started from
    student = keras.models.load_model(sorted((run / "fakeset" / ROUNDS_FOLDER).glob("scout-*.keras"))[-1],
                                      compile=False)
    steps = epochs * (len(images) // 128)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps))

    def augment(batch):
        n = tf.shape(batch)[0]
        padded = tf.image.resize_with_crop_or_pad(batch, height + height // 4, width + width // 4)
        out = tf.map_fn(lambda image: tf.image.random_crop(image, (height, width, channels)), padded)
        out = tf.where(tf.random.uniform([n, 1, 1, 1]) < 0.5, tf.image.flip_left_right(out), out)
        # random erasing: a rectangle of 20-50% of each side filled with noise, on half the images
        eh = tf.cast(tf.random.uniform([n], 0.2, 0.5) * height, tf.int32)
        ew = tf.cast(tf.random.uniform([n], 0.2, 0.5) * width, tf.int32)
        y0 = tf.cast(tf.random.uniform([n]) * tf.cast(height - eh, tf.float32), tf.int32)
        x0 = tf.cast(tf.random.uniform([n]) * tf.cast(width - ew, tf.float32), tf.int32)
        rows, cols = tf.range(height)[None, :, None], tf.range(width)[None, None, :]
        box = ((rows >= y0[:, None, None]) & (rows < (y0 + eh)[:, None, None])
               & (cols >= x0[:, None, None]) & (cols < (x0 + ew)[:, None, None]))
        box &= tf.random.uniform([n, 1, 1]) < 0.5
        return tf.where(box[..., None], tf.random.uniform(tf.shape(out), 0, 255), out)

    @tf.function
    def step(x_labelled, y_labelled, x_free):
        x_free = augment(x_free)
        x = tf.concat([x_labelled, x_free], 0)
        y = tf.concat([y_labelled, teacher(x_free, training=False)], 0)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(y, student(x, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, student.trainable_variables), student.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    pixels = images.astype(np.float32)
    for epoch in range(epochs):
        order = rng.permutation(len(pixels))
        losses = []
        for start in range(0, len(pixels) - 127, 128):
            chosen = rng.integers(0, len(x_fake), 32)
            losses.append(float(step(tf.constant(x_fake[chosen]), tf.constant(y_fake[chosen]),
                                     tf.constant(pixels[order[start:start + 128]]))))
        print(f"  distillation epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f}", file=sys.stderr)
    student.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished `copycat-tf steal` folder (balanced strategy)")
    parser.add_argument("target", help="the target it was stolen from")
    parser.add_argument("--eval-data", action="append", required=True, help="held-out image folders, repeatable")
    parser.add_argument("--levers", default=",".join(LEVERS))
    parser.add_argument("--unlabelled", type=int, default=20_000, help="query-source images used without labels")
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--distill-epochs", type=int, default=6)
    parser.add_argument("--work", type=Path, default=Path("runs/levers"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import keras

    from copycat_tf.datasets import load_labelled
    from copycat_tf.evaluation import agreement
    from copycat_tf.fakeset import FakeSet
    from copycat_tf.oracle import OnnxOracle
    from copycat_tf.training import TrainConfig, train_copycat

    keras.utils.set_random_seed(0)
    record = json.loads((args.run / "steal.json").read_text())
    oracle = OnnxOracle(args.target)
    shape, num_classes = oracle.contract.image_shape, oracle.contract.num_classes
    work = args.work / args.run.name
    work.mkdir(parents=True, exist_ok=True)
    held_out = [load_labelled(spec, image_shape=shape) for spec in args.eval_data]
    answers = [oracle.query(test.images).labels for test in held_out]

    def scores(model_path: Path) -> list[float]:
        model = keras.models.load_model(model_path, compile=False)
        return [agreement(truth, model.predict(test.images, verbose=0).argmax(1))
                for test, truth in zip(held_out, answers)]

    reference = scores(args.run / "copycat" / "copycat.keras")
    names = [Path(spec).name for spec in args.eval_data]
    print(f"{args.run} ({record['budget']:,} queries of {', '.join(record['queries'])}, seed {record['seed']})")
    print(f"{'copy':<12}" + "".join(f"{name:>14}{'ratio':>8}" for name in names) + f"{'wall':>8}")
    print(f"{'steal':<12}" + "".join(f"{value:>14.3f}{'1.000':>8}" for value in reference))
    config = TrainConfig(balance=record["copycat"]["balance"], seed=record["seed"])
    fakeset = FakeSet.open(args.run / "fakeset")
    images = None
    for lever in args.levers.split(","):
        started = time.perf_counter()
        if lever != "scratch" and images is None:
            images = unlabelled_images(record["queries"], shape, args.unlabelled, seed=record["seed"] + 1000)
        if lever == "scratch":
            model = train_copycat(fakeset, work / "scratch", config).keras_path
        elif lever == "pretrained":
            initial = simclr_pretrained(shape, num_classes, images, args.pretrain_epochs, work / "simclr.keras")
            model = train_copycat(fakeset, work / "pretrained", config, initial_model=initial).keras_path
        elif lever == "distilled":
            model = self_distilled(args.run, shape, num_classes, images, args.distill_epochs, work / "distilled.keras")
        else:
            parser.error(f"unknown lever {lever!r}; choose from {', '.join(LEVERS)}")
        values = scores(model)
        print(f"{lever:<12}" + "".join(f"{v:>14.3f}{v / r if r else float('nan'):>8.3f}" for v, r in zip(values, reference))
              + f"{time.perf_counter() - started:>7.0f}s", flush=True)


if __name__ == "__main__":
    main()
