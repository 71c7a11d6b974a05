"""Query strategies: transforms, stream selection, class quotas and the balanced rounds."""

import json

import numpy as np
import pytest
from onnx_factory import make_linear_classifier

from copycat_tf.errors import CopycatError
from copycat_tf.fakeset import FakeSet, label
from copycat_tf.oracle import OnnxOracle
from copycat_tf.queries import QueryTransforms, open_query_source
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.strategies import REGISTRY, BalancedStrategy, PaperStrategy, Strategy, choose_by_class, strategy_named
from copycat_tf.training import TrainConfig
from copycat_tf.training.data import sqrt_class_weights

# ------------------------------------------------------------------------ transforms

def _images(source, n, start=0):
    return [q for _, q in zip(range(n), source.queries(start))]


def test_transforms_are_drawn_per_position_and_keep_shape_and_dtype():
    transforms = QueryTransforms(share=1.0)
    a = _images(open_query_source("photos", (20, 24, 3), seed=3, transforms=transforms), 40)
    b = _images(open_query_source("photos", (20, 24, 3), seed=3, transforms=transforms), 20, start=20)
    for q in a:
        assert q.image.shape == (20, 24, 3) and q.image.dtype == np.uint8
        assert "~" in q.key  # the change is named in the record key
    # resuming at position 20 redraws exactly the same changes
    assert [q.key for q in a[20:]] == [q.key for q in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a[20:], b))


def test_transforms_change_pixels_and_share_zero_is_the_plain_stream():
    plain = _images(open_query_source("photos", (16, 16, 1), seed=1), 30)
    none = _images(open_query_source("photos", (16, 16, 1), seed=1, transforms=QueryTransforms(share=0.0)), 30)
    changed = _images(open_query_source("photos", (16, 16, 1), seed=1, transforms=QueryTransforms(share=1.0)), 30)
    assert all(np.array_equal(p.image, n.image) and p.key == n.key for p, n in zip(plain, none))
    differing = sum(not np.array_equal(p.image, c.image) for p, c in zip(plain, changed))
    assert differing >= 25


def test_each_transform_does_what_it_says():
    from copycat_tf.queries import TransformDraw

    image = np.tile(np.arange(0, 200, 25, dtype=np.uint8)[None, :, None], (8, 1, 1))  # 8x8 ramp
    nothing = dict(edges=False, autocontrast=False, gamma=None, threshold=None, blur=None, invert=False, place=None)
    assert np.array_equal(TransformDraw(**{**nothing, "invert": True}).apply(image), 255 - image)
    stretched = TransformDraw(**{**nothing, "autocontrast": True}).apply(image)
    assert stretched.min() == 0 and stretched.max() == 255
    placed = TransformDraw(**{**nothing, "place": (0.5, 0.0, 0.0, 255)}).apply(image)
    assert (placed[4:, :] == 255).all() and (placed[:, 4:] == 255).all() and placed.shape == image.shape
    edges = TransformDraw(**{**nothing, "edges": True}).apply(np.full((8, 8, 1), 90, np.uint8))
    assert (edges == 0).all()  # a flat image has no edges
    step = np.zeros((8, 8, 1), np.uint8)
    step[:, 4:] = 200
    blurred = TransformDraw(**{**nothing, "blur": 0.2}).apply(step).astype(int)
    assert np.abs(np.diff(blurred, axis=1)).max() < 200 and 0 < blurred[0, 3, 0] < blurred[0, 4, 0] < 200
    assert TransformDraw(**{**nothing, "gamma": 2.0}).apply(image)[0, 4] < image[0, 4]


def test_transform_probabilities_are_checked():
    with pytest.raises(CopycatError, match="invert"):
        QueryTransforms(invert=1.5)


# ------------------------------------------------------------------------- selection

def test_select_yields_only_the_chosen_positions_and_ends_after_the_last():
    source = open_query_source("noise:uniform", (4, 4, 1), seed=0)
    everything = _images(source, 50)
    view = source.select("balanced", [7, 3, 41, 7])
    chosen = list(view.queries())
    assert [q.position for q in chosen] == [3, 7, 41]
    assert all(np.array_equal(q.image, everything[q.position].image) for q in chosen)
    assert [q.position for q in view.queries(start=8)] == [41]
    assert view.config()["selection"] == "balanced" and "selection" not in source.config()


# -------------------------------------------------------------------------- quotas

def test_choose_by_class_favours_rare_classes():
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(3), size=3000)
    chosen = choose_by_class(scores, [5000, 50, 0], 300, np.random.default_rng(1))
    assert len(chosen) == 300 and len(set(chosen.tolist())) == 300
    top = scores[chosen].argmax(axis=1)
    counts = np.bincount(top, minlength=3)
    assert counts[2] > counts[1] > counts[0]


def test_choose_by_class_never_asks_for_more_than_the_pool():
    chosen = choose_by_class(np.full((5, 2), 0.5), [1, 1], 10, np.random.default_rng(0))
    assert sorted(chosen.tolist()) == [0, 1, 2, 3, 4]


def test_sqrt_class_weights_are_tempered_and_capped():
    assert sqrt_class_weights([400, 100, 1, 0]).tolist() == [1.0, 2.0, 10.0, 0.0]


def test_schedule_splits_the_budget_in_rounds():
    assert BalancedStrategy().schedule(10_000) == [2000, 4000, 6000, 8000, 10_000]
    assert BalancedStrategy.default_rounds(30_000) == 6
    assert BalancedStrategy.default_rounds(500) == 2
    assert BalancedStrategy(rounds=3).schedule(10) == [3, 7, 10]
    with pytest.raises(CopycatError, match="pool-factor"):
        BalancedStrategy(pool_factor=0)


# --------------------------------------------------------------- the balanced rounds

@pytest.fixture
def tiny_target(tmp_path):
    path = tmp_path / "target.onnx"
    make_linear_classifier(path, image_shape=(8, 8, 1), num_classes=4, seed=2)
    return path


ROUNDS = BalancedStrategy(rounds=3, pool_factor=4, scout_epochs=1)
CONFIG = TrainConfig(balance="sqrt-weights")
PHOTOS = QuerySpec(("photos",), batch_size=32)


def collect(oracle, budget, out, strategy=ROUNDS, config=CONFIG, queries=PHOTOS):
    return strategy.collect(oracle, queries, budget, out, config=config)


def test_balanced_collect_fills_the_budget_in_rounds(tiny_target, tmp_path):
    oracle = OnnxOracle(tiny_target)
    collection = collect(oracle, 240, tmp_path / "fake")
    fakeset = collection.fakeset
    assert fakeset.count == 240 and fakeset.complete and fakeset.queries_spent == 240
    rounds = tmp_path / "fake" / "rounds"
    assert sorted(p.name for p in rounds.iterdir()) == [
        "scout-00.keras", "scout-01.keras", "selection-01.json", "selection-02.json"]
    assert collection.start_model == rounds / "scout-01.keras"
    # each later round bought exactly the positions its selection file names, in order
    selections = [json.loads((rounds / f"selection-0{r}.json").read_text()) for r in (1, 2)]
    assert [len(s["positions"]) for s in selections] == [80, 80]
    assert selections[0]["start"] >= 80 and selections[1]["start"] == selections[0]["stop"]
    source = open_query_source("photos", (8, 8, 1), seed=0, transforms=ROUNDS.transforms)
    chosen = sum((s["positions"] for s in selections), [])
    expected = [q.key for q in source.select("balanced", chosen).queries()]
    keys = np.concatenate([shard["keys"] for shard in fakeset.iter_shards()]).tolist()
    assert keys[80:] == expected
    assert keys[:80] == [q.key for q in _images(source, 80)]


def test_scouts_train_under_the_runs_config(tiny_target, tmp_path):
    # soft labels and SGD from the run's TrainConfig reach the scouts (not a private recipe)
    config = TrainConfig(labels="soft", optimizer="sgd", balance="none", seed=3)
    collection = collect(OnnxOracle(tiny_target), 120, tmp_path / "fake", config=config)
    import keras

    scout = keras.models.load_model(collection.start_model, safe_mode=True)
    assert type(scout.optimizer).__name__ == "SGD"
    assert type(scout.loss).__name__ == "CategoricalCrossentropy"
    assert collection.fakeset.has_probabilities


def test_balanced_rerun_buys_nothing_and_resumes_an_interrupted_round(tiny_target, tmp_path):
    whole = collect(OnnxOracle(tiny_target), 240, tmp_path / "whole").fakeset
    # the same run, with the oracle's budget running out in the middle of round 2
    out = tmp_path / "cut"
    cut = collect(OnnxOracle(tiny_target, budget=130), 240, out).fakeset
    assert cut.count == 130 and not cut.complete
    resumed = collect(OnnxOracle(tiny_target), 240, out).fakeset
    assert resumed.count == 240 and resumed.queries_spent == 240
    again = collect(OnnxOracle(tiny_target), 240, out).fakeset
    assert again.queries_spent == 240
    # round 1's selection was made before the cut, so the records up to the cut are the same
    keys_whole = np.concatenate([s["keys"] for s in whole.iter_shards()])
    keys_resumed = np.concatenate([s["keys"] for s in resumed.iter_shards()])
    assert (keys_resumed[:130] == keys_whole[:130]).all()


def test_balanced_reaches_classes_the_plain_stream_misses(tmp_path):
    # A target that answers class 0 for almost every natural photo crop.
    path = tmp_path / "skewed.onnx"
    make_linear_classifier(path, image_shape=(8, 8, 1), num_classes=3, seed=5)
    plain = label(OnnxOracle(path), ["photos"], 300, tmp_path / "plain", seed=0)
    balanced = collect(OnnxOracle(path), 300, tmp_path / "balanced",
                       strategy=BalancedStrategy(rounds=3, pool_factor=5, scout_epochs=2),
                       queries=QuerySpec(("photos",))).fakeset
    plain_min = min(plain.label_histogram)
    assert min(balanced.label_histogram) >= plain_min
    assert max(balanced.label_histogram) <= max(plain.label_histogram)


def test_paper_strategy_is_plain_labeling(tiny_target, tmp_path):
    paper = collect(OnnxOracle(tiny_target), 100, tmp_path / "paper", strategy=PaperStrategy(),
                    config=TrainConfig(seed=4), queries=QuerySpec(("photos",)))
    plain = label(OnnxOracle(tiny_target), ["photos"], 100, tmp_path / "plain", seed=4)
    keys = lambda f: np.concatenate([s["keys"] for s in f.iter_shards()]).tolist()  # noqa: E731
    assert keys(paper.fakeset) == keys(plain) and paper.start_model is None


def test_strategies_are_registered_by_name_and_check_their_own_parameters():
    assert set(REGISTRY) == {"paper", "balanced"} and all(issubclass(c, Strategy) for c in REGISTRY.values())
    assert isinstance(strategy_named("balanced"), BalancedStrategy) and strategy_named(ROUNDS) is ROUNDS
    with pytest.raises(CopycatError, match="strategy must be one of balanced, paper; received 'greedy'"):
        strategy_named("greedy")
    with pytest.raises(CopycatError, match="scout-learning-rate must be a number > 0"):
        BalancedStrategy(scout_learning_rate=-1)
    assert ROUNDS.to_record() == {"name": "balanced", "rounds": 3, "pool_factor": 4, "scout_epochs": 1}
