"""What commands print when they finish: result summaries shared by several commands."""

from __future__ import annotations

import click

from copycat_tf.report import summary


def print_steal_result(result) -> None:
    """The lines `steal` and `demo` end with: fake dataset, copycat, reports and the headline."""
    fakeset, copycat = result.fakeset, result.copycat
    click.echo(f"fake set  {fakeset.directory} ({fakeset.count:,} records, "
               f"{fakeset.queries_spent:,} queries spent)")
    price = result.run.get("price_per_1k")
    if price is not None:
        click.echo(f"cost      {fakeset.queries_spent * price / 1000:,.2f} at {price:g} per 1,000 queries")
    click.echo(f"copycat   {copycat.onnx_path}"
               + (" (already trained)" if copycat.already_trained else ""))
    if result.evaluation is not None:
        click.echo(summary(result.evaluation))
        click.echo(f"report    {result.report_files['markdown']}")
    if result.eval_evaluation is not None:
        click.echo(summary(result.eval_evaluation))
        click.echo(f"report    {result.eval_report_files['markdown']}")
    click.echo(result.headline)
