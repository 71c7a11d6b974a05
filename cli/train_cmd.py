"""`copycat-tf train`: train a copycat on a fake dataset and export it as ONNX."""

import sys

import click

from copycat_tf.cli.helptext import Command
from copycat_tf.cli.options import (
    arch_option,
    deterministic_option,
    epochs_option,
    fine_tune_option,
    labels_option,
    learning_rate_option,
    overwrite_option,
    seed_option,
    semi_supervised_option,
    weights_option,
)
from copycat_tf.fakeset import FakeSet
from copycat_tf.queries import open_query_source
from copycat_tf.models import OPTIMIZERS
from copycat_tf.execution import Execution
from copycat_tf.training import BALANCE_MODES, TrainConfig, train_copycat, unlabelled_seed


@click.command("train", cls=Command)
@click.argument("fakeset_dir", metavar="FAKESET_DIR", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the copycat: copycat.onnx, copycat.keras, training.json, "
                   "checkpoints/ and TensorBoard logs/. Rerun into it to resume.")
@arch_option()
@weights_option
@fine_tune_option
@click.option("--head-epochs", type=click.IntRange(min=0), metavar="N",
              help="With --weights: epochs on the new head with the backbone frozen, before fine-tuning "
                   "(default 2).")
@epochs_option
@click.option("--batch-size", type=int, metavar="N",
              help="Records per batch (default: the architecture's, halved for large inputs until a "
                   "batch's estimated training memory fits 4 GiB).")
@learning_rate_option
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Optimizer (default: the architecture's).")
@labels_option
@click.option("--balance", type=click.Choice(BALANCE_MODES), default="none", show_default=True,
              help="Even out classes: replicate records of rare classes (the 2021 paper) or "
                   "weight the loss per class.")
@click.option("--augment", is_flag=True, help="Random small shifts and zooms of training images.")
@click.option("--validation-fraction", type=float, default=0.1, show_default=True, metavar="F",
              help="Share of fake records held out to report agreement with the oracle.")
@click.option("--finetune", "finetune_dir", type=click.Path(file_okay=False), metavar="FAKESET_DIR2",
              help="Then fine-tune on this second fake dataset from the same oracle (the paper's "
                   "NPD then PD-SL setting).")
@click.option("--finetune-epochs", type=int, metavar="N", help="Fine-tuning epochs (default: --epochs).")
@click.option("--finetune-learning-rate", type=float, metavar="LR",
              help="Fine-tuning learning rate (default: a tenth of --learning-rate).")
@semi_supervised_option
@click.option("--unlabelled", multiple=True, metavar="SRC[:WEIGHT]",
              help="Images for --semi-supervised, repeatable, as for `label --queries`: a folder, a .txt list, "
                   "a .npy/.npz array, photos or procedural. Never sent to the target, so they cost no "
                   "queries; images of the target's own kind help most. As many are used as the fake "
                   "dataset holds records.")
@seed_option
@deterministic_option
@overwrite_option("training")
def train_command(fakeset_dir, out_dir, finetune_dir, unlabelled, overwrite, **options):
    """Train a copycat on the fake dataset in FAKESET_DIR and export it as ONNX.

    The copycat takes exactly the target's input (name, layout, dtype, size and
    preprocessing, read from the fake dataset), so OUT/copycat.onnx is a drop-in
    replacement for it; the export is checked against Keras. Fake datasets that fit in
    memory are trained from memory, larger ones stream from disk. After an interruption,
    rerun the same command: it resumes after the last finished epoch. If training
    diverges to NaN the last good epoch is kept; rerun with a lower --learning-rate.

    \b
    Examples:
      copycat-tf train runs/fake --out runs/copycat
      copycat-tf train runs/fake --arch vgg16 --epochs 5 --out runs/vgg
      copycat-tf train runs/fake --arch vgg16 --weights vgg16_notop.weights.h5 --out runs/vgg-pre
      copycat-tf train runs/soft --labels soft --balance replicate --out runs/copycat
      copycat-tf train runs/npd --finetune runs/pd --out runs/npd-pd
      copycat-tf train runs/fake --semi-supervised --unlabelled ./my-photos --out runs/semi
      tensorboard --logdir runs/copycat/logs
    """
    config = TrainConfig(**options)
    fakeset = FakeSet.open(fakeset_dir)
    finetune = FakeSet.open(finetune_dir) if finetune_dir else None
    # Seeded apart from the queries, as `steal` draws them (a photo pool's other crops).
    source = open_query_source(list(unlabelled), fakeset.image_shape, seed=unlabelled_seed(config.seed)) \
        if unlabelled else None
    result = train_copycat(fakeset, out_dir, config, finetune=finetune,
                           execution=Execution(overwrite=overwrite, fit_verbose=1 if sys.stdout.isatty() else 0),
                           unlabelled=source)
    if result.already_trained:
        click.echo(f"{result.out_dir} already holds this trained copycat: {result.onnx_path} "
                   "(pass --overwrite to train it again)")
        return
    epochs = {stage: len(history.get("loss", [])) for stage, history in result.history.items()}
    detail = (f"{epochs['head']} head epochs + " if "head" in epochs else "") + f"{epochs['main']} epochs" \
        + (f" + {epochs['finetune']} fine-tuning" if "finetune" in epochs else "") \
        + (f" + {epochs['semi']} semi-supervised" if "semi" in epochs else "")
    click.echo(f"copycat   {result.onnx_path} ({config.arch}, {detail})")
    if result.validation_agreement is not None:
        click.echo(f"agreement {result.validation_agreement:.2%} with the oracle on held-out fake records")
    click.echo(f"parity    max |keras - onnx| {result.max_abs_diff:.1e} on fake-dataset images")
