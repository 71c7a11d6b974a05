"""The audit's verdict: risk level, headline and the points behind it, from ``audit.json``.

:func:`verdict` reads the dictionary that :func:`copycat_tf.audit.audit` builds and says
how much of the target a simulated attacker copied, behind which defences, for how many
queries; :func:`attacker_statement` says which attacker that was, beside the published
ones (:mod:`copycat_tf.audit.anchors`). :mod:`copycat_tf.audit.report` writes it into
``audit.md`` and ``audit.html``.
"""

from __future__ import annotations

from pathlib import Path

from copycat_tf.audit.anchors import PUBLISHED_ATTACKS, weaker_than_published
from copycat_tf.report import kappa_text, percent

#: Two scores this close count as the same in the verdict.
_SAME = 0.01


def metric_value(result: dict, metric: str) -> float | None:
    """A result row's ``metric`` (``None`` when the row has none)."""
    return result.get(metric)


def money_text(value: float | None) -> str:
    """A cost as the report prints it: ``1,234.50``, or ``n/a``."""
    return "n/a" if value is None else f"{value:,.2f}"


def _defence_phrase(report: dict, name: str) -> str:
    if name == "top1":
        return "label-only answers (top1)"
    if name == "none":
        return "full probabilities (no defence)"
    descriptions = {d["name"]: d["description"] for d in report.get("defences", [])}
    return f"the {name} policy ({descriptions.get(name, name)})"


#: Risk levels by the best label-only (else least-defended) copy score: performance ratio
#: with labelled test data, else agreement. At or above the first bound the risk is high,
#: at or above the second medium, else low.
RISK_BOUNDS = (0.8, 0.5)
#: A watermark identifies the copy when the binomial test's p-value is below this.
WATERMARK_P = 1e-3


def risk_level(score: float | None) -> str:
    """``"High"``, ``"Medium"`` or ``"Low"`` for a copy score (see :data:`RISK_BOUNDS`).

    Example:

    >>> risk_level(0.85), risk_level(0.6), risk_level(0.2), risk_level(None)
    ('High', 'Medium', 'Low', 'Unknown')
    """
    if score is None:
        return "Unknown"
    high, medium = RISK_BOUNDS
    return "High" if score >= high else "Medium" if score >= medium else "Low"


def _bound(value: float) -> str:
    return f"{value:.0%}"


def verdict(report: dict) -> str:
    """The audit's conclusion, computed from ``report["results"]``: one sentence with the risk
    level and the headline figure, then one ``- `` bullet per finding (the attack, the attacker
    it simulated beside the published ones, each defence, detection, the watermark), each
    stating the thresholds it applies. When the simulated attacker is weaker than the
    published ones (:func:`~copycat_tf.audit.anchors.weaker_than_published`), the risk level
    is called a lower bound.

    Usage::

        print(verdict(report))
        # Low risk (a lower bound): with label-only answers (top1), 40% of this model's accuracy ...
        # - attack: balanced strategy, copycat small_cnn, ...; risk is High at >= 80%, Medium from 50%, ...
        # - attacker simulated: copycat small_cnn, not pretrained, balanced strategy, ...
        # - published attacks: ImageNet-pretrained VGG16 copycat, hard labels, 100,000 natural ...
        # - defence round2 (...): 96% at 20,000 queries against 97% with full probabilities, ...
    """
    sentence, points = verdict_parts(report)
    return "\n".join([sentence, *(f"- {point}" for point in points)])


def split_verdict(text: str) -> tuple[str, list[str]]:
    """:func:`verdict`'s text back into its sentence and bullets (for the Markdown and HTML).

    >>> split_verdict("Low risk: ...\\n- attack: a\\n- detection: b")
    ('Low risk: ...', ['attack: a', 'detection: b'])
    """
    first, *rest = text.splitlines() or [""]
    return first, [line.removeprefix("- ") for line in rest]


def verdict_parts(report: dict) -> tuple[str, list[str]]:
    """:func:`verdict` as ``(sentence, bullets)``."""
    metric = report["metric"]
    results = [r for r in report["results"] if metric_value(r, metric) is not None]
    if not results:
        return "No copycat could be scored, so the audit has no verdict.", []
    defences = list(dict.fromkeys(r["defence"] for r in report["results"]))
    headline = next((d for d in ("top1", "none") if d in defences), defences[0])
    rows = sorted((r for r in results if r["defence"] == headline), key=lambda r: r["queries"])
    largest = max(r["queries"] for r in results)
    at_largest = {r["defence"]: r for r in report["results"] if r["queries"] == largest}
    points = []
    sentence = "No copycat trained on the headline answers could be scored."
    if rows:
        best = max(metric_value(r, metric) for r in rows)
        chosen = next(r for r in rows if metric_value(r, metric) >= best - _SAME)
        sentence = _headline_sentence(report, headline, chosen)
        points.append(_attack_point(report, headline, chosen))
    points += [attacker_statement(report), _published_point()]
    points += _defence_points(report, at_largest, largest)
    points += _detection_points(report)
    points += _watermark_points(report, at_largest, largest)
    return sentence, points


def _headline_sentence(report: dict, headline: str, chosen: dict) -> str:
    metric = report["metric"]
    score = metric_value(chosen, metric)
    sources = _plain_list(report.get("queries") or []) or "the query images"
    amount = f"{chosen['queries']:,} queries of {sources}"
    if metric == "performance_ratio":
        core = f"{percent(score, 0)} of this model's accuracy was copied with {amount}"
    else:
        core = f"a copy agreeing with this model on {percent(score, 0)} of fresh query images was made with {amount}"
    price = report.get("price_per_1k")
    cost = "" if price is None else f" (cost {money_text(chosen.get('cost'))} at {money_text(price)} per 1,000 queries)"
    bound = " (a lower bound)" if _shortfalls(report) else ""
    return f"{risk_level(score)} risk{bound}: with {_defence_phrase(report, headline)}, {core}{cost}."


def _attack_point(report: dict, headline: str, chosen: dict) -> str:
    high, medium = RISK_BOUNDS
    setup = ", ".join(part for part in (
        f"{report['strategy']} strategy" if report.get("strategy") else "",
        f"copycat {report['arch']}" if report.get("arch") else "",
    ) if part)
    score = "performance ratio" if report["metric"] == "performance_ratio" else "agreement on fresh query images"
    readings = ""
    if chosen.get("per_class_agreement") is not None:
        readings = (f"; there the per-class agreement is {percent(chosen['per_class_agreement'], 0)} and "
                    f"kappa {kappa_text(chosen.get('kappa'))} (a copy always giving the target's most frequent "
                    "answer scores 1 / classes and 0)")
    return (f"attack{f' ({setup})' if setup else ''}: the headline is the fewest queries whose {score} with "
            f"{_defence_phrase(report, headline)} comes within {_SAME * 100:.0f} point of its best{readings}; "
            f"risk is High at >= {_bound(high)}, Medium from {_bound(medium)}, Low below.")


def weights_text(report: dict) -> str:
    """The copycat's start: ``not pretrained``, or the weights it started from.

    >>> weights_text({"weights": None}), weights_text({"weights": "imagenet"})
    ('not pretrained', 'pretrained (ImageNet weights)')
    >>> weights_text({"weights": "/data/vgg16_notop.weights.h5"})
    'pretrained (weights vgg16_notop.weights.h5)'
    """
    weights = report.get("weights")  # reports from before pretrained copycats have none
    if weights is None:
        return "not pretrained"
    return "pretrained (ImageNet weights)" if weights == "imagenet" else f"pretrained (weights {Path(weights).name})"


def _shortfalls(report: dict) -> list[str]:
    budgets = report.get("budgets") or [r["queries"] for r in report["results"]]
    return weaker_than_published(pretrained=report.get("weights") is not None,
                                 largest_budget=max(budgets) if budgets else None)


def attacker_statement(report: dict) -> str:
    """The verdict's ``attacker simulated`` bullet: copycat, pretrained or not, strategy,
    query sources and budgets, and whether the risk found is a lower bound (the attacker is
    weaker than the published ones, :data:`~copycat_tf.audit.anchors.PUBLISHED_ATTACKS`).

    Example:

    >>> text = attacker_statement({"arch": "small_cnn", "weights": None, "strategy": "paper",
    ...                            "queries": ["photos"], "budgets": [1000, 5000], "results": []})
    >>> import textwrap
    >>> print(textwrap.fill(text, 100))
    attacker simulated: copycat small_cnn, not pretrained, paper strategy, queries of photos, budgets
    1,000 and 5,000. It is weaker than the published attacks (not pretrained; at most 5,000 queries
    against the papers' 100,000 and more), so this risk is a lower bound: a stronger attacker may copy
    more, and a Low verdict does not mean safe.
    """
    setup = ", ".join(part for part in (
        f"copycat {report['arch']}" if report.get("arch") else "",
        weights_text(report),
        f"{report['strategy']} strategy" if report.get("strategy") else "",
        f"queries of {_plain_list(report.get('queries') or [])}" if report.get("queries") else "",
        f"budgets {_plain_list(f'{b:,}' for b in report.get('budgets') or [])}" if report.get("budgets") else "",
    ) if part)
    shortfalls = _shortfalls(report)
    if shortfalls:
        strength = (f"It is weaker than the published attacks ({'; '.join(shortfalls)}), so this risk is a "
                    "lower bound: a stronger attacker may copy more, and a Low verdict does not mean safe.")
    else:
        strength = "It is as strong as the published attacks in pretraining and budget."
    return f"attacker simulated: {setup}. {strength}"


def _published_point() -> str:
    return f"published attacks: {'; '.join(str(anchor) for anchor in PUBLISHED_ATTACKS)}."


def _reference(at_largest: dict, name: str) -> str | None:
    """What ``name`` is compared with: label-acting defences with label-only answers (what
    their attacker would otherwise get), the others with full probabilities."""
    label_acting = name.startswith(("misinformation", "watermark"))
    for candidate in (("top1", "none") if label_acting else ("none",)):
        if candidate in at_largest and candidate != name:
            return candidate
    return None


def _defence_points(report: dict, at_largest: dict, largest: int) -> list[str]:
    """One bullet per defence scored at the largest budget: its score against its reference."""
    metric, points = report["metric"], []
    label_only = "top1" in at_largest
    for name, row in at_largest.items():
        reference = _reference(at_largest, name)
        if name == "none" or reference is None:
            continue
        score, base = metric_value(row, metric), metric_value(at_largest[reference], metric)
        if score is None or base is None:
            continue
        cut = round(base - score, 6)  # 0.97 - 0.96 is 0.0100000001: one point, not more
        effect = (f"a cut of {cut * 100:.1f} points" if cut > _SAME
                  else f"no cut beyond the {_SAME * 100:.0f}-point margin")
        point = (f"defence {name}: {_description(report, name)}; {percent(score, 0)} "
                 f"at {largest:,} queries against {percent(base, 0)} with {_defence_phrase(report, reference)}, "
                 f"{effect}")
        if row.get("owner_changed") is not None:
            point += f"; it changes {percent(row['owner_changed'])} of honest answers"
        if name != "top1" and row.get("top1_kept") is not None:
            then = ("label-only stealing (the Copycat CNN threat model) gets what the top1 row shows" if label_only
                    else "label-only stealing (the Copycat CNN threat model) is unaffected (add top1 to the "
                         "defences to measure it)")
            point += f"; it keeps the top-1 label for {percent(row['top1_kept'])} of these queries, so {then}"
        points.append(point + ".")
    return points


def _description(report: dict, name: str) -> str:
    if name == "top1":
        return "label-only answers"
    return next((d["description"] for d in report.get("defences", []) if d["name"] == name), name)


def _detection_points(report: dict) -> list[str]:
    prada = (report.get("detection") or {}).get("prada")
    if not prada:
        return []
    rule = f"PRADA-style monitoring (alarm while Shapiro-Wilk W < delta {prada['delta']:g})"
    if prada["first_alarm"] is None:
        found = (f"does not flag this attack in {report['queries_spent']:,} queries "
                 f"(lowest W {score_text(prada['min_w'])})")
    else:
        found = f"flags this attack after {prada['queries_to_alarm']:,} queries (lowest W {score_text(prada['min_w'])})"
    control = ""
    if prada.get("benign_source"):
        control = (f"; it {'also flags' if prada['benign_alarm'] else 'stays quiet on'} the benign "
                   f"images of {prada['benign_source']}")
    return [f"detection: {rule} {found}{control}."]


def _watermark_points(report: dict, at_largest: dict, largest: int) -> list[str]:
    points = []
    for name, row in at_largest.items():
        if not name.startswith("watermark") or "watermark_p_value" not in row:
            continue
        rate = next((d.get("parameters", {}).get("rate") for d in report.get("defences", [])
                     if d["name"] == name), None)
        which = f"a {percent(rate)} watermark" if rate is not None else "the watermark"
        rule = f"{which} identifies the copy when the binomial test gives p < {WATERMARK_P:g}"
        p = row["watermark_p_value"]
        if p is None:
            found = f"no marked query was among the {largest:,}, so it cannot"
        elif p < WATERMARK_P:
            found = f"here p = {p:.1g} at {largest:,} queries, so it does"
        else:
            found = f"here p = {p:.2g} at {largest:,} queries, so it does not"
        label = "watermark" if name == "watermark" else f"watermark {name}"
        points.append(f"{label}: {rule}; {found}.")
    return points


def _plain_list(items) -> str:
    """``a``, ``a and b``, ``a, b and c``: a list read as words, never glued on with commas."""
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}" if items else ""


def score_text(value) -> str:
    """A score to three decimals, or ``n/a``."""
    return "n/a" if value is None else f"{value:.3f}"
