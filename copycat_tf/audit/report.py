"""The audit's report: ``audit.json``, ``audit.md``, ``audit_curve.png`` and a self-contained ``audit.html``.

Everything here works from the ``audit.json`` dictionary that :func:`copycat_tf.audit.audit`
builds, so a report can be rewritten, or checked, without TensorFlow. The HTML page needs
nothing but itself: inline CSS, the curve embedded as a base64 ``data:`` URI, no scripts,
no external resources; every string in it is HTML-escaped (model metadata is untrusted).

Usage::

    files = write_audit_report(json.load(open("runs/audit/audit.json")), "runs/audit")
    files["html"]
    # PosixPath('runs/audit/audit.html')
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

from copycat_tf.audit.anchors import PUBLISHED_ATTACKS, weaker_than_published
from copycat_tf.contract import ImageInput
from copycat_tf.errors import CopycatError
from copycat_tf.files import atomic_write, write_json
from copycat_tf.report import kappa_text, percent

#: Two scores this close count as the same in the verdict.
_SAME = 0.01
_MAX_METADATA_CHARS = 300


def _value(result: dict, metric: str) -> float | None:
    return result.get(metric)


def _money(value: float | None) -> str:
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
    results = [r for r in report["results"] if _value(r, metric) is not None]
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
        best = max(_value(r, metric) for r in rows)
        chosen = next(r for r in rows if _value(r, metric) >= best - _SAME)
        sentence = _headline_sentence(report, headline, chosen)
        points.append(_attack_point(report, headline, chosen))
    points += [attacker_statement(report), _published_point()]
    points += _defence_points(report, at_largest, largest)
    points += _detection_points(report)
    points += _watermark_points(report, at_largest, largest)
    return sentence, points


def _headline_sentence(report: dict, headline: str, chosen: dict) -> str:
    metric = report["metric"]
    score = _value(chosen, metric)
    sources = _plain_list(report.get("queries") or []) or "the query images"
    amount = f"{chosen['queries']:,} queries of {sources}"
    if metric == "performance_ratio":
        core = f"{percent(score, 0)} of this model's accuracy was copied with {amount}"
    else:
        core = f"a copy agreeing with this model on {percent(score, 0)} of fresh query images was made with {amount}"
    price = report.get("price_per_1k")
    cost = "" if price is None else f" (cost {_money(chosen.get('cost'))} at {_money(price)} per 1,000 queries)"
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


def _pretrained(report: dict) -> str:
    """The copycat's start: ``not pretrained``, or the weights it started from.

    >>> _pretrained({"weights": None}), _pretrained({"weights": "imagenet"})
    ('not pretrained', 'pretrained (ImageNet weights)')
    >>> _pretrained({"weights": "/data/vgg16_notop.weights.h5"})
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
        _pretrained(report),
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
        score, base = _value(row, metric), _value(at_largest[reference], metric)
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
                 f"(lowest W {_w(prada['min_w'])})")
    else:
        found = f"flags this attack after {prada['queries_to_alarm']:,} queries (lowest W {_w(prada['min_w'])})"
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


def _w(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# ---------------------------------------------------------------------------- writing


def write_audit_report(report: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``audit.json``, ``audit_curve.png``, ``audit.md`` and ``audit.html`` into ``out_dir``.

    Returns:
        ``{"json": ..., "curve": ..., "markdown": ..., "html": ...}``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CopycatError(f"{out}: is a file, not a folder for the audit report")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "audit.json", "curve": out / "audit_curve.png",
             "markdown": out / "audit.md", "html": out / "audit.html"}
    if "verdict" not in report:
        report = {**report, "verdict": verdict(report)}
    write_json(paths["json"], report)
    png = curve_png(report)
    atomic_write(paths["curve"], lambda handle: handle.write(png))
    plot = (report.get("detection") or {}).get("plot")
    prada_png = (out / plot).read_bytes() if plot and (out / plot).is_file() else None
    _write_text(paths["markdown"], markdown(report, curve=paths["curve"].name))
    _write_text(paths["html"], html_page(report, png, prada_png))
    return paths


def _owner_rows(report: dict) -> list[tuple[str, str]]:
    """The detection and label-defence findings, as (what, finding) rows."""
    rows = []
    prada = (report.get("detection") or {}).get("prada")
    if prada:
        attack = ("no alarm" if prada["first_alarm"] is None
                  else f"alarm after {prada['queries_to_alarm']:,} queries")
        rows.append((f"PRADA replay, attack ({prada['strategy']} strategy, delta {prada['delta']:g})",
                     f"{attack}; lowest W {_w(prada['min_w'])}"))
        if prada.get("benign_source"):
            rows.append((f"PRADA replay, benign ({prada['benign_source']})",
                         "alarm" if prada["benign_alarm"] else "no alarm"))
    for r in report["results"]:
        parts = []
        if r.get("owner_changed") is not None:
            cost = r.get("owner_accuracy_cost")
            parts.append(f"changes {percent(r['owner_changed'])} of honest answers"
                         + ("" if cost is None else f" ({cost * 100:.1f} accuracy points)"))
        if "watermark_p_value" in r:
            p = r["watermark_p_value"]
            parts.append(f"copy matches {r['watermark_matches']} of {r['watermark_disagreements']} disagreements on "
                         f"{r['watermark_marks']} marked queries (chance {r['watermark_chance']:.3f} each), "
                         f"p = {'n/a' if p is None else format(p, '.2g')}")
        if parts:
            rows.append((f"{r['defence']} at {r['queries']:,} queries", "; ".join(parts)))
    for entry in report.get("misinformation_sweep") or []:
        rows.append((f"misinformation sweep, tau {entry['tau']:g}",
                     f"changes {percent(entry['attack_changed'])} of the attack's answers and "
                     f"{percent(entry['benign_changed'])} of honest ones"))
    return rows


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _metric_label(metric: str) -> str:
    return ("performance ratio (copycat / target accuracy)" if metric == "performance_ratio"
            else "agreement with the target on fresh query images")


def curve_png(report: dict) -> bytes:
    """The score against queries (log scale), one line per defence, as PNG bytes."""

    from matplotlib.figure import Figure

    metric = report["metric"]
    figure = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = figure.subplots()
    defences = list(dict.fromkeys(r["defence"] for r in report["results"]))
    for name in defences:
        rows = sorted((r for r in report["results"] if r["defence"] == name and _value(r, metric) is not None),
                      key=lambda r: r["queries"])
        if rows:
            ax.plot([r["queries"] for r in rows], [_value(r, metric) for r in rows], marker="o", label=name)
    ax.set_xscale("log")
    budgets = sorted({r["queries"] for r in report["results"]})
    if budgets:
        ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
        ax.minorticks_off()
    ax.set_ylim(0, max(1.05, *(_value(r, metric) or 0 for r in report["results"])))
    ax.set_xlabel("queries bought (log scale)")
    ax.set_ylabel(_metric_label(metric))
    ax.grid(True, alpha=0.3)
    ax.set_title("How much of the model is copied, by output policy")
    if defences:
        ax.legend(title="defence")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _contract_rows(report: dict) -> list[tuple[str, str]]:
    c = report["contract"]
    i, o, p = c["input"], c["output"], c.get("preprocessing") or {}
    shape = ["dynamic" if d is None else d for d in i["shape"]]
    rows = [
        ("input", f"{i['name']}: {i['dtype']} [{', '.join(map(str, shape))}] ({i['layout']})"),
        ("preprocessing", _preprocessing(p, channels=ImageInput.from_dict(i).image_shape[2])),
        ("output", f"{o['name']}: {o['num_classes']} classes, {o['kind']}"),
    ]
    if c.get("extra_outputs"):
        rows.append(("other outputs", ", ".join(map(str, c["extra_outputs"]))))
    return rows


def _preprocessing(p: dict, channels) -> str:
    """``(pixel - mean) / std`` and the channel order: ``grayscale`` for one channel (an order
    only means something with three).

    >>> _preprocessing({"mean": [0.0], "std": [255.0], "channel_order": "rgb"}, channels=1)
    '(pixel - [0.0]) / [255.0], grayscale'
    >>> _preprocessing({}, channels=3)
    'not recorded, rgb'
    """
    order = "grayscale" if channels == 1 else p.get("channel_order") or "rgb"
    if p.get("mean") is None or p.get("std") is None:
        return f"not recorded, {order}"
    return f"(pixel - {p['mean']}) / {p['std']}, {order}"


def _known(value) -> str:
    """``value`` as text without the ``None`` some tools write into version strings.

    >>> _known("tf2onnx 1.17.0 None"), _known(None), _known("None")
    ('tf2onnx 1.17.0', 'unknown', 'unknown')
    """
    words = [word for word in str(value if value is not None else "").split() if word != "None"]
    return " ".join(words) or "unknown"


def _metadata_rows(report: dict) -> list[tuple[str, str]]:
    model = report.get("model") or {}
    rows = [("producer", _known(model.get("producer")))]
    if model.get("parameters") is not None:
        rows.append(("parameters", f"{model['parameters']:,}"))
    for key, value in sorted((model.get("metadata") or {}).items()):
        value = str(value)
        rows.append((f"metadata {key}", value if len(value) <= _MAX_METADATA_CHARS
                     else value[:_MAX_METADATA_CHARS] + "..."))
    return rows


def _result_rows(report: dict) -> list[list[str]]:
    price = report.get("price_per_1k")
    order = {d["name"]: i for i, d in enumerate(report.get("defences", []))}
    rows = []
    for r in sorted(report["results"], key=lambda r: (r["queries"], order.get(r["defence"], len(order)))):
        rows.append([
            f"{r['queries']:,}", r["defence"], percent(r.get("performance_ratio")),
            percent(r.get("agreement")), percent(r.get("per_class_agreement")), kappa_text(r.get("kappa")),
            percent(r.get("copycat_accuracy")),
            percent(r.get("target_accuracy")), percent(r.get("top1_kept")),
            "" if price is None else _money(r.get("cost")),
        ])
    return rows


_RESULT_HEADER = ["queries", "defence", "performance ratio", "agreement", "per-class agreement", "kappa",
                  "copycat accuracy", "target accuracy", "top-1 label kept", "cost"]
#: How to read the two agreement figures a dominant class cannot inflate.
_READINGS_NOTE = (
    "Per-class agreement is the agreement within each class the target answers, averaged over "
    "those classes; kappa is Cohen's, agreement beyond chance. A copy that always gives the "
    "target's most frequent answer scores 1 / classes and 0 on them, however high its agreement."
)


def _spending_rows(report: dict) -> list[tuple[str, str]]:
    price = report.get("price_per_1k")
    rows = [
        ("query sources", ", ".join(report.get("queries") or []) or "n/a"),
        ("strategy", f"{_known(report.get('strategy'))} (copycat {_known(report.get('arch'))}, "
                     f"{_pretrained(report)})"),
        ("budgets", ", ".join(f"{b:,}" for b in report.get("budgets", []))),
        ("queries bought for the attack", f"{report['queries_spent']:,} (once, for every budget and defence)"),
        ("queries bought to measure agreement", f"{report.get('eval_queries_spent', 0):,}"),
        ("evaluated on", (f"{report['test_data']} ({report.get('evaluation_images', 0):,} images)"
                          if report.get("test_data") else
                          f"{report.get('evaluation_images', 0):,} fresh query images labelled by the target")),
    ]
    if price is not None:
        rows.append(("price", f"{_money(price)} per 1,000 queries"))
        rows.append(("cost of this audit's queries", _money(report.get("total_cost"))))
    return rows


def _md(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def markdown(report: dict, *, curve: str | None = "audit_curve.png") -> str:
    """The report as Markdown (the curve linked by file name)."""
    sentence, points = split_verdict(report["verdict"])
    lines = [f"# Copycat audit: {_md(report.get('target', 'target'))}", "", f"**{_md(sentence)}**", ""]
    lines += [f"- {_md(point)}" for point in points] + ([""] if points else [])
    lines += [f"sha256 `{report['sha256']}`", "", "## Model contract", "", "| | |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in _contract_rows(report) + _metadata_rows(report)]
    lines += ["", "## Queries and cost", "", "| | |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in _spending_rows(report)]
    lines += ["", "## Results", "", f"Score: {_metric_label(report['metric'])}.", "",
              "| " + " | ".join(_RESULT_HEADER) + " |", "|" + "---:|" * len(_RESULT_HEADER)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in _result_rows(report)]
    lines += ["", _READINGS_NOTE]
    if curve:
        lines += ["", f"![score against queries]({curve})"]
    owner = _owner_rows(report)
    if owner:
        lines += ["", "## Detection and defences", "", "| | |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in owner]
        plot = (report.get("detection") or {}).get("plot")
        if plot:
            lines += ["", f"![PRADA W over queries]({plot})"]
    lines += ["", "## How the defences were simulated", ""]
    lines += [f"- `{_md(d['name'])}`: {_md(d['description'])}" for d in report.get("defences", [])]
    lines += ["", _SIMULATION_NOTE, ""]
    return "\n".join(lines)


_SIMULATION_NOTE = (
    "The queries were bought once with full probabilities; each defence was applied offline to "
    "those answers (what an attacker behind that output policy would have received), and the "
    "first N records of the one purchase trained each budget's copycat, from scratch."
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:980px;margin:2em auto;
padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.verdict{background:#fff6e0;border-left:5px solid #e0a800;padding:.1em 1em;font-size:1.02em}
.verdict p{font-size:1.06em}.verdict ul{padding-left:1.2em}.verdict li{margin:.25em 0}
table{border-collapse:collapse;margin:.5em 0;font-size:.93em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,monospace;font-size:.92em;word-break:break-all}
img{max-width:100%;height:auto;border:1px solid #eee}.small{color:#555;font-size:.9em}
"""


def _owner_section(report: dict, prada_png: bytes | None) -> list[str]:
    rows = _owner_rows(report)
    if not rows:
        return []
    section = ['<h2 id="detection">Detection and defences</h2>', _pairs_table(rows)]
    if prada_png is not None:
        data = base64.b64encode(prada_png).decode("ascii")
        section.append(f'<p><img alt="PRADA W over queries" src="data:image/png;base64,{data}"></p>')
    return section


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _pairs_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _verdict_html(text: str) -> str:
    sentence, points = split_verdict(text)
    items = "".join(f"<li>{_e(point)}</li>" for point in points)
    return (f'<div class="verdict" id="verdict"><p><strong>{_e(sentence)}</strong></p>'
            + (f"<ul>{items}</ul>" if items else "") + "</div>")


def html_page(report: dict, png: bytes | None = None, prada_png: bytes | None = None) -> str:
    """The self-contained HTML report; ``png`` is the curve (drawn when not given),
    ``prada_png`` the detection replay's W curve (left out when not given)."""
    png = curve_png(report) if png is None else png
    image = base64.b64encode(png).decode("ascii")
    header = "".join(f"<th>{_e(h)}</th>" for h in _RESULT_HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td{'' if i == 1 else ' class=n'}>{_e(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in _result_rows(report)
    )
    defences = "".join(f"<li><code>{_e(d['name'])}</code>: {_e(d['description'])}</li>"
                       for d in report.get("defences", []))
    title = f"Copycat audit: {report.get('target', 'target')}"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="small">sha256 <code>{_e(report["sha256"])}</code> · copycat-tf {_e(report.get("tool_version", ""))}</p>',
        _verdict_html(report["verdict"]),
        "<h2>Results</h2>",
        f"<p>Score: {_e(_metric_label(report['metric']))}.</p>",
        f"<table><tr>{header}</tr>{body}</table>",
        f'<p class="small">{_e(_READINGS_NOTE)}</p>',
        f'<p><img alt="score against queries, one line per defence" src="data:image/png;base64,{image}"></p>',
        *_owner_section(report, prada_png),
        "<h2>Queries and cost</h2>",
        _pairs_table(_spending_rows(report)),
        "<h2>Model contract</h2>",
        _pairs_table([("sha256", report["sha256"])] + _contract_rows(report) + _metadata_rows(report)),
        "<h2>How the defences were simulated</h2>",
        f"<ul>{defences}</ul>",
        f"<p>{_e(_SIMULATION_NOTE)}</p>",
        "</body></html>",
        "",
    ])
