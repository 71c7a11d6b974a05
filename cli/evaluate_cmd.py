"""`copycat-tf evaluate`: target and copycat side by side on the same test images."""

import sys

import click
from tqdm import tqdm

from copycat_tf.cli import progress
from copycat_tf.cli.output import echo_field
from copycat_tf.cli.helptext import Command
from copycat_tf.cli.options import (
    batch_size_option,
    eval_data_option,
    oracle_options,
    overwrite_option,
    renamed_option,
    target_argument,
    target_spec,
    labelled_test_option,
)
from copycat_tf.attack import SpendPlan
from copycat_tf.datasets import load_labelled
from copycat_tf.errors import CopycatError
from copycat_tf.evaluation import evaluate
from copycat_tf.oracle import TargetSpec
from copycat_tf.report import headline, summary, write_report


@click.command("evaluate", cls=Command)
@target_argument
@click.argument("copycat", type=click.Path(dir_okay=False))
@labelled_test_option
@eval_data_option
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for report.json, report.md and the PNG plots.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Evaluate on the first N test images only (quick checks).")
@batch_size_option()
@click.option("--queries-spent", "queries_spent", type=click.IntRange(min=0), metavar="N",
              help="Queries the attack spent, for the report. Default: read from the "
                   "copycat's ONNX metadata.")
@renamed_option("--queries", "--queries-spent", why=" (--queries names image sources in every other command)",
                type=click.IntRange(min=0))
@overwrite_option("the report")
@oracle_options
def evaluate_command(target, copycat, test_data, eval_data, out, limit, batch_size, queries_spent,
                     overwrite, **options):
    """Compare a copycat with its target on the same test images.

    COPYCAT is an ONNX file, run through onnxruntime; both models are black boxes. Reports each model's
    accuracy and macro-F1, the performance ratio (copycat / target accuracy, the Copycat
    CNN papers' headline), the agreement (same predicted label), per-class precision and
    recall, and both confusion matrices; on unlabelled images (--eval-data, or a flat
    folder as --test-data) the agreement alone. The --mean/--std/... options describe TARGET;
    the copycat's contract comes from its own metadata (--provider applies to both).

    \b
    Examples:
      copycat-tf evaluate target.onnx runs/steal/copycat.onnx \\
          --test-data fashion-mnist:test --out runs/eval
      copycat-tf evaluate target.onnx copycat.onnx --test-data test.npz --out runs/eval --limit 1000
      copycat-tf evaluate vendor.onnx copycat.onnx --eval-data ./my-photos --out runs/eval
      copycat-tf evaluate vendor.onnx copycat.onnx --test-data ./test-images --out runs/eval \\
          --layout NCHW --mean 123.7,116.3,103.5 --std 58.4,57.1,57.4
    """
    if (test_data is None) == (eval_data is None):
        raise CopycatError("give the images to compare on as --test-data SPEC or --eval-data SPEC "
                           f"(one of them); received {'both' if test_data else 'neither'}")
    spec = target_spec(target, options)
    target_oracle = spec.open()
    # The contract overrides describe TARGET only; the execution providers are the machine's.
    copycat_oracle = TargetSpec(copycat, providers=spec.providers).open()
    test = load_labelled(test_data or eval_data, image_shape=target_oracle.contract.image_shape).take(limit)
    SpendPlan(0, evaluation_images=len(test.images), probes=target_oracle.info().probe_queries).announce(
        "this evaluation", spec.shown)
    # disable=None: a bar on terminals only, so logs and pipes get no carriage-return noise.
    with tqdm(total=len(test.images), unit="img", desc="querying both models",
              file=sys.stderr, leave=False, disable=True if progress.QUIET else None) as bar:
        evaluation = evaluate(
            target_oracle, copycat_oracle, test, batch_size=batch_size, queries=queries_spent,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    paths = write_report(evaluation, out, overwrite=overwrite)
    click.echo(summary(evaluation))
    echo_field("report", ", ".join(str(p) for p in paths.values()))
    click.echo(headline(evaluation))
