"""The one interface every defence an audit simulates implements.

Output policies (:mod:`copycat_tf.audit.defences`: ``none``, ``topK``, ``roundD``,
``reverse-sigmoid``) and label defences (:mod:`copycat_tf.audit.label_defences`: adaptive
misinformation, watermark) all answer the same three questions, so the audit never needs to
know which kind it holds:

- what does an attacker behind it see (:meth:`Defence.attacker_view`)?
- what does it cost the owner's honest callers (:meth:`Defence.owner_cost`)?
- what does it prove about a copy (:meth:`Defence.copy_evidence`)?
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Defence(Protocol):
    """A defence between the model and its callers, simulated on stored answers.

    Attributes:
        name: the defence's name (``top1``, ``misinformation``).
        slug: unique per setting; names a cell's folders (``misinformation-tau0.3``).
        description: what the attacker sees, in a few words.
        derivation: what a fake dataset derived behind it records.
        label_only: the attacker sees labels only.
        keeps_top1: the attacker's label is always the target's.
        needs_images: the defence looks at the query images (a watermark's key does).
        parameters: its settings, for the report (``{}`` when it has none).
    """

    name: str
    label_only: bool
    keeps_top1: bool
    needs_images: bool

    @property
    def slug(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def derivation(self) -> str: ...

    @property
    def parameters(self) -> dict: ...

    def attacker_view(self, labels, probabilities, images=None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(labels, probabilities or None)`` an attacker behind the defence trains on."""

    def owner_cost(self, images, probabilities, true_labels=None):
        """What the defence costs honest callers on their ``images`` (the target's
        ``probabilities`` for them): an :class:`~copycat_tf.audit.label_defences.OwnerPrice`,
        or ``None`` for a defence that never changes an honest caller's label."""

    def copy_evidence(self, fakeset, queries: int, copycat) -> dict:
        """Figures about a ``copycat`` trained on the first ``queries`` answers behind the
        defence (a watermark's p-value), for the report; ``{}`` when it proves nothing."""
