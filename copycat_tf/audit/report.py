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

from copycat_tf.contract import ImageInput
from copycat_tf.errors import CopycatError
from copycat_tf.files import atomic_write, write_json
from copycat_tf.audit.verdict import (
    metric_value,
    money_text,
    score_text,
    split_verdict,
    verdict,
    weights_text,
)
from copycat_tf.report import kappa_text, percent

_MAX_METADATA_CHARS = 300


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
                     f"{attack}; lowest W {score_text(prada['min_w'])}"))
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
        rows = sorted((r for r in report["results"] if r["defence"] == name and metric_value(r, metric) is not None),
                      key=lambda r: r["queries"])
        if rows:
            ax.plot([r["queries"] for r in rows], [metric_value(r, metric) for r in rows], marker="o", label=name)
    ax.set_xscale("log")
    budgets = sorted({r["queries"] for r in report["results"]})
    if budgets:
        ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
        ax.minorticks_off()
    ax.set_ylim(0, max(1.05, *(metric_value(r, metric) or 0 for r in report["results"])))
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
            "" if price is None else money_text(r.get("cost")),
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
                     f"{weights_text(report)})"),
        ("budgets", ", ".join(f"{b:,}" for b in report.get("budgets", []))),
        ("queries bought for the attack", f"{report['queries_spent']:,} (once, for every budget and defence)"),
        ("queries bought to measure agreement", f"{report.get('eval_queries_spent', 0):,}"),
        ("evaluated on", (f"{report['test_data']} ({report.get('evaluation_images', 0):,} images)"
                          if report.get("test_data") else
                          f"{report.get('evaluation_images', 0):,} fresh query images labelled by the target")),
    ]
    if price is not None:
        rows.append(("price", f"{money_text(price)} per 1,000 queries"))
        rows.append(("cost of this audit's queries", money_text(report.get("total_cost"))))
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
