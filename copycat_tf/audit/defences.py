"""Output policies a model owner can put between the model and its callers, simulated offline.

A *defence* here is what an API does to the model's class probabilities before a caller
sees them. :mod:`copycat_tf.audit` applies each one to the probabilities stored in a fake
dataset (the audit is run by the model's owner, who sees full outputs), so one purchase of
queries shows what an attacker would have learnt behind every policy.

Each policy is a pure numpy function on float probabilities ``(n, K)``, returning what the
attacker sees: float64 probabilities ``(n, K)`` (rows summing to 1), or ``None`` when the
API answers with the label only. :func:`parse_defence` turns a name into an :class:`OutputPolicy`:

``none``
    Full probabilities, unchanged. The top-1 label is unchanged.
``topK`` (``top1``, ``top3``, ``top5``, ...)
    Only the ``K`` largest probabilities are returned (Knockoff Nets' top-k); the rest are
    zeroed and the row is renormalised. Ties are broken towards the lower class index
    (stable sort), so the result is deterministic. The top-1 label is unchanged.
    ``top1`` is the label-only API: the function returns ``None`` and the attacker trains
    on the target's labels, the Copycat CNN papers' threat model.
``roundD`` (``round2``, ``round1``, ...)
    Probabilities rounded to ``D`` decimals (Knockoff Nets' rounding). What the API shows
    need not sum to 1; the attacker renormalises the rounded row before training on it
    (an all-zero row becomes uniform). Rounding can *tie* the top classes (0.514 and 0.486
    both become 0.5 at ``round1``); the attacker's label is then the lowest tied class
    index (``numpy.argmax``), so it can differ from the target's label.
``reverse-sigmoid``
    The Reverse Sigmoid perturbation (Lee et al., "Defending Against Machine Learning Model
    Stealing Attacks Using Deceptive Perturbations", 2018, https://arxiv.org/abs/1806.00054)
    with the formula of ART's ``art.defences.postprocessor.ReverseSigmoid``
    (``beta=1.0``, ``gamma=0.1``): ``r = beta * (sigmoid(-gamma * log((1 - p') / p')) - 1/2)``
    with ``p'`` = ``p`` clipped to ``[1e-9, 1 - 1e-9]``, ``q = clip(p - r, 0, 1)``, rows
    renormalised. With these defaults it keeps the top-1 label whenever the target's top
    probability is above 1/2 (``p - r`` maps ``[0, 1/2]`` below 1/2 and ``(1/2, 1]`` above
    it), but **not always** below that: the perturbation lifts near-zero probabilities
    towards ``beta / 2`` (about 0.39), so on a flat answer with a near-zero class that class
    comes out on top (``[0.12, 0.11, ..., 0.11, 0]`` over ten classes: the last class wins).

Label-only stealing is unaffected by every policy that keeps the top-1 label: it never
looks at the probabilities.

Example:

>>> parse_defence("top2")(np.array([[0.5, 0.2, 0.3]])).round(3).tolist()
[[0.625, 0.0, 0.375]]
>>> parse_defence("top1")(np.array([[0.5, 0.2, 0.3]])) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from copycat_tf.audit.label_defences import (
    DEFAULT_TAU,
    DEFAULT_WATERMARK_RATE,
    LABEL_DEFENCES,
    AdaptiveMisinformation,
    Watermark,
    default_watermark_key,
)
from copycat_tf.errors import CopycatError

#: The policies an audit simulates unless told otherwise.
DEFAULT_DEFENCES = ("none", "top1", "top3", "round2", "reverse-sigmoid", *LABEL_DEFENCES)
#: Every spelling :func:`build_defences` accepts, for error messages and ``--help``.
DEFENCE_FORMS = ("none", "topK (top1 = label only)", "roundD", "reverse-sigmoid", *LABEL_DEFENCES)

REVERSE_SIGMOID_BETA = 1.0
REVERSE_SIGMOID_GAMMA = 0.1
_CLIP = 1e-9
_TOP = re.compile(r"top([1-9]\d*)")
_ROUND = re.compile(r"round(\d+)")


def _rows(probabilities) -> np.ndarray:
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise CopycatError(f"probabilities must be (n, classes); received shape {p.shape}")
    return p


def renormalise(probabilities) -> np.ndarray:
    """Rows scaled to sum to 1; an all-zero row becomes uniform.

    Example:

    >>> renormalise(np.array([[0.2, 0.2], [0.0, 0.0]])).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    p = _rows(probabilities)
    total = p.sum(axis=1, keepdims=True)
    uniform = np.full_like(p, 1.0 / p.shape[1])
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


def top_k(probabilities, k: int) -> np.ndarray:
    """Keep the ``k`` largest probabilities of each row (ties: lower class index), zero the
    rest, renormalise.

    Example:

    >>> top_k(np.array([[0.1, 0.4, 0.2, 0.3]]), 2).round(4).tolist()
    [[0.0, 0.5714, 0.0, 0.4286]]
    """
    p = _rows(probabilities)
    if k >= p.shape[1]:
        return renormalise(p)
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    kept = np.zeros_like(p)
    np.put_along_axis(kept, order, np.take_along_axis(p, order, axis=1), axis=1)
    return renormalise(kept)


def rounded(probabilities, decimals: int) -> np.ndarray:
    """Probabilities rounded to ``decimals`` places: what the API shows (need not sum to 1).

    Example:

    >>> rounded(np.array([[0.514, 0.486]]), 1).tolist()
    [[0.5, 0.5]]
    """
    return np.round(_rows(probabilities), decimals)


def reverse_sigmoid(probabilities, beta: float = REVERSE_SIGMOID_BETA,
                    gamma: float = REVERSE_SIGMOID_GAMMA) -> np.ndarray:
    """ART's ``ReverseSigmoid`` perturbation of probability rows (see the module docstring).

    Example:

    >>> reverse_sigmoid(np.array([[0.9, 0.1]])).round(4).tolist()
    [[0.8453, 0.1547]]
    """
    if beta <= 0 or gamma <= 0:
        raise CopycatError(f"reverse sigmoid needs beta > 0 and gamma > 0; received {beta}, {gamma}")
    p = _rows(probabilities)
    clipped = np.clip(p, _CLIP, 1.0 - _CLIP)
    perturbation = beta * (1.0 / (1.0 + np.exp(gamma * np.log((1.0 - clipped) / clipped))) - 0.5)
    return renormalise(np.clip(p - perturbation, 0.0, 1.0))


@dataclass(frozen=True)
class OutputPolicy:
    """One output policy (a :class:`~copycat_tf.audit.defence.Defence`).

    Attributes:
        name: its canonical name (``none``, ``top3``, ``round2``, ``reverse-sigmoid``).
        description: what the attacker sees, in a few words.
        label_only: the API answers with the top-1 label only (``top1``).
        keeps_top1: the attacker's label is always the target's (``False`` where ties or
            the perturbation can move it).
    """

    name: str
    description: str
    label_only: bool
    keeps_top1: bool
    _apply: Callable[[np.ndarray], np.ndarray] | None = None

    def __call__(self, probabilities) -> np.ndarray | None:
        """What the attacker sees for ``probabilities`` ``(n, K)``: probabilities, or ``None``
        for label-only answers."""
        p = _rows(probabilities)
        return None if self._apply is None else self._apply(p)

    slug = property(lambda self: self.name, doc="Unique per setting: names a cell's folders.")
    derivation = property(lambda self: self.name, doc="What a derived fake dataset records.")
    parameters = property(lambda self: {}, doc="An output policy's settings are in its name.")
    needs_images = False
    needs_probabilities = property(lambda self: not self.label_only)

    def owner_cost(self, images, probabilities, true_labels=None) -> None:
        """An output policy changes what callers see, never the model's answer to them: ``None``."""
        return None

    def copy_evidence(self, fakeset, queries: int, copycat) -> dict:
        """An output policy leaves no mark in a copy: ``{}``."""
        return {}

    def attacker_view(self, labels, probabilities, images=None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(labels, probabilities)`` the attacker trains on, from the target's own
        (``images`` are not needed by output policies).

        Labels are the target's for label-only answers, else the argmax (lowest index on
        ties) of the attacker's renormalised probabilities.
        """
        seen = self(probabilities)
        if seen is None:
            return np.asarray(labels, np.int64), None
        seen = renormalise(seen)
        return seen.argmax(axis=1).astype(np.int64), seen.astype(np.float32)


def parse_defence(name: str) -> OutputPolicy:
    """The :class:`Defence` called ``name``.

    Raises:
        CopycatError: an unknown name (the message lists the valid forms).

    Example:

    >>> parse_defence("round1").description
    'probabilities rounded to 1 decimal'
    """
    text = str(name).strip().lower()
    if text == "none":
        return OutputPolicy("none", "full probabilities", False, True, lambda p: p.copy())
    if text == "reverse-sigmoid":
        return OutputPolicy("reverse-sigmoid",
                       f"probabilities perturbed by reverse sigmoid, beta {REVERSE_SIGMOID_BETA:g}, "
                       f"gamma {REVERSE_SIGMOID_GAMMA:g}", False, False, reverse_sigmoid)
    match = _TOP.fullmatch(text)
    if match:
        k = int(match.group(1))
        if k == 1:
            return OutputPolicy("top1", "label only", True, True)
        return OutputPolicy(f"top{k}", f"top-{k} probabilities", False, True, lambda p: top_k(p, k))
    match = _ROUND.fullmatch(text)
    if match:
        d = int(match.group(1))
        if d > 8:
            raise CopycatError(f"defence {name!r}: round to at most 8 decimals")
        return OutputPolicy(f"round{d}", f"probabilities rounded to {d} decimal{'s' if d != 1 else ''}",
                       False, False, lambda p: rounded(p, d))
    raise CopycatError(
        f"unknown defence {name!r}; valid: {', '.join(DEFENCE_FORMS)}, e.g. "
        f"{','.join(DEFAULT_DEFENCES)}"
    )


def defence_names(names: str | Sequence[str]) -> list[str]:
    """Check a comma list (or a sequence) of defence names before anything is bought.

    Returns:
        The canonical names, duplicates dropped, order kept.

    Example:

    >>> defence_names("none,TOP1,watermark,top1")
    ['none', 'top1', 'watermark']
    """
    if isinstance(names, str):
        names = names.split(",")
    canonical = [text if text in LABEL_DEFENCES else parse_defence(text).name
                 for text in (str(n).strip().lower() for n in names) if text]
    if not canonical:
        raise CopycatError(f"no defence given; choose from {', '.join(DEFENCE_FORMS)}")
    return list(dict.fromkeys(canonical))


def build_defences(names: str | Sequence[str], *, num_classes: int, seed: int = 0,
                   taus: Sequence[float] = (DEFAULT_TAU,), watermark_rate: float = DEFAULT_WATERMARK_RATE) -> list:
    """The defences an audit simulates: output policies (:class:`Defence`) and the label
    defences of :mod:`copycat_tf.audit.label_defences`, one adaptive-misinformation defence
    per ``tau`` and a watermark keyed on ``seed``.

    Example:

    >>> [d.slug for d in build_defences("top1,misinformation", num_classes=10, taus=(0.3, 0.5))]
    ['top1', 'misinformation-tau0.3', 'misinformation-tau0.5']
    """
    built = {}
    for name in defence_names(names):
        if name == "misinformation":
            chosen = [AdaptiveMisinformation(float(tau)) for tau in taus]
        elif name == "watermark":
            chosen = [Watermark(default_watermark_key(seed), num_classes, watermark_rate)]
        else:
            chosen = [parse_defence(name)]
        for defence in chosen:
            built.setdefault(defence.slug, defence)
    return list(built.values())


def parse_defences(names: str | Sequence[str]) -> list[OutputPolicy]:
    """Parse a comma list (or a sequence) of names; duplicates are dropped, order kept.

    Example:

    >>> [d.name for d in parse_defences("none,TOP1,top1,round2")]
    ['none', 'top1', 'round2']
    """
    if isinstance(names, str):
        names = names.split(",")
    parsed: dict[str, OutputPolicy] = {}
    for name in names:
        if not str(name).strip():
            continue
        defence = parse_defence(name)
        parsed.setdefault(defence.name, defence)
    if not parsed:
        raise CopycatError(f"no defence given; choose from {', '.join(DEFENCE_FORMS)}")
    return list(parsed.values())
