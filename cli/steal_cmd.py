"""`copycat-tf steal`: the whole attack on one target, resumable."""

import click

from copycat_tf.cli.helptext import Command
from copycat_tf.cli.options import (
    batch_size_option,
    devices_option,
    engine_options,
    eval_data_option,
    labeling_engine,
    oracle_options,
    price_option,
    queries_option,
    resize_option,
    run_options,
    semi_supervised_option,
    labelled_test_option,
    target_argument,
    target_spec,
    train_config,
)
from copycat_tf.cli.output import print_steal_result
from copycat_tf.cli.progress import StageBars
from copycat_tf.attack import Measurement
from copycat_tf.execution import Execution
from copycat_tf.pipeline import STEAL_BUDGET, steal
from copycat_tf.queries.spec import QuerySpec


@click.command("steal", cls=Command)
@target_argument
@queries_option()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The run's folder (fakeset/, copycat/, report/, steal.json). Rerun to resume.")
@labelled_test_option
@price_option
@eval_data_option
@run_options(budget=STEAL_BUDGET)
@batch_size_option()
@resize_option
@semi_supervised_option
@devices_option
@engine_options
@oracle_options
def steal_command(target, queries, out_dir, test_data, price_per_1k, eval_data, budget, strategy, arch, weights,
                  fine_tune, epochs, labels, balance, seed, deterministic, overwrite, batch_size, resize, semi_supervised,
                  devices,
                  **options):
    """Copy TARGET through its answers alone: label, train, export, evaluate.

    TARGET is queried as a black box with the --queries images; its
    answers become OUT/fakeset; a copycat is trained on them and exported as
    OUT/copycat/copycat.onnx with TARGET's exact input contract; with --test-data both
    models are compared in OUT/report, and with --eval-data (any images, no labels
    needed) in OUT/eval, its agreement joining the headline. Each stage resumes, or is
    skipped when already complete, so an interrupted steal is finished by rerunning the
    same command; a rerun with other arguments is refused (pass --overwrite to start again).
    With --semi-supervised the copycat also learns from further images of the same
    --queries sources, never sent to TARGET: no query is bought for them.

    \b
    Examples:
      copycat-tf steal target.onnx --queries ./imagenet --out runs/steal
      copycat-tf steal target.onnx --queries photos --budget 30000 \\
          --test-data fashion-mnist:test --out runs/fmnist
      copycat-tf steal target.onnx --queries photos --eval-data ./my-photos --out runs/c10
      copycat-tf steal target.onnx --queries ./imagenet --strategy paper --out runs/paper
      copycat-tf steal target.onnx --queries ./imagenet --arch vgg16 --weights imagenet \\
          --out runs/vgg
      copycat-tf steal https://ml.example.com/v2/models/fer --header @headers.txt \\
          --queries photos --rate 20/s --out runs/fer
      copycat-tf steal vendor.onnx --queries ./imagenet --queries ./pd:0.1 --arch vgg16 \\
          --layout NCHW --mean 123.7,116.3,103.5 --std 58.4,57.1,57.4 --out runs/vendor
    """
    config = train_config(strategy, balance, arch=arch, weights=weights, fine_tune=fine_tune, epochs=epochs,
                          labels=labels, seed=seed, deterministic=deterministic, semi_supervised=semi_supervised)
    target = target_spec(target, options, price_per_1k)
    with labeling_engine(options) as engine, StageBars() as bars:
        result = steal(target, QuerySpec(tuple(queries), resize=resize, batch_size=batch_size), out_dir,
                       budget=budget, strategy=strategy, train_config=config, measure=Measurement(test_data, eval_data),
                       execution=bars.watching(Execution(overwrite=overwrite, engine=engine, devices=devices)))
    print_steal_result(result)
