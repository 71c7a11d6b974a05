"""PRADA replay (copycat_tf.audit.detection): the vectorised replay against a plain per-query
transcription of the algorithm, a hand-computed stream, and real Fashion-MNIST streams."""

import io

import numpy as np
import pytest
from PIL import Image

from copycat_tf.audit.detection import PradaDetector, prada_curve_png, replay_prada
from copycat_tf.datasets import load_labelled
from copycat_tf.errors import CopycatError


def plain_prada(queries, labels, delta=0.9):
    """PRADA one query at a time, in float64, as the paper and its reference code describe it."""
    x = np.asarray(queries, np.float64).reshape(len(queries), -1)
    members, joined_with, threshold = {}, {}, {}
    distances = np.full(len(x), np.nan)
    joined = np.zeros(len(x), bool)
    checks, ws, first = [], [], None
    for i, (query, c) in enumerate(zip(x, labels)):
        c = int(c)
        if c not in members:
            members[c], joined_with[c], threshold[c] = [query], [0.0], 0.0
            joined[i] = True
        else:
            d = float(np.sqrt(((np.array(members[c]) - query) ** 2).sum(axis=1)).min())
            distances[i] = d
            if d > threshold[c]:
                members[c].append(query)
                joined_with[c].append(d)
                joined[i] = True
                threshold[c] = max(threshold[c], np.mean(joined_with[c]) - np.std(joined_with[c]))
        if i % 10 == 0:
            given = {k: [j for j in range(i + 1) if labels[j] == k and not np.isnan(distances[j])] for k in members}
            pool = np.array([distances[j] for k, js in given.items() if len(js) >= 10 for j in js])
            if len(pool) > 100:
                pool = pool[np.abs(pool - pool.mean()) < 3 * pool.std()]
            if len(pool) > 100:
                from scipy.stats import shapiro

                w = shapiro(pool).statistic
                checks.append(i)
                ws.append(w)
                if w < delta and first is None:
                    first = i
    return first, np.array(checks), np.array(ws), distances, joined


@pytest.fixture(scope="module")
def fashion_test():
    test = load_labelled("fashion-mnist:test")
    return test.images.astype(np.float32) / 255.0, test.labels


def synthetic_stream(images, labels, seeds=30, step=0.1, count=3000, seed=0):
    """A Jacobian-augmentation-style attack stream (Papernot et al., 2017; the synthetic
    queries PRADA was built to catch): ``seeds`` real images, then rounds in which every
    image so far is sent again moved by ``step`` along a sign direction (random here, where
    the attack would use the sign of its substitute's Jacobian), each round doubling the set."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), seeds, replace=False)
    pool, pool_labels = images[chosen], labels[chosen]
    rounds, round_labels = [pool], [pool_labels]
    while sum(map(len, rounds)) < count:
        moved = np.clip(pool + step * np.sign(rng.normal(size=pool.shape)), 0, 1).astype(np.float32)
        rounds.append(moved)
        round_labels.append(pool_labels)
        pool, pool_labels = np.concatenate([pool, moved]), np.concatenate([pool_labels, pool_labels])
    return np.concatenate(rounds)[:count], np.concatenate(round_labels)[:count]


def test_a_hand_computed_stream():
    # one class, 1-D queries: 0 starts the set; 1 joins (d 1 > T 0; D_G = 0, 1 -> T = 0.5 - 0.5 = 0);
    # 3 joins (d 2; D_G = 0, 1, 2 -> T = 1 - 0.8165 = 0.1835); 3.5 joins (d 0.5; T stays 0.1835 as
    # 0.875 - 0.7395 = 0.1355 is lower); 3.6 stays out (d 0.1 <= T); 3.7 joins (d 0.2 to 3.5, not 3.6)
    result = replay_prada(np.array([[0.0], [1.0], [3.0], [3.5], [3.6], [3.7]]), np.zeros(6, np.int64))
    np.testing.assert_allclose(result.distances, [np.nan, 1.0, 2.0, 0.5, 0.1, 0.2], rtol=1e-6)
    np.testing.assert_array_equal(result.joined, [True, True, True, True, False, True])
    assert result.growing_set == 5 and result.queries == 6
    assert len(result.w) == 0 and result.first_alarm is None  # far fewer than 100 distances


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 5000])
def test_the_vectorised_replay_is_the_plain_algorithm(chunk_size):
    rng = np.random.default_rng(4)
    # a mixed stream: natural-looking points, near-copies of a few seeds, exact duplicates
    natural = rng.normal(size=(300, 20))
    seeds = rng.normal(size=(6, 20))
    copies = seeds[rng.integers(0, 6, 300)] + rng.normal(scale=0.02, size=(300, 20))
    stream = np.concatenate([natural, copies, copies[:40]])
    labels = np.concatenate([rng.integers(0, 4, 300), rng.integers(0, 4, 300)])
    labels = np.concatenate([labels, labels[300:340]])
    first, checks, ws, distances, joined = plain_prada(stream, labels)
    result = replay_prada(stream.astype(np.float32), labels, chunk_size=chunk_size)
    assert first is not None and result.first_alarm == first
    np.testing.assert_array_equal(result.check_indices, checks)
    np.testing.assert_allclose(result.w, ws, rtol=1e-4)
    np.testing.assert_allclose(result.distances, distances, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(result.joined, joined)
    repeats_of_members = result.joined[300:340]
    assert repeats_of_members.sum() > 10
    assert (result.distances[-40:][repeats_of_members] == 0).all()  # exact 0, not rounding noise


def test_near_duplicates_keep_their_small_distances():
    # the expanded |x|^2 + |g|^2 - 2 x.g form loses distances of 1e-3 next to norms of ~100
    rng = np.random.default_rng(5)
    base = rng.uniform(0, 1, (1, 784)).astype(np.float32)
    step = np.zeros((1, 784), np.float32)
    step[0, 0] = 1e-3
    result = replay_prada(np.concatenate([base, base + step, base + 3 * step]), np.zeros(3, np.int64))
    np.testing.assert_allclose(result.distances[1:], [1e-3, 2e-3], rtol=1e-3)


def test_feeding_shards_equals_one_replay(fashion_test):
    images, labels = synthetic_stream(*fashion_test, count=1200, seed=1)
    whole = replay_prada(images, labels)
    detector = PradaDetector()
    for start in (0, 333, 900):
        end = {0: 333, 333: 900, 900: 1200}[start]
        detector.update(images[start:end], labels[start:end])
    part = detector.result()
    assert part.first_alarm == whole.first_alarm
    np.testing.assert_array_equal(part.check_indices, whole.check_indices)
    np.testing.assert_allclose(part.w, whole.w, rtol=1e-9)
    shards = [(np.round(images[i:i + 500] * 255).astype(np.uint8), labels[i:i + 500]) for i in range(0, 1200, 500)]
    scaled = replay_prada(shards, None, transform=lambda a: a.astype(np.float32) / 255)
    assert scaled.queries == 1200 and scaled.alarmed


def test_a_synthetic_attack_stream_raises_the_alarm(fashion_test):
    images, labels = synthetic_stream(*fashion_test)
    result = replay_prada(images, labels)
    assert result.alarmed and result.first_alarm < 300  # at one of the first checks
    assert result.w[-1] < 0.8  # and W stays far below delta
    assert result.queries_to_alarm == result.first_alarm + 1


def test_natural_images_in_random_order_stay_quiet(fashion_test):
    images, labels = fashion_test
    result = replay_prada(images[:3000], labels[:3000])
    assert not result.alarmed and result.first_alarm is None
    assert len(result.w) > 250 and result.min_w > 0.9
    summary = result.to_dict()
    assert summary["first_alarm"] is None and summary["checks"] == len(summary["curve"]) == len(result.w)


def test_a_lower_delta_rings_later_or_never(fashion_test):
    images, labels = synthetic_stream(*fashion_test, count=2000)
    strict, lenient = replay_prada(images, labels, delta=0.95), replay_prada(images, labels, delta=0.4)
    assert strict.alarmed and strict.first_alarm <= (lenient.first_alarm if lenient.alarmed else 10**9)
    np.testing.assert_allclose(strict.w, lenient.w)  # delta only moves the line


def test_the_curve_is_a_png_with_every_stream(fashion_test):
    images, labels = fashion_test
    attack = replay_prada(*synthetic_stream(images, labels, count=1500))
    benign = replay_prada(images[:1500], labels[:1500])
    short = replay_prada(images[:50], labels[:50])
    png = prada_curve_png({"balanced": attack, "benign": benign, "short": short})
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.size == (700, 420)


@pytest.mark.parametrize("queries, labels, match", [
    (np.zeros((3, 4)), np.zeros(2, np.int64), "one label per query"),
    (np.full((3, 4), np.nan), np.zeros(3, np.int64), "finite"),
    (np.zeros((3, 4)), np.array([0, -1, 2]), ">= 0"),
    (np.zeros((3, 4)), np.array([0.5, 1, 2]), "whole-number labels"),
    (np.array([["a"], ["b"]]), np.zeros(2, np.int64), "numeric queries"),
])
def test_bad_streams_say_what_is_wrong(queries, labels, match):
    with pytest.raises(CopycatError, match=match):
        replay_prada(queries, labels)


def test_bad_settings_and_changing_shapes_are_refused():
    with pytest.raises(CopycatError, match="delta"):
        PradaDetector(delta=1.5)
    with pytest.raises(CopycatError, match="chunk size"):
        PradaDetector(chunk_size=0)
    with pytest.raises(CopycatError, match="labels"):
        replay_prada(np.zeros((3, 4)), None)
    detector = PradaDetector()
    detector.update(np.zeros((2, 4)), np.zeros(2, np.int64))
    with pytest.raises(CopycatError, match="same size"):
        detector.update(np.zeros((2, 5)), np.zeros(2, np.int64))
