"""The report stage: an :class:`~copycat_tf.evaluation.Evaluation` as JSON, Markdown and plots.

All formatting of evaluation results lives here. :func:`write_report` writes

- ``report.json``: every number, nested (``target.accuracy`` is ``{"target": {"accuracy": ...}}``);
- ``report.md``: target and copycat side by side, the ratio, agreement and per-class scores;
- ``confusion.png``: both confusion matrices side by side (labelled test data only);
- ``agreement.png``: the target's label against the copycat's, image by image.

Usage::

    paths = write_report(evaluate(target, copycat, test), "runs/evaluate")
    print(headline(evaluation))
    # copycat reaches 93.1% of the target's accuracy (agreement 91.0%) with 30,000 queries
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from copycat_tf.evaluation import Evaluation
from copycat_tf.files import OutputFolder, write_json

#: Above this many classes, matrix cells are too small to print counts in.
MAX_ANNOTATED_CLASSES = 20
#: Above this many classes, class names would overlap on the plot axes.
MAX_NAMED_CLASSES = 40
#: Width of the label column of terminal result blocks: this summary and the lines the
#: commands print around it (``fake set``, ``report``...) start their values in one column.
LABEL_WIDTH = 10


def headline(evaluation: Evaluation) -> str:
    """The one-line result, in the papers' terms.

    Usage::

        headline(evaluation)
        # "copycat reaches 93.1% of the target's accuracy (agreement 91.0%) with 30,000 queries"
    """
    e = evaluation
    if not e.labelled:
        line = f"copycat agrees with the target on {e.agreement:.1%} of {e.count:,} test images"
        return line + (f" ({e.queries:,} queries)" if e.queries is not None else "")
    if e.performance_ratio is None:
        line = (
            f"the target gets no test image right, so there is no performance ratio; copycat "
            f"accuracy {e.copycat.accuracy:.1%} (agreement {e.agreement:.1%})"
        )
    else:
        line = (
            f"copycat reaches {e.performance_ratio:.1%} of the target's accuracy "
            f"(agreement {e.agreement:.1%})"
        )
    return line + (f" with {e.queries:,} queries" if e.queries is not None else "")


def held_out_line(evaluation: Evaluation) -> str:
    """The copy measured on other images, as a clause for a headline (``steal --eval-data``).

    Usage::

        held_out_line(evaluation)
        # "on 245 images of heldout/natural: agreement 43.1%"
        # "on 360 images of digits:test: agreement 91.0%, accuracy target 96.1%, copycat 89.4%"
    """
    e = evaluation
    line = f"on {e.count:,} images of {e.test_name}: agreement {e.agreement:.1%}"
    if e.labelled:
        line += f", accuracy target {e.target.accuracy:.1%}, copycat {e.copycat.accuracy:.1%}"
    return line


def summary(evaluation: Evaluation) -> str:
    """A few aligned lines comparing target and copycat, for the terminal.

    Usage::

        print(summary(evaluation))
        # test data fashion-mnist:test: 10,000 images, 10 classes
        #               target   copycat
        # accuracy       91.2%     84.9%
        # macro-F1       0.911     0.846
        # ratio          93.1% of the target's accuracy (macro-F1: 92.9%)
        # agreement      91.0%
    """
    e = evaluation
    w = LABEL_WIDTH
    lines = [f"{'test data':{w}}{e.test_name}: {e.count:,} images, {len(e.class_names)} classes"]
    if e.labelled:
        lines += [
            f"{'':{w}}{'target':>10}{'copycat':>10}",
            f"{'accuracy':{w}}{e.target.accuracy:>10.1%}{e.copycat.accuracy:>10.1%}",
            f"{'macro-F1':{w}}{e.target.macro_f1:>10.3f}{e.copycat.macro_f1:>10.3f}",
            f"{'ratio':{w}}{percent(e.performance_ratio):>10} of the target's accuracy "
            f"(macro-F1: {percent(e.macro_f1_ratio)})",
        ]
    else:
        lines.append("(unlabelled test data: agreement only)")
    lines.append(f"{'agreement':{w}}{e.agreement:>10.1%}")
    return "\n".join(lines)


def write_report(evaluation: Evaluation, out_dir: str | os.PathLike, *, overwrite: bool = False,
                 provenance: dict | None = None) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (created if missing).

    Args:
        evaluation: what :func:`~copycat_tf.evaluation.evaluate` returned.
        out_dir: the report folder; existing report files in it are replaced. A folder
            holding other files and no report is refused.
        overwrite: write beside other files there (deleting only report files).
        provenance: how the copycat was made (a steal's run record: target sha256, query
            sources, strategy, budget, seed, copycat settings, tool version), kept in both files.

    Returns:
        ``{"json": ..., "markdown": ..., "agreement_plot": ...}`` plus ``"confusion_plot"``
        for labelled test data.

    Usage::

        write_report(evaluation, "runs/evaluate")["markdown"]
        # PosixPath('runs/evaluate/report.md')
    """
    out = Path(out_dir)
    folder = OutputFolder(out, "copycat-tf report",
                          files=("report.json", "report.md", "agreement.png", "confusion.png"))
    folder.claim(overwrite=overwrite, holds_run=(out / "report.json").is_file())
    paths = {
        "json": out / "report.json",
        "markdown": out / "report.md",
        "agreement_plot": out / "agreement.png",
    }
    e = evaluation
    write_json(paths["json"], {**e.to_dict(), **({"provenance": provenance} if provenance else {})})
    _plot_matrices(
        [(f"target vs copycat: agreement {e.agreement:.1%}", e.agreement_matrix,
          "copycat's label", "target's label")],
        e.class_names,
        paths["agreement_plot"],
    )
    confusion_plot = out / "confusion.png"
    if e.labelled:
        paths["confusion_plot"] = confusion_plot
        _plot_matrices(
            [(f"{role}: accuracy {scores.accuracy:.1%}", scores.confusion, "predicted", "true")
             for role, scores in (("target", e.target), ("copycat", e.copycat))],
            e.class_names,
            confusion_plot,
        )
    else:
        # A plot left by an earlier labelled run would contradict this report.
        confusion_plot.unlink(missing_ok=True)
    paths["markdown"].write_text(markdown(e, plots=paths, provenance=provenance))
    return paths


def markdown(evaluation: Evaluation, *, plots: dict[str, Path] | None = None, provenance: dict | None = None) -> str:
    """The report as Markdown; ``plots`` (from :func:`write_report`) are linked by file name."""
    e = evaluation
    plots = plots or {}
    lines = [
        "# Copycat evaluation",
        "",
        f"**{headline(e)}**",
        "",
        f"Test data: `{e.test_name}`, {e.count:,} images, {len(e.class_names)} classes"
        + ("" if e.labelled else " (unlabelled: agreement only)") + ".",
        "",
        "| | target | copycat |",
        "|---|---|---|",
    ]
    if e.labelled:
        lines += [
            f"| accuracy | {e.target.accuracy:.2%} | {e.copycat.accuracy:.2%} |",
            f"| macro-F1 | {e.target.macro_f1:.4f} | {e.copycat.macro_f1:.4f} |",
        ]
    lines += [
        f"| sha256 | `{e.target_sha256[:16]}` | `{e.copycat_sha256[:16]}` |",
        f"| architecture | | {e.arch or 'unknown'} |",
        "",
    ]
    if e.labelled:
        lines += [
            f"- Performance ratio (copycat / target accuracy): **{percent(e.performance_ratio)}**",
            f"- Macro-F1 ratio (copycat / target): {percent(e.macro_f1_ratio)}",
        ]
    lines += [
        f"- Agreement (same predicted label): **{e.agreement:.2%}** (per class of the target's "
        f"answers {e.per_class_agreement:.2%}; Cohen's kappa "
        f"{'undefined, one answer throughout' if e.kappa is None else format(e.kappa, '.3f')})",
        f"- Queries the attack sent to the target: "
        f"{'unknown' if e.queries is None else format(e.queries, ',')}",
        "",
    ]
    if e.labelled:
        lines += _per_class_table(e) + [""]
    plot_titles = {"confusion_plot": "Confusion matrices", "agreement_plot": "Target vs copycat"}
    for key, title in plot_titles.items():
        if key in plots:
            lines += [f"## {title}", "", f"![{title.lower()}]({plots[key].name})", ""]
    if provenance:
        lines += _provenance_lines(provenance)
    return "\n".join(lines)


def _provenance_lines(run: dict) -> list[str]:
    """How the copycat was made, so the report can be reproduced and audited."""
    copycat = run.get("copycat", {})
    rows = [
        ("target", f"`{run['target']['file']}` (sha256 `{run['target']['sha256']}`)"),
        ("query sources", ", ".join(f"`{q}`" for q in run["queries"])),
        ("strategy", run["strategy"]),
        ("budget", f"{run['budget']:,} queries, {run['labels']} labels"),
        ("seed", str(run["seed"])),
        ("copycat", f"{copycat.get('arch')}, epochs {copycat.get('epochs') or 'default'}, "
                    f"balance {copycat.get('balance')}"),
        ("tool", f"copycat-tf {run['tool_version']}"),
    ]
    return ["## Provenance", "", "| | |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in rows), ""]


def _per_class_table(e: Evaluation) -> list[str]:
    lines = [
        "## Per class",
        "",
        "| class | support | target precision | target recall | copycat precision | copycat recall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, name in enumerate(e.class_names):
        lines.append(
            f"| {_cell(name)} | {e.target.support[k]:,} | {e.target.precision[k]:.3f} | "
            f"{e.target.recall[k]:.3f} | {e.copycat.precision[k]:.3f} | {e.copycat.recall[k]:.3f} |"
        )
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def percent(value: float | None, digits: int = 1) -> str:
    """A share as a percentage for reports, ``n/a`` when there is none.

    Example:

    >>> percent(0.9312), percent(0.9312, 0), percent(None)
    ('93.1%', '93%', 'n/a')
    """
    return "n/a" if value is None else f"{value:.{digits}%}"


def kappa_text(value: float | None) -> str:
    """Cohen's kappa for tables, ``n/a`` when undefined or not measured.

    Example:

    >>> kappa_text(0.4567), kappa_text(None)
    ('0.46', 'n/a')
    """
    return "n/a" if value is None else f"{value:.2f}"


def _plot_matrices(panels, class_names: list[str], path: Path) -> None:
    """Draw ``(title, counts, x label, y label)`` panels side by side into a PNG.

    Colours are row-normalised, so a class with few test images reads as clearly as a
    large one; counts are printed in the cells when they fit.
    """
    # Figure without pyplot: no global backend switch, nothing left open, safe in threads.
    from matplotlib.figure import Figure

    k = len(class_names)
    side = min(max(3.0, 0.45 * k + 1.5), 14.0)
    figure = Figure(figsize=(side * len(panels) + 0.5, side), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, counts, xlabel, ylabel) in zip(axes, panels):
        rows = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if k <= MAX_NAMED_CLASSES:
            ax.set_xticks(range(k), class_names, rotation=90)
            ax.set_yticks(range(k), class_names)
        if k <= MAX_ANNOTATED_CLASSES:
            for (row, col), count in np.ndenumerate(counts):
                ax.text(col, row, f"{count}", ha="center", va="center", fontsize=7,
                        color="white" if shares[row, col] > 0.5 else "black")
    figure.colorbar(image, ax=list(axes), shrink=0.8, label="share of the row")
    figure.savefig(path, dpi=100)
