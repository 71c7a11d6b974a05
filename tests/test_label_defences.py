"""Label-acting defences (copycat_tf.audit.label_defences): adaptive misinformation on a real
scikit-learn digits model's probabilities, the DAWN-style watermark on Fashion-MNIST images,
and the watermark's binomial evidence against hand computations."""

import itertools
import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from copycat_tf.audit.label_defences import (
    DEFAULT_TAU,
    DEFAULT_WATERMARK_RATE,
    AdaptiveMisinformation,
    Watermark,
    default_watermark_key,
    misinformation_sweep,
    parse_label_defence,
    tau_for_honest_share,
    watermark_p_value,
)
from copycat_tf.datasets import load_labelled
from copycat_tf.errors import CopycatError


@pytest.fixture(scope="module")
def digits_model():
    """A real small model: logistic regression on scikit-learn's digits, with the
    probabilities it gives its test split (in distribution) and uniform noise (out of it)."""
    train, test = load_labelled("digits:train"), load_labelled("digits:test")
    flat = lambda images: images.reshape(len(images), -1) / 255.0
    with threadpool_limits(limits=1, user_api="blas"):  # tiny problem: threads only contend
        model = LogisticRegression(max_iter=300).fit(flat(train.images), train.labels)
    noise = np.random.default_rng(0).integers(0, 256, (400, *test.images.shape[1:]), np.uint8)
    return model.predict_proba(flat(test.images)), test.labels, model.predict_proba(flat(noise))


@pytest.fixture(scope="module")
def fashion_images():
    test = load_labelled("fashion-mnist:test")
    return test.images, test.labels


# ------------------------------------------------------------------ adaptive misinformation


def test_misinformation_changes_only_the_unsure_answers(digits_model):
    benign, _, noise = digits_model
    probabilities = np.concatenate([benign, noise])
    own = probabilities.argmax(axis=1)
    defence = AdaptiveMisinformation(tau=0.7)
    labels, seen_probabilities = defence.attacker_view(own, probabilities)
    assert seen_probabilities is None and labels.dtype == np.int64
    unsure = probabilities.max(axis=1) < 0.7
    assert 20 < unsure.sum() < len(probabilities) - 20  # both kinds are present
    np.testing.assert_array_equal(labels[~unsure], own[~unsure])
    assert (labels[unsure] != own[unsure]).all()
    # the misleading label is the least likely class by the owner's model
    np.testing.assert_array_equal(labels[unsure], probabilities[unsure].argmin(axis=1))
    # noise is judged out of distribution far more often than the digits the model learnt
    assert defence.out_of_distribution(noise).mean() > 3 * defence.out_of_distribution(benign).mean()


def test_the_misleading_label_is_never_the_models_own():
    flat = np.full((1, 4), 0.25)  # argmax and argmin are both class 0 here
    assert AdaptiveMisinformation(0.5).answers(flat).tolist() == [1]
    ties = np.array([[0.3, 0.1, 0.1, 0.5]])
    assert AdaptiveMisinformation(0.6).answers(ties).tolist() == [1]  # lowest index among the tied least likely
    # the stored label wins over the argmax when given (a tie the target broke otherwise)
    assert AdaptiveMisinformation(0.6).answers(np.array([[0.45, 0.45, 0.1]]), [1]).tolist() == [2]


def test_the_owners_price_on_honest_answers(digits_model):
    benign, true_labels, _ = digits_model
    for tau in (0.5, 0.9):
        price = AdaptiveMisinformation(tau).owner_cost(None, benign, true_labels)
        assert price.answers == len(benign)
        assert price.changed == pytest.approx(np.mean(benign.max(axis=1) < tau))
        assert price.accuracy_before == pytest.approx(np.mean(benign.argmax(axis=1) == true_labels))
        assert price.accuracy_after <= price.accuracy_before
        assert price.accuracy_cost == pytest.approx(price.accuracy_before - price.accuracy_after)
    low, high = AdaptiveMisinformation(0.5).owner_cost(None, benign), AdaptiveMisinformation(0.9).owner_cost(None, benign)
    assert low.changed < high.changed and low.accuracy_before is None and low.to_dict()["accuracy_cost"] is None


def test_the_sweep_shows_tau_against_both_streams(digits_model):
    benign, _, noise = digits_model
    rows = misinformation_sweep(noise, benign, (0.3, 0.5, 0.7, 0.9))
    assert [r["tau"] for r in rows] == [0.3, 0.5, 0.7, 0.9]
    for a, b in itertools.pairwise(rows):
        assert a["attack_changed"] <= b["attack_changed"] and a["benign_changed"] <= b["benign_changed"]
    assert rows[2]["attack_changed"] == pytest.approx(np.mean(noise.max(axis=1) < 0.7), abs=1e-6)


def test_tau_can_be_set_from_the_honest_answers_the_owner_accepts_to_change(digits_model):
    benign = digits_model[0]
    for share in (0.0, 0.01, 0.05, 0.2):
        tau = tau_for_honest_share(benign, share)
        changed = AdaptiveMisinformation(tau).owner_cost(None, benign).changed
        assert changed <= share
        # the next distinct top probability up would change more than the share allowed
        above = np.sort(np.unique(benign.max(axis=1)))
        higher = above[above > tau]
        if len(higher):
            assert AdaptiveMisinformation(float(higher[0])).owner_cost(None, benign).changed > share
    with pytest.raises(CopycatError, match="share"):
        tau_for_honest_share(benign, 1.0)


def test_misinformation_needs_probabilities_and_a_sane_tau():
    with pytest.raises(CopycatError, match="soft labels"):
        AdaptiveMisinformation().attacker_view(np.array([0, 1]), None)
    for tau in (0, 1.5, "0.7", True):
        with pytest.raises(CopycatError, match="tau"):
            AdaptiveMisinformation(tau)
    with pytest.raises(CopycatError, match="0..2"):
        AdaptiveMisinformation().answers(np.full((2, 3), 1 / 3), [0, 3])
    defence = AdaptiveMisinformation()
    assert defence.tau == DEFAULT_TAU and defence.label_only and not defence.keeps_top1
    assert defence.needs_probabilities and not defence.needs_images


# ------------------------------------------------------------------------ the watermark


def test_watermark_selection_is_deterministic_per_key_and_order_free(fashion_images):
    images, labels = fashion_images
    mark = Watermark(b"owner key", num_classes=10, rate=0.05)
    chosen = mark.selected(images)
    np.testing.assert_array_equal(Watermark(b"owner key", num_classes=10, rate=0.05).selected(images), chosen)
    order = np.random.default_rng(1).permutation(len(images))
    np.testing.assert_array_equal(mark.selected(images[order]), chosen[order])
    np.testing.assert_array_equal(mark.answers(images[order], labels[order]), mark.answers(images, labels)[order])
    other = Watermark(b"another key", num_classes=10, rate=0.05).selected(images)
    overlap = (chosen & other).sum() / (chosen | other).sum()
    assert overlap < 0.1  # independent keys: about 0.05 * 0.05 / 0.0975 = 2.6% in common
    assert Watermark("owner key", 10, 0.05).key_id == mark.key_id != Watermark(b"another key", 10, 0.05).key_id


@pytest.mark.parametrize("rate", [DEFAULT_WATERMARK_RATE, 0.05])
def test_watermark_rate_is_respected(fashion_images, rate):
    images, _ = fashion_images
    marked = Watermark(b"rate check", num_classes=10, rate=rate).selected(images).sum()
    expected, sigma = rate * len(images), math.sqrt(rate * (1 - rate) * len(images))
    assert abs(marked - expected) < 4 * sigma


def test_watermark_labels_are_wrong_and_spread_over_the_other_classes(fashion_images):
    images, labels = fashion_images
    mark = Watermark(b"labels", num_classes=10, rate=0.2)
    wrong = mark.watermark_labels(images, labels)
    assert (wrong != labels).all() and wrong.min() >= 0 and wrong.max() <= 9
    shifts = np.bincount((wrong - labels) % 10, minlength=10)
    assert shifts[0] == 0 and shifts[1:].min() > 0.8 * len(images) / 9  # every other class, about evenly
    seen, probabilities = mark.attacker_view(labels, None, images)
    assert probabilities is None
    chosen = mark.selected(images)
    np.testing.assert_array_equal(seen[chosen], wrong[chosen])
    np.testing.assert_array_equal(seen[~chosen], labels[~chosen])
    # the same image always gets the same answer
    twice = np.concatenate([images[:50], images[:50]])
    answers = mark.answers(twice, np.concatenate([labels[:50], labels[:50]]))
    np.testing.assert_array_equal(answers[:50], answers[50:])


def test_the_owners_accuracy_cost_of_a_watermark(fashion_images):
    images, labels = fashion_images
    mark = Watermark(b"cost", num_classes=10, rate=0.01)
    # the target is right on every image here (its labels are the true ones): each mark costs a point
    cost = mark.owner_cost(images, np.eye(10, dtype=np.float32)[labels], true_labels=labels)
    assert cost.changed == pytest.approx(mark.selected(images).mean())
    assert cost.accuracy_before == 1.0 and cost.accuracy_cost == pytest.approx(cost.changed)


def test_the_binomial_p_value_matches_a_hand_computation():
    def tail(k, n, p):
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))

    assert watermark_p_value(3, 10, 1 / 9) == pytest.approx(tail(3, 10, 1 / 9), rel=1e-9)
    assert watermark_p_value(3, 10, 1 / 9) == pytest.approx(0.0905965, abs=1e-7)
    assert watermark_p_value(20, 25, 1 / 9) == pytest.approx(tail(20, 25, 1 / 9), rel=1e-6)
    assert watermark_p_value(0, 25, 1 / 9) == 1.0
    assert watermark_p_value(25, 25, 1 / 9) == pytest.approx((1 / 9) ** 25, rel=1e-9)
    with pytest.raises(CopycatError):
        watermark_p_value(11, 10, 0.1)


def test_a_copy_that_learnt_the_marks_is_identified_and_others_are_not(fashion_images):
    images, labels = fashion_images
    mark = Watermark(b"evidence", num_classes=10, rate=0.005)

    def learnt(x):  # reproduces the owner's marked answers (what a copy trained on them may do)
        return mark.watermark_labels(x, labels[index_of(x)])

    position = {image.tobytes(): i for i, image in enumerate(images)}

    def index_of(x):
        return np.array([position[image.tobytes()] for image in x])

    found = mark.evidence(images, labels, learnt)
    assert found.watermarks > 20 and found.matches == found.disagreements == found.watermarks
    assert found.chance == pytest.approx(1 / 9) and found.p_value < 1e-12
    assert found.p_value == pytest.approx((1 / 9) ** found.matches, rel=1e-9)
    assert found.to_dict()["match_rate"] == 1.0

    honest = mark.evidence(images, labels, lambda x: labels[index_of(x)])  # the target's own answers
    assert (honest.disagreements, honest.matches, honest.p_value) == (0, 0, 1.0)
    # half the marks learnt, the rest answered as the target would: still plain evidence
    half = mark.evidence(images, labels, lambda x: np.where(np.arange(len(x)) % 2 == 0, learnt(x),
                                                             labels[index_of(x)]))
    assert half.disagreements == half.matches and half.p_value < 1e-6


def test_models_that_never_saw_the_marks_get_no_evidence(fashion_images):
    """The p-value is calibrated: wrong in a key-independent way, a model matches the marks at chance."""
    images, labels = fashion_images
    position = {image.tobytes(): i for i, image in enumerate(images)}
    rng = np.random.default_rng(3)

    def always_the_next_class(x):  # wrong wherever the target is right, never keyed
        return (labels[[position[image.tobytes()] for image in x]] + 1) % 10

    for suspect in (lambda x: rng.integers(0, 10, len(x)), always_the_next_class):
        found = [Watermark(f"key {k}".encode(), 10, 0.01).evidence(images, labels, suspect) for k in range(10)]
        assert all(f.disagreements > 50 for f in found)
        p_values = [f.p_value for f in found]
        assert min(p_values) > 1e-3 and np.median(p_values) > 0.1


def test_evidence_counts_each_marked_image_once(fashion_images):
    images, labels = fashion_images
    mark = Watermark(b"repeats", num_classes=10, rate=0.05)
    chosen = np.flatnonzero(mark.selected(images[:400]))
    stream = np.concatenate([images[:400], images[chosen]])  # every marked image bought twice
    stream_labels = np.concatenate([labels[:400], labels[chosen]])
    asked = []
    found = mark.evidence(stream, stream_labels, lambda x: asked.append(len(x)) or np.zeros(len(x), np.int64))
    assert found.watermarks == len(chosen) == asked[0]
    unmarked = images[:400][~mark.selected(images[:400])][:20]
    none = mark.evidence(unmarked, labels[:20], lambda x: pytest.fail("no marked image to ask about"))
    assert (none.watermarks, none.disagreements, none.matches, none.p_value) == (0, 0, 0, None)
    assert none.match_rate is None
    assert Watermark(b"k", 10, 1 - 2 ** -53).selected(images[:50]).all()  # the largest rate below 1


def test_watermark_refuses_what_it_cannot_key_on():
    with pytest.raises(CopycatError, match="uint8"):
        Watermark(b"k", 10).selected(np.zeros((2, 4, 4, 1), np.float32))
    with pytest.raises(CopycatError, match="images"):
        Watermark(b"k", 10).attacker_view(np.array([0]), None)
    with pytest.raises(CopycatError, match="key"):
        Watermark(b"", 10)
    with pytest.raises(CopycatError, match="2 classes"):
        Watermark(b"k", 1)
    for rate in (0, 1, -0.1, "0.01"):
        with pytest.raises(CopycatError, match="rate"):
            Watermark(b"k", 10, rate)
    with pytest.raises(CopycatError, match="0..9"):
        Watermark(b"k", 10).answers(np.zeros((1, 2, 2, 1), np.uint8), [10])


def test_label_defences_by_name():
    mis = parse_label_defence("Misinformation", num_classes=10, tau=0.9)
    assert (mis.name, mis.slug, mis.parameters) == ("misinformation", "misinformation-tau0.9", {"tau": 0.9})
    mark = parse_label_defence("watermark", num_classes=10, seed=3)
    assert mark.key == default_watermark_key(3) and mark.rate == DEFAULT_WATERMARK_RATE
    assert mark.parameters == {"rate": 0.005, "key_id": mark.key_id} and mark.needs_images
    # a derived fake dataset must be rebuilt when the key, the rate or tau changes, never otherwise
    assert mark.derivation == parse_label_defence("watermark", num_classes=10, seed=3).derivation
    assert mark.derivation != parse_label_defence("watermark", num_classes=10, seed=4).derivation
    assert mark.key_id in mark.derivation and "seed" not in mark.derivation
    assert mis.derivation != AdaptiveMisinformation(0.5).derivation
    with pytest.raises(CopycatError, match="misinformation, watermark"):
        parse_label_defence("top1", num_classes=10)
