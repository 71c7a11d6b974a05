"""`copycat-tf demo`: train a Fashion-MNIST target and steal it, on data that ships offline."""

import click

from copycat_tf.cli.helptext import Command
from copycat_tf.cli.options import queries_option, run_options, train_config
from copycat_tf.cli.output import print_steal_result
from copycat_tf.cli.progress import StageBars
from copycat_tf.execution import Execution
from copycat_tf.pipeline import DEMO_BUDGET, demo
from copycat_tf.queries.spec import QuerySpec


@click.command("demo", cls=Command)
@click.option("--out", "out_dir", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="The demo's folder (target.onnx and the steal run); rerun to resume or reuse.")
@queries_option(default=("photos",))
@click.option("--target-epochs", type=int, metavar="N",
              help="Epochs for the Fashion-MNIST target (default: small_cnn's).")
@run_options(budget=DEMO_BUDGET)
def demo_command(out_dir, queries, target_epochs, budget, strategy, arch, weights, fine_tune, epochs, labels,
                 balance, seed, deterministic, overwrite):
    """Steal a Fashion-MNIST classifier end to end, on data that ships offline.

    Trains (or reuses) a small_cnn target on Fashion-MNIST and exports it to ONNX, steals
    it with queries from the built-in photo pool (non-problem-domain images: none of them
    is a garment), and prints the side-by-side report: accuracy, macro-F1, performance
    ratio and agreement. About 5-10 minutes on 2 CPU cores with the defaults. A rerun
    reuses what is done; with --overwrite it steals again, and trains the target again
    only if --target-epochs or --seed changed.

    \b
    Examples:
      copycat-tf demo
      copycat-tf demo --budget 50000 --epochs 12 --out runs/demo-big
      copycat-tf demo --queries noise:uniform --out runs/demo-noise
    """
    with StageBars() as bars:
        result = demo(out_dir, queries=QuerySpec(tuple(queries)), target_epochs=target_epochs, budget=budget,
                      strategy=strategy,
                      train_config=train_config(strategy, balance, arch=arch, weights=weights, fine_tune=fine_tune,
                                                epochs=epochs, labels=labels, seed=seed, deterministic=deterministic),
                      execution=bars.watching(Execution(overwrite=overwrite)))
    print_steal_result(result)
