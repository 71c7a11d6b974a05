import sys

import click

# Neither module loads TensorFlow on import, so `--help` stays fast.
from copycat_tf.models import ARCHITECTURES, OPTIMIZERS

from copycat_tf.fakeset import FakeSet
from copycat_tf.training import TrainConfig, train_copycat
from copycat_tf.training.data import BALANCE_MODES, LABEL_MODES

ARCH_HELP = (f"Architecture: {', '.join(ARCHITECTURES)}. small_cnn is fast on a CPU; vgg16 is the "
             "paper's copycat (slow on a CPU).")


def arch_option(text: str):
    """``--arch``, checked by the library so a wrong name is one clear error line."""
    return click.option("--arch", default="small_cnn", show_default=True, metavar="NAME", help=text)


def _image_shape(ctx, param, value):
    if value is None:
        return None
    try:
        height, width, channels = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected HEIGHT,WIDTH,CHANNELS such as 32,32,3; received {value!r}") from None
    return height, width, channels


shape_option = click.option(
    "--image-shape", callback=_image_shape, metavar="H,W,C",
    help="Size and channels (1 or 3) to fit a folder dataset's images to, e.g. 64,64,3.",
)


@click.command("train")
@click.argument("fakeset_dir", metavar="FAKESET_DIR", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the copycat: copycat.onnx, copycat.keras, training.json, "
                   "checkpoints/ and TensorBoard logs/. Rerun into it to resume.")
@arch_option(ARCH_HELP)
@click.option("--epochs", type=int, metavar="N",
              help="Epochs (default: the architecture's, raised to at least 500 "
                   "training steps on small fake datasets).")
@click.option("--batch-size", type=int, metavar="N", help="Records per batch (default: the architecture's).")
@click.option("--learning-rate", type=float, metavar="LR",
              help="Starting learning rate, decayed along a half cosine over the epochs "
                   "(default: the architecture's).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Optimizer (default: the architecture's).")
@click.option("--labels", type=click.Choice(LABEL_MODES), default="hard", show_default=True,
              help="Learn the oracle's classes (the paper) or its probabilities (needs a fake "
                   "dataset labelled with --labels soft).")
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
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds weights, shuffling, the validation slice and augmentation.")
@click.option("--overwrite", is_flag=True,
              help="Delete an earlier run's files in --out (only those) and train again.")
def train_command(fakeset_dir, out_dir, finetune_dir, overwrite, **options):
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
      copycat-tf train runs/soft --labels soft --balance replicate --out runs/copycat
      copycat-tf train runs/npd --finetune runs/pd --out runs/npd-pd
      tensorboard --logdir runs/copycat/logs
    """

    config = TrainConfig(**options)
    fakeset = FakeSet.open(fakeset_dir)
    finetune = FakeSet.open(finetune_dir) if finetune_dir else None
    result = train_copycat(fakeset, out_dir, config, finetune=finetune, overwrite=overwrite,
                           fit_verbose=1 if sys.stdout.isatty() else 0)
    if result.already_trained:
        click.echo(f"{result.out_dir} already holds this trained copycat: {result.onnx_path} "
                   "(pass --overwrite to train it again)")
        return
    epochs = {stage: len(history.get("loss", [])) for stage, history in result.history.items()}
    detail = f"{epochs['main']} epochs" + (f" + {epochs['finetune']} fine-tuning" if "finetune" in epochs else "")
    click.echo(f"copycat   {result.onnx_path} ({config.arch}, {detail})")
    if result.validation_agreement is not None:
        click.echo(f"agreement {result.validation_agreement:.2%} with the oracle on held-out fake records")
    click.echo(f"parity    max |keras - onnx| {result.max_abs_diff:.1e} on fake-dataset images")
