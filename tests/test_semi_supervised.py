"""Semi-supervised training: pseudo-label selection under the weak view, the stage that trains
on pseudo-labelled images, its resume, and steal's unlabelled images that cost no query."""

import json

import numpy as np
import pytest
from cli_runner import run_cli

from copycat_tf.attack import Attack, SpendPlan
from copycat_tf.errors import CopycatError
from copycat_tf.oracle import OnnxOracle, TargetSpec
from copycat_tf.queries import open_query_source
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.strategies import strategy_named
from copycat_tf.training import TrainConfig, train_copycat, unlabelled_seed
from copycat_tf.training.data import make_training_data
from copycat_tf.training.semi_supervised import (
    PSEUDO_LABELS_FILE,
    PseudoLabels,
    mixed_training_data,
    select_pseudo_labels,
    weak_view_probabilities,
)


@pytest.fixture(scope="module")
def digits_fakeset(make_fakeset, digits_target, digits_queries):
    return make_fakeset(digits_target.path, [digits_queries], 600)


def _unlabelled(digits_queries, seed=5):
    return open_query_source([str(digits_queries)], (8, 8, 1), seed=seed)


def _state(out_dir):
    return json.loads((out_dir / "training.json").read_text())


def _mirror_sensitive_model():
    """Two classes from a 1x2 image ``[a, b]``: logit 0 - logit 1 = 0.1 (a - b) + 0.02 (a + b) - 5."""
    import keras

    model = keras.Sequential([keras.Input((1, 2, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.layers[-1].set_weights([np.array([[0.12, 0.0], [-0.08, 0.0]], np.float32), np.array([-5.0, 0.0], np.float32)])
    return model


def test_weak_view_averages_an_image_and_its_mirror_before_the_threshold():
    images = np.array([[255, 255], [255, 0], [0, 0], [128, 128]], np.uint8).reshape(4, 1, 2, 1)
    probabilities = weak_view_probabilities(_mirror_sensitive_model(), images, batch_size=2)

    def softmax0(a, b):
        return 1 / (1 + np.exp(-(0.1 * (a - b) + 0.02 * (a + b) - 5)))

    expected0 = [(softmax0(a, b) + softmax0(b, a)) / 2 for a, b in ((255, 255), (255, 0), (0, 0), (128, 128))]
    np.testing.assert_allclose(probabilities[:, 0], expected0, atol=1e-5)
    chosen, labels, confidence = select_pseudo_labels(probabilities, 0.95)
    # [255, 0] alone is class 0 beyond doubt, its mirror class 1: averaged, it is dropped.
    assert softmax0(255, 0) > 0.99 and softmax0(0, 255) < 0.01
    assert chosen.tolist() == [True, False, True, False]
    assert labels[chosen].tolist() == [0, 1]
    assert confidence[1] == pytest.approx(0.5, abs=1e-4)


def test_the_threshold_keeps_probabilities_that_reach_it():
    probabilities = np.array([[0.95, 0.05], [0.05, 0.95], [0.9, 0.1]], np.float32)
    chosen, labels, _ = select_pseudo_labels(probabilities, 0.95)
    assert chosen.tolist() == [True, True, False] and labels.tolist() == [0, 1, 0]
    assert select_pseudo_labels(probabilities, 0.9)[0].all()


@pytest.mark.parametrize("soft", [False, True])
def test_each_training_batch_carries_its_share_of_pseudo_labelled_images(make_fakeset, digits_target,
                                                                          digits_queries, soft):
    fakeset = make_fakeset(digits_target.path, [digits_queries], 600, labels="soft" if soft else "hard")
    data = make_training_data(fakeset, batch_size=60, labels="soft" if soft else "hard", seed=0)
    images = np.full((90, 8, 8, 1), 7, np.uint8)
    pseudo = PseudoLabels(np.arange(90), np.full(90, 3, np.int64), np.ones(90, np.float32), images, 90)
    mixed = mixed_training_data(data, pseudo, num_classes=10, soft=soft, batch_size=60, seed=0)
    pixels, targets = next(iter(mixed.train))
    share = round(60 * 90 / data.train_records)  # 10 pseudo-labelled images per 60 records
    assert pixels.shape == (60 + share, 8, 8, 1) and targets.shape[0] == 60 + share
    extra = targets.numpy()[60:]
    assert (extra.argmax(1) == 3).all() and (extra.sum(1) == 1).all() if soft else (extra == 3).all()
    # Strongly augmented: the flat grey images come back changed.
    assert not np.allclose(pixels.numpy()[60:], 7)
    assert mixed.validation is data.validation
    assert sum(1 for _ in mixed.train) == sum(1 for _ in data.train)  # an epoch is the fake dataset's


def test_the_stage_trains_on_pseudo_labels_and_changes_the_model(digits_fakeset, digits_queries, tmp_path):
    import keras

    config = TrainConfig(epochs=10, semi_supervised=True, semi_epochs=2, pseudo_label_threshold=0.5,
                         unlabelled_count=500)
    result = train_copycat(digits_fakeset, tmp_path, config, unlabelled=_unlabelled(digits_queries))
    semi = _state(tmp_path)["stages"]["semi"]
    assert semi["epochs_done"] == 2 and semi["finished"] and len(result.history["semi"]["loss"]) == 2
    summary = semi["pseudo_labels"]
    assert summary["scanned"] == 500 and 0 < summary["selected"] < 500  # the threshold dropped some
    assert sum(summary["per_class"]) == summary["selected"] and len(summary["per_class"]) == 10
    stored = np.load(tmp_path / "checkpoints" / PSEUDO_LABELS_FILE)
    assert len(stored["labels"]) == summary["selected"] and (stored["confidence"] >= 0.5).all()
    assert np.all(np.diff(stored["positions"]) > 0)
    main = keras.models.load_model(tmp_path / "checkpoints" / "main.keras", safe_mode=True)
    assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in zip(main.trainable_weights,
                                                                      result.model.trainable_weights, strict=True))
    # No query was bought for the unlabelled images: the copycat states the fake dataset's.
    assert OnnxOracle(result.onnx_path).metadata["copycat_tf.queries"] == str(digits_fakeset.queries_spent)


def test_semi_supervised_needs_both_the_setting_and_the_images(digits_fakeset, digits_queries, tmp_path):
    with pytest.raises(CopycatError, match="pass --unlabelled SPEC"):
        train_copycat(digits_fakeset, tmp_path / "a", TrainConfig(epochs=1, semi_supervised=True))
    with pytest.raises(CopycatError, match="pass --semi-supervised"):
        train_copycat(digits_fakeset, tmp_path / "b", TrainConfig(epochs=1), unlabelled=_unlabelled(digits_queries))
    with pytest.raises(CopycatError, match="fitted to 16x16x1"):
        train_copycat(digits_fakeset, tmp_path / "c", TrainConfig(epochs=1, semi_supervised=True),
                      unlabelled=open_query_source(["noise:uniform"], (16, 16, 1)))
    with pytest.raises(CopycatError, match="threshold must lie in"):
        TrainConfig(pseudo_label_threshold=1.5)


def _stop_at_epoch(count):
    """A Keras callback standing in for a kill: it interrupts fit at the ``count``-th epoch's end
    over all stages (after that epoch's checkpoint, which the built-in callbacks save first)."""
    import keras

    class Stop(keras.callbacks.Callback):
        seen = 0

        def on_epoch_end(self, epoch, logs=None):
            Stop.seen += 1
            if Stop.seen == count:
                raise KeyboardInterrupt

    return Stop()


@pytest.mark.slow
def test_an_interrupted_semi_supervised_stage_resumes_on_the_same_pseudo_labels(digits_fakeset, digits_queries,
                                                                                 tmp_path):
    config = TrainConfig(epochs=10, semi_supervised=True, semi_epochs=3, pseudo_label_threshold=0.5,
                         unlabelled_count=300)
    with pytest.raises(KeyboardInterrupt):
        train_copycat(digits_fakeset, tmp_path, config, callbacks=[_stop_at_epoch(11)],
                      unlabelled=_unlabelled(digits_queries))
    semi = _state(tmp_path)["stages"]["semi"]
    assert semi["epochs_done"] == 1 and not semi["finished"]
    labels_file = tmp_path / "checkpoints" / PSEUDO_LABELS_FILE
    written = labels_file.read_bytes()

    # Other unlabelled images, or another threshold, are another run.
    with pytest.raises(CopycatError, match="other unlabelled images, count or threshold"):
        train_copycat(digits_fakeset, tmp_path, config, unlabelled=_unlabelled(digits_queries, seed=6))

    result = train_copycat(digits_fakeset, tmp_path, config, unlabelled=_unlabelled(digits_queries))
    state = _state(tmp_path)
    assert state["finished"] and state["stages"]["semi"]["starts"] == [0, 1]
    assert state["stages"]["main"]["starts"] == [0]  # the finished stage did not train again
    assert len(result.history["semi"]["loss"]) == 3
    assert labels_file.read_bytes() == written  # read back, not labelled again

    # A finished run given no unlabelled images is another run, not a silent reuse.
    with pytest.raises(CopycatError, match="with semi-supervised training vs now without"):
        train_copycat(digits_fakeset, tmp_path, TrainConfig(epochs=10))


def test_steal_pseudo_labels_further_images_of_its_sources_without_a_query(digits_target, digits_queries, tmp_path):
    budget = 400
    attack = Attack(TargetSpec(digits_target.path), QuerySpec((str(digits_queries),)), strategy_named("paper"),
                    TrainConfig(epochs=10, semi_supervised=True, semi_epochs=1, pseudo_label_threshold=0.5, seed=3))
    oracle = attack.open_target(budget)
    attack.commit(oracle, SpendPlan(budget), "this test")  # the oracle refuses one image more
    fakeset = attack.collect(oracle, budget, tmp_path / "fakeset").fakeset
    assert oracle.queries_spent == budget
    copycat = attack.train(fakeset, tmp_path / "copycat")
    assert oracle.queries_spent == budget  # the unlabelled images went to no oracle
    summary = _state(tmp_path / "copycat")["stages"]["semi"]["pseudo_labels"]
    assert summary["scanned"] == fakeset.count
    # They are the same array's images drawn under the unlabelled seed, not the queries' order.
    assert _state(tmp_path / "copycat")["stages"]["semi"]["unlabelled"]["source"]["seed"] == unlabelled_seed(3)
    assert unlabelled_seed(3) != 3
    assert OnnxOracle(copycat.onnx_path).metadata["copycat_tf.queries"] == str(budget)


def test_help_says_what_semi_supervision_does_and_that_it_costs_no_queries():
    for command in ("train", "steal"):
        text = " ".join(run_cli(command, "--help").stdout.split())
        assert "--semi-supervised / --no-semi-supervised" in text
        assert "Costs no queries" in text and "never sent to the target" in text
    train = " ".join(run_cli("train", "--help").stdout.split())
    assert "--unlabelled SRC[:WEIGHT]" in train and "--semi-supervised --unlabelled ./my-photos" in train


@pytest.mark.slow
def test_train_cli_runs_the_stage_on_unlabelled_images(make_fakeset, digits_target, digits_queries, tmp_path):
    fakeset = make_fakeset(digits_target.path, [digits_queries], 600)
    run_cli("train", fakeset.directory, "--unlabelled", digits_queries, "--out", tmp_path / "b").assert_clean_error(
        "pass --semi-supervised")
    result = run_cli("train", fakeset.directory, "--epochs", 2, "--semi-supervised", "--unlabelled", digits_queries,
                     "--out", tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert "2 epochs + 2 semi-supervised" in result.stdout  # its epochs default to the main stage's
    assert "semi-supervised: 600 unlabelled images from" in result.stderr


@pytest.mark.slow
def test_steal_cli_with_semi_supervision_buys_exactly_its_budget(digits_target, digits_queries, tmp_path):
    out = tmp_path / "steal"
    result = run_cli("steal", digits_target.path, "--queries", digits_queries, "--budget", 300, "--strategy", "paper",
                     "--epochs", 10, "--semi-supervised", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "(300 queries)" in result.stdout  # the headline states what was bought
    manifest = json.loads((out / "fakeset" / "manifest.json").read_text())
    assert manifest["count"] == 300 and manifest["queries_spent"] == 300
    assert json.loads((out / "steal.json").read_text())["copycat"]["semi_supervised"] is True
    semi = _state(out / "copycat")["stages"]["semi"]
    assert semi["finished"] and semi["pseudo_labels"]["scanned"] == 300
    assert OnnxOracle(out / "copycat" / "copycat.onnx").metadata["copycat_tf.queries"] == "300"
