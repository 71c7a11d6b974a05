"""One audit cell's result as a typed record: what ``audit.json`` lists under ``results``.

Rows of ``audit.json`` files written before per-class agreement and kappa were measured
read back with those two as ``None``.

Example:

>>> row = AuditRow(queries=1000, defence="top1", performance_ratio=0.8, agreement=0.75,
...                copycat_accuracy=0.72, target_accuracy=0.9, top1_kept=1.0, cost=1.5,
...                labels="hard", copycat="copycats/1000-top1/copycat.onnx",
...                per_class_agreement=0.7, kappa=0.68)
>>> AuditRow.from_json(row.to_json()) == row
True
>>> row.to_json()["defence"], row.score
('top1', 0.8)
>>> old = {k: v for k, v in row.to_json().items() if k not in ("per_class_agreement", "kappa")}
>>> AuditRow.from_json(old).kappa is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

#: Key prefixes of the optional figures: what a defence costs honest callers, and what it
#: proves about a copy (a watermark's test).
OWNER_PREFIX, EVIDENCE_PREFIX = "owner_", "watermark_"


@dataclass(frozen=True)
class AuditRow:
    """A copycat trained on the first ``queries`` answers as seen behind ``defence``, scored.

    Attributes:
        queries: the budget (queries bought for this copy).
        defence: the defence's name in the report (its setting when several are measured).
        performance_ratio: copycat accuracy / target accuracy on labelled test data, else ``None``.
        agreement: share of evaluation images where copycat and target agree.
        copycat_accuracy, target_accuracy: on labelled test data, else ``None``.
        top1_kept: share of the attacker's labels that are the target's own.
        cost: the queries' price, or ``None`` without one.
        labels: ``"hard"`` or ``"soft"``: what the copycat trained on.
        copycat: the copycat's ONNX file (relative to the audit's folder when inside it).
        per_class_agreement: agreement within each class the target answers, averaged over
            those classes (:attr:`copycat_tf.evaluation.Evaluation.per_class_agreement`):
            a copy that always gives the majority answer scores 1 / classes here.
        kappa: Cohen's kappa between the copy's and the target's answers (0 for such a
            copy), ``None`` when undefined or not measured.
        owner: what the defence costs honest callers (``owner_changed``, ``owner_accuracy_cost``).
        evidence: what the defence proves about the copy (``watermark_p_value``, ...).
    """

    queries: int
    defence: str
    performance_ratio: float | None
    agreement: float | None
    copycat_accuracy: float | None
    target_accuracy: float | None
    top1_kept: float
    cost: float | None
    labels: str
    copycat: str
    per_class_agreement: float | None = None
    kappa: float | None = None
    owner: Mapping[str, object] = field(default_factory=dict)
    evidence: Mapping[str, object] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        """The copy's headline figure: the performance ratio, else agreement."""
        return self.performance_ratio if self.performance_ratio is not None else self.agreement

    def to_json(self) -> dict:
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("owner", "evidence")}
        return {**plain, **self.owner, **self.evidence}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> AuditRow:
        names = {f.name for f in fields(cls)} - {"owner", "evidence"}
        return cls(**{name: data.get(name) for name in names},
                   owner={k: v for k, v in data.items() if k.startswith(OWNER_PREFIX)},
                   evidence={k: v for k, v in data.items() if k.startswith(EVIDENCE_PREFIX)})
