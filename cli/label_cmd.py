"""`copycat-tf label`: query a target and keep its answers as a fake dataset (the papers' single pass)."""

import click

from copycat_tf.cli.helptext import Command
from copycat_tf.cli.options import (
    batch_size_option,
    budget_option,
    engine_options,
    labeling_engine,
    labels_option,
    oracle_options,
    overwrite_option,
    price_option,
    queries_option,
    renamed_option,
    resize_option,
    seed_option,
    target_argument,
    target_spec,
)
from copycat_tf.cli.output import class_table, echo_field
from copycat_tf.cli.progress import LabelProgressBar
from copycat_tf.attack import SpendPlan
from copycat_tf.execution import Execution
from copycat_tf.fakeset import DEFAULT_SHARD_SIZE, label, stored_contract
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.pipeline import STEAL_BUDGET


@click.command("label", cls=Command)
@target_argument
@queries_option()
@budget_option(STEAL_BUDGET)
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Folder for the fake dataset; rerun into it to resume or extend.")
@labels_option
@seed_option
@batch_size_option()
@resize_option
@click.option("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, show_default=True,
              help="Records per shard file; an interruption re-buys at most one shard.")
@overwrite_option("the fake dataset")
@price_option
@renamed_option("--cost-per-1k", "--price-per-1k", type=click.FloatRange(min=0))
@engine_options
@oracle_options
def label_command(target, queries, budget, out_dir, labels, seed, batch_size, resize, shard_size,
                  overwrite, price_per_1k, **options):
    """Query TARGET with unlabeled images and save its answers as a fake dataset.

    Images from --queries are decoded, fitted to the target's input (size and colour)
    and sent in batches; the answers are written to --out in shards with a manifest
    (oracle sha256, contract, options, label histogram). Unreadable or non-image files
    are skipped and listed in OUT/rejected.tsv. After an interruption, rerun the same
    command: it continues from the last finished shard. A larger --budget extends a
    finished dataset.

    This is the papers' single pass over the queries. `copycat-tf steal` defaults to the
    balanced strategy instead (queries chosen in rounds by a scout copycat), which copies
    a narrow-domain target far better per query.

    \b
    Examples:
      copycat-tf label target.onnx --queries ~/imagenet --budget 50000 --out runs/fake
      copycat-tf label target.onnx --queries photos --budget 10000 --out runs/photos
      copycat-tf label target.onnx --queries ~/imagenet --queries pd_images/:0.2 --out runs/npd_pd
      copycat-tf label target.onnx --queries noise:uniform --budget 5000 --labels soft --out runs/noise
      copycat-tf label target.onnx --queries list.txt --price-per-1k 1.50 --out runs/paid
      COPYCAT_TF_HEADERS="$(cat headers.txt)" copycat-tf label \\
          https://api.example.com/v2/models/fer --queries photos --out runs/fer
      copycat-tf label target.onnx --queries /data/imagenet --engine ray --ray-address auto \\
          --out runs/big
    """
    engine = labeling_engine(options)
    # A rerun into a fake dataset reuses the contract it was labelled under: a remote target
    # is not probed again, and a probe's images count against --budget like any query.
    spec = target_spec(target, options, price_per_1k)
    oracle = spec.open(budget=budget, contract=stored_contract(out_dir))
    SpendPlan(budget, probes=oracle.info().probe_queries, price_per_1k=price_per_1k).announce(
        "labeling (all runs into --out together)", spec.shown)
    with engine as engine, LabelProgressBar() as bar:
        fakeset = label(oracle, QuerySpec(tuple(queries), resize=resize, batch_size=batch_size), budget, out_dir,
                        labels=labels, seed=seed, shard_size=shard_size,
                        execution=Execution(overwrite=overwrite, engine=engine, label_progress=bar))
    _print_summary(fakeset, price_per_1k, oracle.info().class_names)


def _print_summary(fakeset, price_per_1k, class_names):
    summary = fakeset.summary()
    count, spent = summary["count"], summary["queries_spent"]
    state = ("complete" if summary["count"] >= summary["budget"]
             else "query sources used up" if summary["exhausted"] else "incomplete")
    echo_field("labeled", f"{count:,} images ({state}) in {fakeset.directory}")
    rebought = f" ({summary['rebought']:,} bought again after interruptions)" if summary["rebought"] else ""
    echo_field("queries", f"{spent:,} spent{rebought}")
    rejected = f" (see {fakeset.directory / 'rejected.tsv'})" if summary["rejected"] else ""
    echo_field("rejected", f"{summary['rejected']:,} inputs{rejected}")
    if len(summary["source_counts"]) > 1:
        for entry in summary["source_counts"]:
            share = entry["count"] / max(count, 1)
            echo_field("source", f"{entry['spec']}: {entry['count']:,} ({share:.1%})")
    click.echo("labels")
    for line in class_table(summary["label_histogram"], class_names):
        click.echo(line)
    if count and summary["dominant_share"] > 0.5:
        click.echo(
            f"warning: class {summary['dominant_class']} holds {summary['dominant_share']:.0%} of the "
            "labels; a copycat trained on this learns little about the other classes (try more "
            "varied query images, or mix in some problem-domain ones: --queries views:PD_FOLDER:0.2)"
        )
    if price_per_1k is not None:
        echo_field("cost", f"{spent / 1000 * price_per_1k:,.2f} at {price_per_1k:g} per 1,000 queries")
