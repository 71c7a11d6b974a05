"""``copycat-tf audit``: how much of a model can be copied, for how many queries, behind which defence.

Files: ``run.py`` (:func:`audit`: one purchase, derived fake datasets per budget and
defence, a copycat per cell), ``defences.py`` (output policies simulated on stored
answers), ``report.py`` (``audit.json``/``.md``/``.html`` and the curve), ``verdict.py`` (risk level,
headline and points), ``anchors.py`` (the published attacks the verdict sets beside the
attacker it simulated).

Example:

>>> parse_budgets("1000,5000,20000")
[1000, 5000, 20000]
>>> [d.name for d in parse_defences("none,top1")]
['none', 'top1']
"""

from copycat_tf.audit.defence import Defence
from copycat_tf.audit.defences import (
           DEFAULT_DEFENCES,
           OutputPolicy,
           parse_defence,
           parse_defences,
)
from copycat_tf.audit.report import write_audit_report
from copycat_tf.audit.results import AuditRow
from copycat_tf.audit.run import (
           DEFAULT_BUDGETS,
           DEFAULT_EVAL_QUERIES,
           AuditPlan,
           AuditResult,
           audit,
           parse_budgets,
)
from copycat_tf.audit.verdict import verdict

__all__ = ["DEFAULT_BUDGETS", "DEFAULT_DEFENCES", "DEFAULT_EVAL_QUERIES", "AuditPlan", "AuditResult", "AuditRow", "Defence",
           "OutputPolicy", "audit", "parse_budgets", "parse_defence",
           "parse_defences", "verdict", "write_audit_report"]
