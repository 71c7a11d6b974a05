"""Defences that act on the labels themselves, simulated offline on one purchase of queries.

The output policies of :mod:`copycat_tf.defences` (top-k, rounding, reverse sigmoid) keep
the top-1 label, so they cannot stop a thief who trains on labels alone. The two defences
here change *which label* some callers get, and answer with the label only:

``misinformation`` (:class:`AdaptiveMisinformation`)
    Adaptive misinformation (Kariyappa & Qureshi, "Defending Against Model Stealing Attacks
    With Adaptive Misinformation", CVPR 2020, https://arxiv.org/abs/1911.07100). Model
    stealing queries tend to be out of the owner's training distribution, and the owner's
    model is less confident on them. A query whose largest probability is below ``tau`` is
    judged out of distribution (the paper's maximum-softmax-probability detector) and gets a
    misleading label instead of the model's; every other query gets the model's label.
    The paper blends the model's output with that of a *misinformation model* trained to
    put little probability on the correct class, through a sigmoid switch around ``tau``;
    a label-only API makes that switch a step, and the misleading label here is the
    deterministic stand-in that needs no second model: **the class the owner's model finds
    least likely** (lowest stored probability, the model's own answer excluded, ties to the
    lowest class index). Needs the target's stored probabilities (buy with soft labels).
``watermark`` (:class:`Watermark`)
    DAWN (Szyller, Atli, Marchal, Asokan, "DAWN: Dynamic Adversarial Watermarking of Neural
    Networks", ACM Multimedia 2021, https://arxiv.org/abs/1906.00830). The API answers a
    keyed pseudo-random fraction ``rate`` of queries with a wrong label. Selection and label
    come from ``HMAC-SHA256(key, shape + image bytes)`` of the query image as sent (uint8,
    ``(H, W, C)``), as the ``WatermarkFilter`` of the DAWN authors' code does (``filter.py``:
    HMAC-SHA256 of the input's bytes, its first 16 bits against ``rate * 2**16``): here the
    first 8 bytes of the digest, read as an unsigned integer, select the query when below
    ``rate * 2**64``; the next 8 pick the wrong label, uniformly among the ``K - 1`` classes
    other than the model's (``(label + 1 + h mod (K - 1)) mod K``; the authors' code
    shuffles the output vector with the hash and takes its argmax, which can land on the
    model's own label, wasting the mark). So the choice depends
    on the key and the image only: the same image always gets the same answer, whatever
    the order or the client, and without the key nobody can tell which answers are marked.
    Needs the query images. Afterwards, a copy made from the marked answers reproduces the
    wrong labels on the marked images more often than chance: :meth:`Watermark.evidence`.

Both plug into the audit like :class:`~copycat_tf.defences.Defence` objects: ``name``,
``description``, ``label_only`` (always true here), ``keeps_top1`` (false), and
``attacker_view(labels, probabilities, images)`` returning ``(labels, None)``. They also
say what they need (``needs_probabilities``, ``needs_images``) and carry a ``slug`` that
names one setting (``misinformation-tau0.5``) for folders and cells, and a ``derivation``
string that changes whenever the answers would (a derived fake dataset's identity).

Example:

>>> probabilities = np.array([[0.9, 0.06, 0.04], [0.4, 0.35, 0.25]])
>>> AdaptiveMisinformation(tau=0.5).attacker_view(np.array([0, 0]), probabilities)[0].tolist()
[0, 2]
>>> mark = Watermark(b"owner secret", num_classes=10, rate=0.5)
>>> images = np.arange(8 * 4 * 4, dtype=np.uint8).reshape(8, 4, 4, 1)
>>> mark.selected(images).tolist()
[True, True, False, False, False, False, True, False]
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field

import numpy as np

from copycat_tf.errors import CopycatError

log = logging.getLogger(__name__)

#: The names :func:`parse_label_defence` knows.
LABEL_DEFENCES = ("misinformation", "watermark")
#: Out-of-distribution threshold on the largest probability. On a Fashion-MNIST small_cnn
#: target (90% accurate) it changed 2.8% of honest test answers and a third of a balanced
#: `photos` attack's; 0.7 already changed 13.5% of honest answers (see
#: :func:`tau_for_honest_share` to set it from the owner's own data instead).
DEFAULT_TAU = 0.5
#: The small sweep an audit runs by default.
DEFAULT_TAUS = (0.3, 0.5, 0.7)
#: DAWN's watermarking rate: 0.5% of queries.
DEFAULT_WATERMARK_RATE = 0.005
_KEY_ID_MESSAGE = b"copycat-tf watermark key id"


def _probability_rows(probabilities, what: str) -> np.ndarray:
    if probabilities is None:
        raise CopycatError(f"{what} needs the target's probabilities; buy the queries with soft labels "
                           "(the audit does)")
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise CopycatError(f"{what} needs probabilities shaped (n, classes >= 2); received shape {p.shape}")
    return p


def _labels(labels, count: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (count,) or y.dtype.kind not in "iu":
        raise CopycatError(f"expected {count} whole-number labels; received {y.dtype} of shape {y.shape}")
    if count and (y.min() < 0 or y.max() >= num_classes):
        raise CopycatError(f"labels must lie in 0..{num_classes - 1}; received {int(y.min())}..{int(y.max())}")
    return y.astype(np.int64)


@dataclass(frozen=True)
class OwnerPrice:
    """What a label defence costs the owner's honest callers.

    Attributes:
        answers: in-distribution inputs considered.
        changed: share of them whose answer the defence changes.
        accuracy_before: accuracy of the undefended answers (``None`` without true labels).
        accuracy_after: accuracy of the defended answers (``None`` without true labels).
    """

    answers: int
    changed: float
    accuracy_before: float | None = None
    accuracy_after: float | None = None

    @property
    def accuracy_cost(self) -> float | None:
        """Accuracy lost, in points of share (``before - after``)."""
        if self.accuracy_before is None or self.accuracy_after is None:
            return None
        return self.accuracy_before - self.accuracy_after

    def to_dict(self) -> dict:
        return {"answers": self.answers, "changed": self.changed, "accuracy_before": self.accuracy_before,
                "accuracy_after": self.accuracy_after, "accuracy_cost": self.accuracy_cost}


def _price(answers: np.ndarray, defended: np.ndarray, true_labels) -> OwnerPrice:
    changed = float(np.mean(answers != defended)) if len(answers) else 0.0
    if true_labels is None:
        return OwnerPrice(len(answers), changed)
    y = np.asarray(true_labels)
    if y.shape != answers.shape:
        raise CopycatError(f"expected {len(answers)} true labels; received shape {y.shape}")
    return OwnerPrice(len(answers), changed, float(np.mean(answers == y)), float(np.mean(defended == y)))


@dataclass(frozen=True)
class AdaptiveMisinformation:
    """Label-only answers; queries the model is unsure of (largest probability below ``tau``)
    get the class it finds least likely. See the module docstring.

    Args:
        tau: the out-of-distribution threshold on the largest probability, in (0, 1].

    Example:

    >>> defence = AdaptiveMisinformation(tau=0.6)
    >>> defence.slug, defence.description
    ('misinformation-tau0.6', 'label only; answers with top probability below 0.6 get the least likely class')
    >>> defence.answers(np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])).tolist()
    [0, 2]
    """

    tau: float = DEFAULT_TAU
    name: str = field(default="misinformation", init=False)
    label_only: bool = field(default=True, init=False)
    keeps_top1: bool = field(default=False, init=False)
    needs_probabilities: bool = field(default=True, init=False)
    needs_images: bool = field(default=False, init=False)

    def __post_init__(self):
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not 0.0 < self.tau <= 1.0:
            raise CopycatError(f"misinformation tau must be a number in (0, 1], e.g. 0.5; received {self.tau!r}")

    @property
    def slug(self) -> str:
        return f"misinformation-tau{self.tau:g}"

    @property
    def description(self) -> str:
        return f"label only; answers with top probability below {self.tau:g} get the least likely class"

    @property
    def parameters(self) -> dict:
        return {"tau": self.tau}

    @property
    def derivation(self) -> str:
        """Everything that decides the answers, for a derived fake dataset's identity."""
        return f"misinformation tau {self.tau!r}, least likely class"

    def out_of_distribution(self, probabilities) -> np.ndarray:
        """Which rows the owner's model is unsure of (largest probability below ``tau``)."""
        return _probability_rows(probabilities, "adaptive misinformation").max(axis=1) < self.tau

    def misleading(self, probabilities, labels=None) -> np.ndarray:
        """The least likely class of every row, the model's own answer (``labels``, default the
        argmax) excluded; ties go to the lowest class index."""
        p = _probability_rows(probabilities, "adaptive misinformation")
        own = p.argmax(axis=1) if labels is None else _labels(labels, len(p), p.shape[1])
        masked = p.copy()
        masked[np.arange(len(p)), own] = np.inf
        return masked.argmin(axis=1).astype(np.int64)

    def answers(self, probabilities, labels=None) -> np.ndarray:
        """The labels the defended API gives: the model's (``labels``, default the argmax), or
        the misleading one where the model is unsure."""
        p = _probability_rows(probabilities, "adaptive misinformation")
        own = p.argmax(axis=1).astype(np.int64) if labels is None else _labels(labels, len(p), p.shape[1])
        return np.where(self.out_of_distribution(p), self.misleading(p, own), own)

    def attacker_view(self, labels, probabilities, images=None) -> tuple[np.ndarray, None]:
        """``(labels, None)`` the attacker trains on, from the target's labels and probabilities."""
        return self.answers(probabilities, labels), None

    def owner_cost(self, images, probabilities, true_labels=None) -> OwnerPrice:
        """What honest callers pay: the share of in-distribution answers (the target's
        ``probabilities`` on test or benign data) that change, and accuracy before and after
        when ``true_labels`` are known (the ``images`` themselves are not needed).

        Example:

        >>> AdaptiveMisinformation(0.6).owner_cost(None, np.array([[0.9, 0.1], [0.55, 0.45]]), [0, 0]).to_dict()
        {'answers': 2, 'changed': 0.5, 'accuracy_before': 1.0, 'accuracy_after': 0.5, 'accuracy_cost': 0.5}
        """
        p = _probability_rows(probabilities, "adaptive misinformation")
        own = p.argmax(axis=1).astype(np.int64)
        return _price(own, self.answers(p), true_labels)

    def copy_evidence(self, fakeset, queries: int, copycat) -> dict:
        """Misinformation misleads a copy but leaves no mark to prove it: ``{}``."""
        return {}


def misinformation_sweep(attack_probabilities, benign_probabilities, taus=DEFAULT_TAUS) -> list[dict]:
    """For each ``tau``: the share of the attack's answers and of honest answers it changes.

    Cheap (no copycat is trained): it shows which ``tau`` would hit the attack hard and the
    honest callers little, before any copycat is trained behind it.

    Example:

    >>> attack = np.array([[0.4, 0.6], [0.55, 0.45], [0.3, 0.7]])
    >>> benign = np.array([[0.99, 0.01], [0.05, 0.95]])
    >>> misinformation_sweep(attack, benign, (0.6, 0.8))
    [{'tau': 0.6, 'attack_changed': 0.333333, 'benign_changed': 0.0}, {'tau': 0.8, 'attack_changed': 1.0, 'benign_changed': 0.0}]
    """
    attack = _probability_rows(attack_probabilities, "the misinformation sweep").max(axis=1)
    benign = _probability_rows(benign_probabilities, "the misinformation sweep").max(axis=1)
    return [{"tau": float(t), "attack_changed": round(float(np.mean(attack < t)), 6),
             "benign_changed": round(float(np.mean(benign < t)), 6)}
            for t in (AdaptiveMisinformation(t).tau for t in taus)]


def tau_for_honest_share(benign_probabilities, share: float) -> float:
    """The largest ``tau`` that changes at most ``share`` of honest answers (the target's
    ``benign_probabilities`` on in-distribution data): the adaptive-misinformation paper
    sets its threshold from the accuracy the owner accepts to lose on such data.

    Example:

    >>> benign = np.array([[0.99, 0.01], [0.6, 0.4], [0.8, 0.2], [0.95, 0.05]])
    >>> tau_for_honest_share(benign, 0.25), tau_for_honest_share(benign, 0.5)
    (0.8, 0.95)
    """
    top = np.sort(_probability_rows(benign_probabilities, "choosing tau").max(axis=1))
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share < 1.0:
        raise CopycatError(f"the share of honest answers to change must be in [0, 1); received {share!r}")
    if not len(top):
        raise CopycatError("choosing tau needs the target's probabilities on at least one honest input")
    # rows strictly below top[k] number at most k = floor(share * n)
    return float(min(top[int(np.floor(share * len(top)))], 1.0))


@dataclass(frozen=True)
class WatermarkEvidence:
    """How strongly a suspect model carries a watermark (see :meth:`Watermark.evidence`).

    Attributes:
        watermarks: distinct marked query images the suspect was asked about.
        disagreements: how many of them it labels differently from the target.
        matches: how many of those it labels with the watermark's wrong label.
        chance: the probability of a match on one disagreement for a model that never saw
            the marked answers: ``1 / (K - 1)``.
        p_value: one-sided binomial p-value of ``matches`` or more out of
            ``disagreements`` at ``chance`` (1 without disagreements, ``None`` without any
            marked image).
    """

    watermarks: int
    disagreements: int
    matches: int
    chance: float
    p_value: float | None

    @property
    def match_rate(self) -> float | None:
        """Share of the marked images on which the suspect gives the watermark label."""
        return self.matches / self.watermarks if self.watermarks else None

    def to_dict(self) -> dict:
        return {"watermarks": self.watermarks, "disagreements": self.disagreements, "matches": self.matches,
                "match_rate": self.match_rate, "chance": self.chance, "p_value": self.p_value}


def watermark_p_value(matches: int, trials: int, chance: float) -> float:
    """P(X >= matches) for X ~ Binomial(trials, chance): :func:`scipy.stats.binomtest`,
    one-sided ``greater``.

    Example:

    >>> round(watermark_p_value(3, 10, 1 / 9), 6)   # 1 - P(0) - P(1) - P(2)
    0.090597
    """
    from scipy.stats import binomtest

    if not (0 <= matches <= trials) or trials < 1 or not 0.0 < chance <= 1.0:
        raise CopycatError(f"a watermark test needs 0 <= matches <= trials >= 1 and chance in (0, 1]; "
                           f"received {matches}, {trials}, {chance}")
    return float(binomtest(int(matches), int(trials), float(chance), alternative="greater").pvalue)


@dataclass(frozen=True)
class Watermark:
    """DAWN-style watermarking: a keyed ``rate`` of queries answered with a keyed wrong label.
    See the module docstring.

    Args:
        key: the owner's secret (bytes, or text encoded as UTF-8); never shown in ``repr``,
            logs or reports (:attr:`key_id` names it instead).
        num_classes: the model's class count ``K`` (at least 2).
        rate: the share of queries to mark, in (0, 1).

    Example:

    >>> mark = Watermark("s3cr3t", num_classes=10)
    >>> mark.slug, mark.description, "s3cr3t" in repr(mark)
    ('watermark-rate0.005', 'label only; 0.5% of queries (keyed) get a keyed wrong label', False)
    """

    key: bytes = field(repr=False)
    num_classes: int
    rate: float = DEFAULT_WATERMARK_RATE
    name: str = field(default="watermark", init=False)
    label_only: bool = field(default=True, init=False)
    keeps_top1: bool = field(default=False, init=False)
    needs_probabilities: bool = field(default=False, init=False)
    needs_images: bool = field(default=True, init=False)

    def __post_init__(self):
        key = self.key.encode("utf-8") if isinstance(self.key, str) else self.key
        if not isinstance(key, bytes) or not key:
            raise CopycatError("a watermark key must be non-empty bytes or text")
        object.__setattr__(self, "key", key)
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, (int, np.integer)) \
                or self.num_classes < 2:
            raise CopycatError(f"a watermark needs a model of 2 classes or more; received {self.num_classes!r}")
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0.0 < self.rate < 1.0:
            raise CopycatError(f"watermark rate must be a share in (0, 1), e.g. 0.005; received {self.rate!r}")

    @property
    def slug(self) -> str:
        return f"watermark-rate{self.rate:g}"

    @property
    def description(self) -> str:
        return f"label only; {100 * self.rate:.3g}% of queries (keyed) get a keyed wrong label"

    @property
    def parameters(self) -> dict:
        return {"rate": self.rate, "key_id": self.key_id}

    @property
    def derivation(self) -> str:
        """Everything that decides the answers, for a derived fake dataset's identity (the
        key by its :attr:`key_id` only)."""
        return f"watermark rate {self.rate!r}, key {self.key_id}, HMAC-SHA256"

    @property
    def key_id(self) -> str:
        """A public name for the key (16 hex digits of an HMAC of a fixed text): tells two
        keys apart in a report without revealing either."""
        return hmac.new(self.key, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]

    def _digests(self, images) -> np.ndarray:
        """Two unsigned 64-bit integers per image from HMAC-SHA256(key, shape + bytes)."""
        x = np.asarray(images)
        if x.ndim != 4 or x.dtype != np.uint8:
            raise CopycatError(f"a watermark keys on the query images as sent, uint8 (n, H, W, C); "
                               f"received {x.dtype} of shape {x.shape}")
        header = ("x".join(map(str, x.shape[1:])) + ":").encode()
        out = np.empty((len(x), 2), np.uint64)
        for i, image in enumerate(x):
            digest = hmac.new(self.key, header + np.ascontiguousarray(image).tobytes(), hashlib.sha256).digest()
            out[i, 0] = int.from_bytes(digest[:8], "big")
            out[i, 1] = int.from_bytes(digest[8:16], "big")
        return out

    def selected(self, images) -> np.ndarray:
        """Which images the owner marks (a keyed ``rate`` of them, independent of order)."""
        return self._selected(self._digests(images))

    def watermark_labels(self, images, labels) -> np.ndarray:
        """The wrong label the owner would give each image instead of ``labels`` (the model's)."""
        digests = self._digests(images)
        return self._wrong(digests, _labels(labels, len(digests), self.num_classes))

    def answers(self, images, labels) -> np.ndarray:
        """The defended API's labels: the model's, or the watermark label where selected."""
        digests = self._digests(images)
        own = _labels(labels, len(digests), self.num_classes)
        return np.where(self._selected(digests), self._wrong(digests, own), own)

    def _selected(self, digests: np.ndarray) -> np.ndarray:
        bound = int(self.rate * 2.0 ** 64)  # below 2**64: a float rate < 1 is at most 1 - 2**-53
        return digests[:, 0] < np.uint64(bound)

    def _wrong(self, digests: np.ndarray, own: np.ndarray) -> np.ndarray:
        shift = (digests[:, 1] % np.uint64(self.num_classes - 1)).astype(np.int64) + 1
        return (own + shift) % self.num_classes

    def attacker_view(self, labels, probabilities=None, images=None) -> tuple[np.ndarray, None]:
        """``(labels, None)`` the attacker trains on; needs the query ``images``."""
        if images is None:
            raise CopycatError("the watermark defence needs the query images to key its choice on")
        return self.answers(images, labels), None

    def evidence(self, images, labels, suspect) -> WatermarkEvidence:
        """Test whether ``suspect`` carries this watermark.

        The owner asks the suspect model about the marked images among ``images`` (the
        attack's queries; repeats of one image count once). A match is the suspect giving
        an image its watermark label; it can only happen where the suspect disagrees with
        the target. For a model that never saw the marked answers, the watermark label of
        an image is, through the keyed hash, a uniform draw among the ``K - 1`` classes other
        than the target's, independent of that model and of the other images. So, given
        its answers, each disagreement is a match with probability exactly ``1 / (K - 1)``,
        and the number of matches is Binomial(disagreements, ``1 / (K - 1)``): the p-value
        is that binomial's upper tail, an exact test that needs no estimate of how often
        the suspect disagrees with the target. (Counting matches among *all* marked images
        at ``1 / (K - 1)`` is valid too, but blind: a copy that agrees with the target on
        most images matches on few. On a Fashion-MNIST target with a 5% watermark over 5,000
        balanced ``photos`` queries, a copy made from the marked answers matched 29 of 279
        marks, fewer than 1/9 of them, but 29 of its 75 disagreements: p = 6e-10; a copy
        made from the unmarked answers matched 3 of its 27: p = 0.59.) With ``K = 2`` every
        disagreement is a match and no evidence is possible: the only wrong label is the
        other class.

        Args:
            images: the query images, uint8 ``(n, H, W, C)``, as sent.
            labels: the target's labels for them.
            suspect: called with the marked images, returns the suspect's labels for them
                (e.g. ``lambda x: OnnxOracle("copy.onnx").query(x).labels``).

        Example:

        >>> mark = Watermark(b"k", num_classes=10, rate=0.2)
        >>> images = np.random.default_rng(0).integers(0, 256, (500, 8, 8, 1), np.uint8)
        >>> labels = np.zeros(500, np.int64)
        >>> copy = lambda x: mark.watermark_labels(x, np.zeros(len(x), np.int64))  # learnt every mark
        >>> found = mark.evidence(images, labels, copy)
        >>> found.watermarks == found.matches, found.p_value < 1e-60
        (True, True)
        """
        x = np.asarray(images)
        digests = self._digests(x)
        own = _labels(labels, len(x), self.num_classes)
        chosen = np.flatnonzero(self._selected(digests))
        chance = 1.0 / (self.num_classes - 1)
        if not len(chosen):
            return WatermarkEvidence(0, 0, 0, chance, None)
        _, first = np.unique(x[chosen].reshape(len(chosen), -1), axis=0, return_index=True)
        chosen = chosen[np.sort(first)]
        predicted = np.asarray(suspect(x[chosen]))
        if predicted.shape != (len(chosen),):
            raise CopycatError(f"the suspect model returned labels of shape {predicted.shape} "
                               f"for {len(chosen)} images")
        disagreements = int(np.count_nonzero(predicted != own[chosen]))
        matches = int(np.count_nonzero(predicted == self._wrong(digests[chosen], own[chosen])))
        p = watermark_p_value(matches, disagreements, chance) if disagreements else 1.0
        log.info("watermark: %d of %d marked images carry the mark (%d disagreements, chance %.3f each), "
                 "p = %.3g", matches, len(chosen), disagreements, chance, p)
        return WatermarkEvidence(len(chosen), disagreements, matches, chance, p)

    def owner_cost(self, images, probabilities, true_labels=None) -> OwnerPrice:
        """What honest callers pay: the share of their answers (the argmax of the target's
        ``probabilities`` for ``images``) that the watermark changes, and accuracy before and
        after when ``true_labels`` are known."""
        own = _labels(np.asarray(probabilities).argmax(axis=1), len(np.asarray(images)), self.num_classes)
        return _price(own, self.answers(images, own), true_labels)

    def copy_evidence(self, fakeset, queries: int, copycat) -> dict:
        """Does ``copycat``, trained on the first ``queries`` watermarked answers of ``fakeset``,
        carry the watermark? Its p-value and counts, for the report."""
        images, labels, kept = [], [], 0
        for shard in fakeset.iter_shards():
            take = min(len(shard["labels"]), queries - kept)
            images.append(shard["images"][:take])
            labels.append(shard["labels"][:take])
            kept += take
            if kept >= queries:
                break
        found = self.evidence(np.concatenate(images), np.concatenate(labels), lambda x: copycat.query(x).labels)
        return {"watermark_p_value": found.p_value, "watermark_marks": found.watermarks,
                "watermark_disagreements": found.disagreements, "watermark_matches": found.matches,
                "watermark_chance": found.chance}


def default_watermark_key(seed: int) -> bytes:
    """The audit's key for a simulated watermark, from its seed: reruns resume with the same
    marks. A simulation needs no secret (the simulated attacker never uses the key); a real
    deployment keeps a random key secret.

    Example:

    >>> default_watermark_key(0)
    b'copycat-tf audit watermark, seed 0'
    """
    return f"copycat-tf audit watermark, seed {int(seed)}".encode()


def parse_label_defence(name: str, *, num_classes: int, tau: float = DEFAULT_TAU,
                        rate: float = DEFAULT_WATERMARK_RATE, key: bytes | str | None = None,
                        seed: int = 0) -> AdaptiveMisinformation | Watermark:
    """The label defence called ``name`` (``misinformation`` or ``watermark``).

    Raises:
        CopycatError: another name (the message lists these).

    Example:

    >>> parse_label_defence("watermark", num_classes=10, rate=0.01).slug
    'watermark-rate0.01'
    """
    text = str(name).strip().lower()
    if text == "misinformation":
        return AdaptiveMisinformation(tau)
    if text == "watermark":
        return Watermark(default_watermark_key(seed) if key is None else key, num_classes, rate)
    raise CopycatError(f"unknown label defence {name!r}; valid: {', '.join(LABEL_DEFENCES)}")
