"""Training: targets, copycats from real fake datasets, the input pipeline, balancing,
fine-tuning, resume, divergence and every bad input the library refuses."""

import json
import math

import numpy as np
import onnxruntime as ort
import pytest
from onnx_factory import make_linear_classifier
from PIL import Image

from copycat_tf.contract import Preprocessing
from copycat_tf.errors import CopycatError
from copycat_tf.oracle import OnnxOracle
from copycat_tf.execution import Execution
from copycat_tf.training import TrainConfig, load_target_data, train_copycat, train_target
from copycat_tf.training.data import (
    class_weights,
    make_augmenter,
    make_training_data,
    replication_copies,
    replication_factors,
    validation_mask,
)


@pytest.fixture(scope="module")
def digits_fakeset(make_fakeset, digits_target, digits_queries):
    """Hard labels from the digits target for digit images and uniform noise."""
    return make_fakeset(digits_target.path, [f"{digits_queries}:0.7", "noise:uniform:0.3"], 1500)


@pytest.fixture(scope="module")
def trained(digits_fakeset, tmp_path_factory):
    out = tmp_path_factory.mktemp("copycat")
    return train_copycat(digits_fakeset, out, TrainConfig(epochs=8, seed=0))


def _onnx_input(path):
    """Input name, shape (dynamic axes as None, whatever their symbol) and type."""
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0]
    return meta.name, [d if isinstance(d, int) else None for d in meta.shape], meta.type


def _state(out_dir):
    return json.loads((out_dir / "training.json").read_text())


def _stop_after_first_epoch():
    """A Keras callback standing in for a kill: it interrupts fit once epoch 1 is saved."""
    import keras

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    return Stop()


# ------------------------------------------------------------------------------ targets


def test_digits_target_is_accurate_and_carded(digits_target):
    assert digits_target.test_accuracy > 0.9
    assert digits_target.max_abs_diff <= 1e-4
    card = json.loads(digits_target.card_path.read_text())
    assert card["dataset"] == "digits" and card["arch"] == "small_cnn"
    assert card["classes"] == [str(d) for d in range(10)]
    assert card["image_shape"] == [8, 8, 1] and card["epochs"] == 10
    assert card["test_accuracy"] == digits_target.test_accuracy
    oracle = OnnxOracle(digits_target.path)
    assert card["sha256"] == oracle.identity
    assert oracle.metadata["copycat_tf.role"] == "target"
    assert json.loads(oracle.metadata["copycat_tf.class_names"]) == card["classes"]


def test_folder_dataset_holds_out_a_seeded_fifth(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog", "fox"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (14, 12, 3), dtype=np.uint8)).save(
                tmp_path / "data" / name / f"{i}.png")
    spec = str(tmp_path / "data")
    train, test = load_target_data(spec, image_shape=(12, 12, 3), seed=3)
    assert (len(train.images), len(test.images)) == (24, 6)
    again, _ = load_target_data(spec, image_shape=(12, 12, 3), seed=3)
    np.testing.assert_array_equal(train.images, again.images)
    result = train_target(spec, tmp_path / "t.onnx", TrainConfig(arch="small_cnn", epochs=1), image_shape=(12, 12, 3))
    assert result.card["classes"] == ["cat", "dog", "fox"]
    assert result.card["test_images"] == 6 and result.card["image_shape"] == [12, 12, 3]
    assert OnnxOracle(result.path).contract.image_shape == (12, 12, 3)


@pytest.mark.parametrize("spec, fragment", [
    ("digits:test", "give the name alone"),
    ("cifar10", "unknown dataset 'cifar10'"),
])
def test_bad_target_dataset_names(spec, fragment, tmp_path):
    with pytest.raises(CopycatError) as error:
        train_target(spec, tmp_path / "t.onnx", TrainConfig(arch="small_cnn"))
    assert fragment in str(error.value)


def test_target_needs_labels_and_an_onnx_name(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((10, 8, 8), np.uint8))
    with pytest.raises(CopycatError, match="has no labels"):
        train_target(str(tmp_path / "x.npz"), tmp_path / "t.onnx", TrainConfig(arch="small_cnn"))
    with pytest.raises(CopycatError, match="must end in .onnx"):
        train_target("digits", tmp_path / "t.keras", TrainConfig(arch="small_cnn"))
    with pytest.raises(CopycatError, match="unknown architecture 'lenet'"):
        train_target("digits", tmp_path / "t.onnx", TrainConfig(arch="lenet"))


def test_missing_fashion_mnist_says_how_to_get_it(monkeypatch, tmp_path):
    import keras

    from copycat_tf import datasets

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", (tmp_path / "nowhere",))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(CopycatError, match="apt-get install dataset-fashion-mnist"):
        train_target("fashion-mnist", tmp_path / "t.onnx", TrainConfig(arch="small_cnn"))


# ----------------------------------------------------------------------------- copycats


def test_copycat_learns_the_target_and_replaces_it(trained, digits_target, digits_fakeset):
    from copycat_tf.datasets import load_labelled

    out = trained.out_dir
    for name in ("copycat.keras", "copycat.onnx", "checkpoints/main.keras"):
        assert (out / name).is_file(), name
    assert list((out / "logs" / "main").rglob("events.out.tfevents.*")), "no TensorBoard logs"
    state = _state(out)
    assert state["finished"] and state["stages"]["main"]["epochs_done"] == 8
    assert state["stages"]["main"]["fakeset"]["oracle_sha256"] == digits_fakeset.oracle_sha256
    assert len(trained.history["main"]["val_agreement"]) == 8
    assert trained.validation_agreement == state["validation_agreement"] > 0.6
    assert trained.max_abs_diff <= 1e-4
    # A drop-in replacement: same input name, shape and dtype as the target.
    assert _onnx_input(trained.onnx_path) == _onnx_input(digits_target.path)
    copycat = OnnxOracle(trained.onnx_path)
    assert copycat.metadata["copycat_tf.role"] == "copycat"
    assert copycat.metadata["copycat_tf.target_sha256"] == digits_fakeset.oracle_sha256
    assert copycat.metadata["copycat_tf.queries"] == str(digits_fakeset.queries_spent)
    test = load_labelled("digits:test")
    assert np.mean(copycat.query(test.images).labels == test.labels) > 0.75


def test_rerun_after_completion_trains_nothing(trained, digits_fakeset):
    before = (trained.out_dir / "copycat.onnx").stat().st_mtime_ns
    again = train_copycat(digits_fakeset, trained.out_dir, TrainConfig(epochs=8, seed=0))
    assert again.already_trained
    assert again.history == trained.history
    assert (trained.out_dir / "copycat.onnx").stat().st_mtime_ns == before


def test_overwrite_starts_over(digits_fakeset, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_copycat(digits_fakeset, tmp_path, TrainConfig(epochs=2), callbacks=[_stop_after_first_epoch()])
    (tmp_path / "notes.txt").write_text("mine")  # a user's file beside the run survives --overwrite
    result = train_copycat(digits_fakeset, tmp_path, TrainConfig(epochs=1, seed=1), execution=Execution(overwrite=True))
    assert not result.already_trained
    state = _state(tmp_path)
    assert state["config"]["seed"] == 1 and state["stages"]["main"]["starts"] == [0]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_foreign_or_overlapping_output_folder_is_refused(digits_fakeset, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CopycatError, match="holds no copycat run"):
        train_copycat(digits_fakeset, tmp_path, TrainConfig(epochs=1))
    with pytest.raises(CopycatError, match="overlap"):
        train_copycat(digits_fakeset, digits_fakeset.directory / "copycat", TrainConfig(epochs=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_rerun_with_other_settings_is_refused(trained, digits_fakeset):
    with pytest.raises(CopycatError, match="arch 'small_cnn' vs now 'alexnet'"):
        train_copycat(digits_fakeset, trained.out_dir, TrainConfig(arch="alexnet", epochs=8))


def test_soft_labels_train_on_probabilities(make_fakeset, digits_target, digits_queries, tmp_path):
    fakeset = make_fakeset(digits_target.path, [digits_queries], 600, labels="soft")
    result = train_copycat(fakeset, tmp_path, TrainConfig(labels="soft", epochs=2))
    assert len(result.history["main"]["loss"]) == 2
    assert result.model.loss.__class__.__name__ == "CategoricalCrossentropy"
    assert result.max_abs_diff <= 1e-4


def test_soft_labels_need_probabilities(digits_fakeset, tmp_path):
    with pytest.raises(CopycatError, match="holds hard labels only"):
        train_copycat(digits_fakeset, tmp_path, TrainConfig(labels="soft"))


@pytest.mark.parametrize("target_kwargs, oracle_kwargs", [
    ({"layout": "NCHW", "input_name": "data"},
     {"preprocessing": Preprocessing(mean=(124.0, 116.0, 104.0), std=(58.0, 57.0, 57.5), channel_order="bgr")}),
    ({"dtype": "uint8", "output": "logits", "input_name": "image_bytes"}, {}),
], ids=["nchw-bgr-mean-std", "uint8-logits"])
def test_copycat_takes_the_targets_own_input(target_kwargs, oracle_kwargs, tmp_path):
    target = tmp_path / "target.onnx"
    make_linear_classifier(target, image_shape=(8, 8, 3), num_classes=4, **target_kwargs)
    from copycat_tf.fakeset import label

    oracle = OnnxOracle(target, **oracle_kwargs)
    fakeset = label(oracle, ["noise:uniform"], 200, tmp_path / "fake", seed=0)
    result = train_copycat(fakeset, tmp_path / "copycat", TrainConfig(epochs=1))
    assert result.max_abs_diff <= 1e-4
    assert _onnx_input(result.onnx_path) == _onnx_input(target)
    copycat_contract = OnnxOracle(result.onnx_path).contract
    assert copycat_contract.input == oracle.contract.input
    assert copycat_contract.preprocessing == oracle.contract.preprocessing
    # Fed the very tensor the target takes, the copycat's ONNX answers like its Keras model.
    images = next(fakeset.iter_shards())["images"][:16]
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    raw = session.run(None, {session.get_inputs()[0].name: oracle.contract.to_model_input(images)})[0]
    expected = result.model.predict(images.astype(np.float32), verbose=0)
    got = np.exp(raw) if oracle.contract.output.kind == "logits" else raw
    np.testing.assert_allclose(got, expected, atol=1e-4)


# ------------------------------------------------------------------------------ pipeline


def test_validation_slice_is_exact_disjoint_and_seeded():
    mask = validation_mask(1000, 0.1, seed=4)
    assert mask.sum() == 100
    np.testing.assert_array_equal(mask, validation_mask(1000, 0.1, seed=4))
    assert not np.array_equal(mask, validation_mask(1000, 0.1, seed=5))
    assert validation_mask(10, 0.0, seed=0).sum() == 0
    assert validation_mask(3, 0.01, seed=0).sum() == 1  # a fraction > 0 always holds out one


def test_replication_evens_out_the_classes():
    histogram = [500, 37, 120, 0, 1]
    labels = np.repeat(np.arange(5), histogram)
    index = np.random.default_rng(0).permutation(len(labels))
    factors = replication_factors(histogram)
    copies = replication_copies(labels, index, factors, seed=0)
    for cls, count in enumerate(histogram):
        mine = copies[labels == cls]
        if count:
            assert set(np.unique(mine)) <= {int(np.floor(factors[cls])), int(np.ceil(factors[cls]))}
            assert abs(mine.sum() - 500) <= 10, (cls, mine.sum())  # within 2% of the largest class
    assert np.all(copies[labels == 0] == 1)
    np.testing.assert_array_equal(copies, replication_copies(labels, index, factors, seed=0))
    assert not np.array_equal(copies, replication_copies(labels, index, factors, seed=1))


def test_class_weights_make_every_class_count_equally():
    weights = class_weights([600, 300, 100, 0])
    np.testing.assert_allclose(weights[:3] * [600, 300, 100], 1000 / 3)
    assert weights[3] == 0


def _epoch(dataset):
    """Every example of one pass, order-free: sorted (label, pixel sum, weight) rows."""
    rows = []
    for batch in dataset:
        pixels, targets = batch[0].numpy(), batch[1].numpy()
        weights = batch[2].numpy() if len(batch) == 3 else np.ones(len(pixels))
        sums = pixels.reshape(len(pixels), -1).sum(axis=1)
        rows += zip(targets.tolist(), sums.tolist(), weights.tolist(), strict=True)
    return sorted(rows)


@pytest.mark.parametrize("balance", ["replicate", "weights"])
def test_streaming_and_in_memory_pipelines_train_on_the_same_examples(digits_fakeset, balance):
    options = dict(batch_size=64, balance=balance, validation_fraction=0.2, seed=3)
    memory = make_training_data(digits_fakeset, **options)
    streamed = make_training_data(digits_fakeset, in_memory_bytes=0, **options)
    assert memory.in_memory and not streamed.in_memory
    assert _epoch(memory.train) == _epoch(streamed.train)
    assert _epoch(memory.validation) == _epoch(streamed.validation)
    assert memory.validation_records == 300
    train_labels = [row[0] for row in _epoch(memory.train)]
    histogram = np.bincount(train_labels, minlength=10)
    if balance == "replicate":  # what the model sees is near-balanced
        assert histogram.min() > 0.8 * histogram.max()
    else:
        rows = np.array([(label, weight) for label, _, weight in _epoch(memory.train)])
        expected = class_weights(digits_fakeset.label_histogram)[rows[:, 0].astype(int)]
        np.testing.assert_allclose(rows[:, 1], expected, rtol=1e-6)


def test_augmentation_moves_pixels_and_keeps_shapes():
    import tensorflow as tf

    images = tf.constant(np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1)).astype(np.float32))
    out = make_augmenter(seed=0)(images, training=True).numpy()
    assert out.shape == images.shape
    assert not np.allclose(out, images.numpy())
    assert out.min() >= 0 and out.max() <= 255


# --------------------------------------------------------------------------- fine-tuning


def test_finetune_continues_from_the_first_model(digits_fakeset, make_fakeset, digits_target,
                                                 digits_queries, tmp_path):
    import keras

    second = make_fakeset(digits_target.path, [digits_queries], 400, seed=1)
    config = TrainConfig(epochs=2, finetune_epochs=1, finetune_learning_rate=1e-12)
    result = train_copycat(digits_fakeset, tmp_path, config, finetune=second)
    state = _state(tmp_path)
    assert state["stages"]["main"]["epochs_done"] == 2 and state["stages"]["finetune"]["epochs_done"] == 1
    assert len(result.history["finetune"]["loss"]) == 1
    # At a vanishing learning rate fine-tuning leaves the first model's weights as they were.
    main = keras.models.load_model(tmp_path / "checkpoints" / "main.keras", safe_mode=True)
    for before, after in zip(main.trainable_weights, result.model.trainable_weights, strict=True):
        np.testing.assert_allclose(after.numpy(), before.numpy(), atol=1e-6)
    queries = OnnxOracle(result.onnx_path).metadata["copycat_tf.queries"]
    assert queries == str(digits_fakeset.queries_spent + second.queries_spent)
    # Without the fine-tuning set, the folder's run is a different one.
    with pytest.raises(CopycatError, match="with a fine-tuning fake dataset vs now without"):
        train_copycat(digits_fakeset, tmp_path, config)


def test_finetune_refuses_another_oracles_fakeset(digits_fakeset, make_fakeset, tmp_path):
    other = tmp_path / "other.onnx"
    make_linear_classifier(other, image_shape=(8, 8, 1), num_classes=10, seed=7)
    foreign = make_fakeset(other, ["noise:uniform"], 50)
    with pytest.raises(CopycatError, match="labelled by another oracle"):
        train_copycat(digits_fakeset, tmp_path / "out", finetune=foreign)
    assert not (tmp_path / "out").exists()


def test_incomplete_fakeset_is_refused(make_fakeset, digits_target, tmp_path):
    partial = make_fakeset(digits_target.path, ["noise:uniform"], 300, oracle_budget=100)
    assert not partial.complete
    with pytest.raises(CopycatError, match="incomplete: 100 of 300 records"):
        train_copycat(partial, tmp_path)


# ----------------------------------------------------------------------- resume and NaN


def test_divergence_stops_with_the_last_good_model_kept(digits_fakeset, tmp_path):
    import keras

    with pytest.raises(KeyboardInterrupt):
        train_copycat(digits_fakeset, tmp_path, TrainConfig(epochs=3), callbacks=[_stop_after_first_epoch()])
    assert _state(tmp_path)["stages"]["main"]["epochs_done"] == 1
    with pytest.raises(CopycatError) as error:
        train_copycat(digits_fakeset, tmp_path, TrainConfig(epochs=3, learning_rate=1e10))
    checkpoint = tmp_path / "checkpoints" / "main.keras"
    assert str(error.value).startswith("training diverged to NaN at epoch 2; last good model kept at "
                                       f"{checkpoint} (epoch 1)")
    kept = keras.models.load_model(checkpoint, safe_mode=True)
    assert all(np.all(np.isfinite(w.numpy())) for w in kept.weights)
    state = _state(tmp_path)
    assert state["stages"]["main"]["epochs_done"] == 1 and not state["finished"]
    # A lower learning rate resumes from the kept epoch.
    result = train_copycat(digits_fakeset, tmp_path, TrainConfig(epochs=3))
    assert _state(tmp_path)["stages"]["main"]["starts"] == [0, 1, 1]
    assert len(result.history["main"]["loss"]) == 3
    assert np.all(np.isfinite(result.history["main"]["loss"]))


def test_divergence_in_the_first_epoch_says_nothing_was_kept(digits_fakeset, tmp_path):
    with pytest.raises(CopycatError, match="no epoch finished before it"):
        train_copycat(digits_fakeset, tmp_path, TrainConfig(epochs=1, learning_rate=1e10))


# ------------------------------------------------------------------------------- config


@pytest.mark.parametrize("options, fragment", [
    ({"arch": "lenet"}, "unknown architecture 'lenet'"),
    ({"labels": "fuzzy"}, "labels must be one of hard, soft"),
    ({"balance": "oversample"}, "balance must be one of none, replicate, weights"),
    ({"validation_fraction": 0.9}, "validation fraction must lie in [0, 0.5]"),
    ({"epochs": 0}, "epochs must be a whole number >= 1"),
    ({"batch_size": 2.5}, "batch-size must be a whole number >= 1"),
    ({"learning_rate": -1.0}, "learning-rate must be a number > 0"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of adam, sgd"),
])
def test_bad_config_values(options, fragment):
    with pytest.raises(CopycatError) as error:
        TrainConfig(**options)
    assert fragment in str(error.value)


def test_config_defaults_come_from_the_architecture():
    config = TrainConfig(arch="vgg16", epochs=3).resolved()
    assert (config.epochs, config.batch_size, config.learning_rate) == (3, 32, 1e-4)
    assert config.finetune_epochs == 3 and config.finetune_learning_rate == pytest.approx(1e-5)


def test_initial_model_starts_training_from_its_weights(digits_fakeset, trained, tmp_path):
    # One epoch at a tiny learning rate from the trained copycat keeps what it learned;
    # the same epoch from random weights does not come close.
    config = TrainConfig(epochs=1, learning_rate=1e-6, seed=0)
    warm = train_copycat(digits_fakeset, tmp_path / "warm", config, initial_model=trained.keras_path)
    cold = train_copycat(digits_fakeset, tmp_path / "cold", config)
    assert warm.validation_agreement >= trained.validation_agreement - 0.02
    assert cold.validation_agreement < warm.validation_agreement - 0.3
    assert _state(tmp_path / "warm")["stages"]["main"]["initial_model"] is not None
    other = tmp_path / "other.keras"
    other.write_bytes(trained.keras_path.read_bytes() + b"\0")
    (tmp_path / "warm" / "training.json").write_text(
        (tmp_path / "warm" / "training.json").read_text().replace('"finished": true', '"finished": false', 1))
    with pytest.raises(CopycatError, match="another initial model"):
        train_copycat(digits_fakeset, tmp_path / "warm", config, initial_model=other)
    with pytest.raises(CopycatError, match="does not exist"):
        train_copycat(digits_fakeset, tmp_path / "new", config, initial_model=tmp_path / "missing.keras")


def test_default_epochs_give_small_fake_datasets_enough_steps_unless_epochs_are_given():
    from copycat_tf.training import MAX_EPOCHS_FACTOR, MIN_TRAINING_STEPS

    default = TrainConfig().resolved().epochs
    assert TrainConfig().resolved(records=30_000).epochs == default  # enough steps already
    at_10k = TrainConfig().resolved(records=10_000)
    assert at_10k.epochs == 8 and at_10k.finetune_epochs == default
    steps = math.ceil(9_000 / at_10k.batch_size)  # a tenth is held out for validation
    assert steps * at_10k.epochs >= MIN_TRAINING_STEPS > steps * (at_10k.epochs - 1)
    assert default < TrainConfig().resolved(records=5_000).epochs < TrainConfig().resolved(records=1_000).epochs
    assert TrainConfig().resolved(records=10).epochs == MAX_EPOCHS_FACTOR * default
    assert TrainConfig(epochs=2).resolved(records=1_000).epochs == 2
    no_holdout = TrainConfig(validation_fraction=0.0).resolved(records=10_000)
    assert no_holdout.epochs == math.ceil(MIN_TRAINING_STEPS / math.ceil(10_000 / no_holdout.batch_size))


def test_train_copycat_raises_default_epochs_by_the_fake_datasets_size(digits_fakeset, tmp_path):
    config = TrainConfig(batch_size=12)  # 113 steps an epoch on 1,350 training records: 5 epochs, not 4
    expected = config.resolved(records=digits_fakeset.count).epochs
    assert expected > config.resolved().epochs
    result = train_copycat(digits_fakeset, tmp_path, config)
    main = _state(tmp_path)["stages"]["main"]
    assert main["epochs"] == main["epochs_done"] == expected
    assert len(result.history["main"]["loss"]) == expected
