"""Output policies (copycat_tf.audit.defences): exact transformations on hand-made probability rows."""

import numpy as np
import pytest

from copycat_tf.audit.defences import (
    DEFAULT_DEFENCES,
    build_defences,
    defence_names,
    parse_defence,
    parse_defences,
    renormalise,
    reverse_sigmoid,
    rounded,
    top_k,
)
from copycat_tf.errors import CopycatError

ROWS = np.array([[0.1, 0.4, 0.2, 0.3], [0.7, 0.1, 0.15, 0.05]])


def _peaked_rows(count=2000, classes=10, seed=0):
    return np.random.default_rng(seed).dirichlet(np.full(classes, 0.3), count)


def test_every_default_defence_parses():
    assert defence_names(",".join(DEFAULT_DEFENCES)) == list(DEFAULT_DEFENCES)
    built = build_defences(DEFAULT_DEFENCES, num_classes=10, taus=(0.3, 0.5))
    assert [d.slug for d in built] == ["none", "top1", "top3", "round2", "reverse-sigmoid", "misinformation-tau0.3",
                                       "misinformation-tau0.5", "watermark-rate0.005"]
    assert all(d.label_only for d in built[5:]) and not any(d.needs_images for d in built[:7])
    assert [d.name for d in parse_defences("none, TOP1,top1,top5,round1")] == ["none", "top1", "top5", "round1"]


@pytest.mark.parametrize("name", ["blur", "top0", "top", "round", "roundx", "round9", "reverse_sigmoid", ""])
def test_unknown_defences_name_the_valid_ones(name):
    with pytest.raises(CopycatError, match="topK|round to at most|no defence"):
        parse_defences(name)


def test_none_shows_the_probabilities_unchanged():
    seen = parse_defence("none")(ROWS)
    np.testing.assert_array_equal(seen, ROWS)
    labels, probabilities = parse_defence("none").attacker_view(ROWS.argmax(1), ROWS)
    np.testing.assert_array_equal(labels, [1, 0])
    np.testing.assert_allclose(probabilities, ROWS, rtol=1e-6)


def test_top1_is_label_only_and_keeps_the_target_labels():
    defence = parse_defence("top1")
    assert defence.label_only and defence(ROWS) is None
    labels, probabilities = defence.attacker_view(np.array([1, 0]), ROWS)
    assert probabilities is None
    np.testing.assert_array_equal(labels, [1, 0])


def test_top_k_keeps_the_k_largest_and_renormalises():
    np.testing.assert_allclose(top_k(ROWS, 2), [[0, 0.4 / 0.7, 0, 0.3 / 0.7], [0.7 / 0.85, 0, 0.15 / 0.85, 0]])
    np.testing.assert_allclose(parse_defence("top3")(ROWS),
                               [[0, 0.4 / 0.9, 0.2 / 0.9, 0.3 / 0.9], [0.7 / 0.95, 0.1 / 0.95, 0.15 / 0.95, 0]])
    # ties go to the lower class index, deterministically
    np.testing.assert_allclose(top_k(np.array([[0.3, 0.3, 0.3, 0.1]]), 2), [[0.5, 0.5, 0, 0]])
    # k at least the class count: the row, renormalised
    np.testing.assert_allclose(top_k(ROWS, 4), ROWS)
    rows = _peaked_rows()
    seen = top_k(rows, 3)
    np.testing.assert_allclose(seen.sum(axis=1), 1.0)
    assert ((seen > 0).sum(axis=1) <= 3).all()
    np.testing.assert_array_equal(seen.argmax(axis=1), rows.argmax(axis=1))


def test_rounding_shows_rounded_values_and_the_attacker_renormalises():
    np.testing.assert_allclose(rounded(np.array([[0.123, 0.877]]), 2), [[0.12, 0.88]])
    np.testing.assert_allclose(parse_defence("round1")(np.array([[0.46, 0.34, 0.2]])), [[0.5, 0.3, 0.2]])
    labels, probabilities = parse_defence("round1").attacker_view(
        np.array([0]), np.array([[0.44, 0.34, 0.22]]))
    np.testing.assert_allclose(probabilities, [[0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9]], rtol=1e-6)
    np.testing.assert_array_equal(labels, [0])


def test_rounding_can_tie_the_top_classes_and_the_lowest_index_wins():
    defence = parse_defence("round1")
    assert not defence.keeps_top1
    target = np.array([[0.486, 0.514], [0.514, 0.486]])
    np.testing.assert_allclose(defence(target), [[0.5, 0.5], [0.5, 0.5]])
    labels, _ = defence.attacker_view(target.argmax(1), target)
    np.testing.assert_array_equal(labels, [0, 0])  # the first row's label changed from 1 to 0


def test_rounding_everything_to_zero_leaves_a_uniform_row():
    flat = np.full((1, 25), 0.04)
    np.testing.assert_array_equal(rounded(flat, 1), np.zeros((1, 25)))
    _, probabilities = parse_defence("round1").attacker_view(np.array([0]), flat)
    np.testing.assert_allclose(probabilities, np.full((1, 25), 0.04), rtol=1e-6)
    np.testing.assert_allclose(renormalise(np.zeros((2, 4))), np.full((2, 4), 0.25))


def test_reverse_sigmoid_follows_arts_formula():
    # r = beta * (sigmoid(-gamma * log((1 - p) / p)) - 1/2), q = clip(p - r, 0, 1) / sum
    # p = 0.9: log(9) = 2.19722, sigmoid(0.219722) = 0.554711, q = 0.9 - 0.054711 = 0.845289
    np.testing.assert_allclose(reverse_sigmoid(np.array([[0.9, 0.1]])), [[0.845289, 0.154711]], atol=1e-6)
    row = np.array([[0.6, 0.3, 0.1, 0.0]])
    clipped = np.clip(row, 1e-9, 1 - 1e-9)
    r = 1.0 / (1.0 + np.exp(-0.1 * np.log(clipped / (1 - clipped)))) - 0.5
    expected = np.clip(row - r, 0, 1)
    np.testing.assert_allclose(parse_defence("reverse-sigmoid")(row), expected / expected.sum(), rtol=1e-9)
    np.testing.assert_allclose(reverse_sigmoid(_peaked_rows()).sum(axis=1), 1.0)
    with pytest.raises(CopycatError):
        reverse_sigmoid(row, beta=0)


def test_reverse_sigmoid_keeps_confident_labels_but_not_every_label():
    rows = _peaked_rows(5000)
    seen = reverse_sigmoid(rows).argmax(axis=1)
    confident = rows.max(axis=1) > 0.5
    assert confident.sum() > 1000
    np.testing.assert_array_equal(seen[confident], rows.argmax(axis=1)[confident])
    flat = np.array([[0.12] + [0.11] * 8 + [0.0]])
    assert reverse_sigmoid(flat).argmax() == 9  # the class the target gave 0 comes out on top
    assert not parse_defence("reverse-sigmoid").keeps_top1


def test_defences_refuse_what_is_not_a_probability_matrix():
    with pytest.raises(CopycatError, match="shape"):
        parse_defence("top3")(np.array([0.2, 0.8]))
