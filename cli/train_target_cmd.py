import sys

import click

from copycat_tf.cli.helptext import Command
from copycat_tf.cli.options import arch_option, epochs_option, learning_rate_option, seed_option, shape_option
from copycat_tf.training import TrainConfig, train_target


@click.command("train-target", cls=Command)
@click.option("--dataset", required=True, metavar="SPEC",
              help="Labelled data: fashion-mnist, digits or mnist (their own train/test "
                   "splits), a .npz file with x/y arrays, or a folder of class subfolders "
                   "(20% held out for testing, seeded).")
@arch_option()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), metavar="FILE.onnx",
              help="The target ONNX file to write; its card goes next to it as FILE.json.")
@epochs_option
@click.option("--batch-size", type=int, metavar="N", help="Images per batch (default: the architecture's).")
@learning_rate_option
@shape_option
@seed_option
def train_target_command(dataset, arch, out_path, epochs, batch_size, learning_rate, image_shape, seed):
    """Train a classifier to act as the black-box target, and export it as ONNX.

    Trains --arch on the training images, exports it (raw float32 NHWC pixels in,
    probabilities out), measures its test accuracy through the ONNX file with
    onnxruntime, and writes a JSON card beside it (dataset, accuracy, classes, epochs,
    sha256). Fashion-MNIST is read offline from Debian's dataset-fashion-mnist package
    or the Keras cache.

    \b
    Examples:
      copycat-tf train-target --dataset fashion-mnist --arch small_cnn --out target.onnx
      copycat-tf train-target --dataset digits --out digits.onnx --epochs 20
      copycat-tf train-target --dataset ./flowers --image-shape 64,64,3 --arch mobilenet_v2 \\
          --out flowers.onnx
      copycat-tf train-target --dataset data.npz --arch alexnet --out target.onnx
    """
    config = TrainConfig(arch=arch, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed)
    result = train_target(dataset, out_path, config, image_shape=image_shape,
                          fit_verbose=1 if sys.stdout.isatty() else 0)
    card = result.card
    click.echo(f"target    {result.path} ({card['arch']} on {card['dataset']}, {card['epochs']} epochs, "
               f"{card['training_seconds']:.0f} s)")
    click.echo(f"card      {result.card_path}")
    click.echo(f"test accuracy {result.test_accuracy:.2%} on {card['test_images']:,} test images")
