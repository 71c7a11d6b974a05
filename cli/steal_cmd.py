import sys

import click
from copycat_tf.cli.options import oracle_kwargs, oracle_options
from copycat_tf.cli.train_cmd import ARCH_HELP, arch_option
from tqdm import tqdm

from copycat_tf.pipeline import steal
from copycat_tf.report import summary
from copycat_tf.strategies import DEFAULT_BALANCE, DEFAULT_STRATEGY, STRATEGIES
from copycat_tf.training import TrainConfig
from copycat_tf.training.data import BALANCE_MODES, LABEL_MODES


def run_options(budget: int):
    """Options shared by `steal` and `demo`: the attack's budget and the copycat's training."""
    options = [
        click.option("--budget", type=int, default=budget, show_default=True, metavar="N",
                     help="Queries to buy from the target."),
        click.option("--strategy", type=click.Choice(STRATEGIES), default=DEFAULT_STRATEGY,
                     show_default=True,
                     help="balanced: spend the budget in rounds of transformed queries chosen to "
                          "reach the target's rare classes, training a scout copycat between "
                          "rounds; paper: the papers' single pass over the queries as they come."),
        arch_option(ARCH_HELP),
        click.option("--epochs", type=int, metavar="N",
                     help="Copycat epochs (default: the architecture's, raised to at least 500 "
                          "training steps on small fake datasets)."),
        click.option("--labels", type=click.Choice(LABEL_MODES), default="hard", show_default=True,
                     help="hard: the target's classes only (the paper's threat model); soft: "
                          "also its probabilities."),
        click.option("--balance", type=click.Choice(BALANCE_MODES),
                     help="Rebalance rare classes when training the copycat (default: "
                          "sqrt-weights with --strategy balanced, none with paper)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seeds queries and training."),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@click.command("steal")
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--queries", "queries", multiple=True, required=True, metavar="SRC[:WEIGHT]",
              help="Query images, repeatable: a folder (searched recursively), a .txt list of "
                   "paths, a .npy/.npz array, noise:uniform, noise:gaussian or photos (built-in "
                   "photo pool). Mix sources with weights, e.g. --queries ./imagenet "
                   "--queries ./pd:0.2.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The run's folder (fakeset/, copycat/, report/). Rerun to resume.")
@click.option("--test-data", metavar="SPEC",
              help="Labelled test data for the side-by-side report: fashion-mnist:test, "
                   "digits:test, mnist:test, a .npz with x/y, or a folder of class subfolders.")
@run_options(budget=10_000)
@oracle_options
def steal_command(target, queries, out_dir, test_data, budget, strategy, arch, epochs, labels, balance,
                  seed, **options):
    """Copy TARGET (an ONNX model) through its answers alone: label, train, export, evaluate.

    TARGET is queried through onnxruntime as a black box with the --queries images; its
    answers become OUT/fakeset; a copycat is trained on them and exported as
    OUT/copycat/copycat.onnx with TARGET's exact input contract; with --test-data both
    models are compared in OUT/report. Each stage resumes, or is skipped when already
    complete, so an interrupted steal is finished by rerunning the same command.

    \b
    Examples:
      copycat-tf steal target.onnx --queries ./imagenet --out runs/steal
      copycat-tf steal target.onnx --queries photos --budget 30000 \\
          --test-data fashion-mnist:test --out runs/fmnist
      copycat-tf steal target.onnx --queries ./imagenet --strategy paper --out runs/paper
      copycat-tf steal vendor.onnx --queries ./imagenet --queries ./pd:0.1 --arch vgg16 \\
          --layout NCHW --mean 123.7,116.3,103.5 --std 58.4,57.1,57.4 --out runs/vendor
    """

    result = steal(target, list(queries), out_dir, budget=budget, test_data=test_data,
                   oracle_options=oracle_kwargs(options), **_progress_and_config(
                       strategy, arch, epochs, labels, balance, seed))
    print_result(result)


def _progress_and_config(strategy, arch, epochs, labels, balance, seed) -> dict:
    from copycat_tf.cli.label_cmd import LabelProgressBar


    return {
        "strategy": strategy,
        "train_config": TrainConfig(arch=arch, epochs=epochs, balance=balance or DEFAULT_BALANCE[strategy]),
        "labels": labels,
        "seed": seed,
        "label_progress": LabelProgressBar(tqdm),
        "fit_verbose": 2 if sys.stderr.isatty() else 0,
    }


def print_result(result) -> None:
    fakeset, copycat = result.fakeset, result.copycat
    click.echo(f"fake set  {fakeset.directory} ({fakeset.count:,} records, "
               f"{fakeset.queries_spent:,} queries spent)")
    click.echo(f"copycat   {copycat.onnx_path}"
               + (" (already trained)" if copycat.already_trained else ""))
    if result.evaluation is not None:

        click.echo(summary(result.evaluation))
        click.echo(f"report    {result.report_files['markdown']}")
    click.echo(result.headline)
