"""What commands print when they finish: result summaries shared by several commands."""

from __future__ import annotations

import click

from copycat_tf.report import LABEL_WIDTH, summary


def echo_field(label: str, value) -> None:
    """One line of a result block: ``label`` padded to the column :func:`summary` uses too.

    >>> echo_field("report", "runs/x/report.md")
    report    runs/x/report.md
    """
    click.echo(f"{label:<{LABEL_WIDTH}}{value}")


def class_table(histogram, class_names=None) -> list[str]:
    """``label``'s class histogram, one aligned line per class (names padded to the longest).

    >>> print("\\n".join(class_table([1, 250, 12_000], ["T-shirt/top", "Bag", "Ankle boot"])))
      class   0 T-shirt/top:        1 (  0.0%)
      class   1 Bag:              250 (  2.0%)
      class   2 Ankle boot:    12,000 ( 98.0%)
    """
    total = max(sum(histogram), 1)
    names = [f"{name}:" for name in class_names] if class_names else [":"] * len(histogram)
    width = max(map(len, names), default=0)
    return [f"  class {cls:>3}{' ' if class_names else ''}{name:<{width}} {n:>8,} ({n / total:6.1%})"
            for cls, (name, n) in enumerate(zip(names, histogram))]


def print_steal_result(result) -> None:
    """The lines `steal` and `demo` end with: fake dataset, copycat, reports and the headline."""
    fakeset, copycat = result.fakeset, result.copycat
    echo_field("fake set", f"{fakeset.directory} ({fakeset.count:,} records, "
                           f"{fakeset.queries_spent:,} queries spent)")
    price = result.run.get("price_per_1k")
    if price is not None:
        echo_field("cost", f"{fakeset.queries_spent * price / 1000:,.2f} at {price:g} per 1,000 queries")
    echo_field("copycat", f"{copycat.onnx_path}" + (" (already trained)" if copycat.already_trained else ""))
    if result.evaluation is not None:
        click.echo(summary(result.evaluation))
        echo_field("report", result.report_files["markdown"])
    if result.eval_evaluation is not None:
        click.echo(summary(result.eval_evaluation))
        echo_field("report", result.eval_report_files["markdown"])
    click.echo(result.headline)
