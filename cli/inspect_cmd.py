"""`copycat-tf inspect`: check an ONNX model and show its input/output contract."""

import json

import click

from copycat_tf.cli.options import oracle_kwargs, oracle_options
from copycat_tf.oracle import OnnxOracle

#: Image size a model with dynamic height and width is read at, to show its contract.
INSPECT_SIZE = (64, 64)


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one machine-readable JSON object.")
@oracle_options
def inspect_command(model, as_json, **options):
    """Check an ONNX model and print its input/output contract.

    Runs onnx.checker, opens the model in onnxruntime as a black box, and reports the
    image input (name, shape, dtype, layout, batch), the class output (classes and
    whether it holds probabilities, logits or scores), the preprocessing that will be
    applied, opset, producer, parameter count and the file's sha256. A model whose image
    size is dynamic is read at 64x64 and said to need --input-size for labeling.

    \b
    Examples:
      copycat-tf inspect target.onnx
      copycat-tf inspect vendor.onnx --layout NCHW --mean 123.7,116.3,103.5 --std 58.4,57.1,57.4
      copycat-tf inspect target.onnx --json | jq .num_classes
    """
    kwargs = oracle_kwargs(options)
    info = OnnxOracle(model, probe_size=INSPECT_SIZE, **kwargs).info()
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2, sort_keys=True))
        return
    opsets = ", ".join(f"{domain} {version}" for domain, version in sorted(info.opsets.items()))
    click.echo(f"model   {info.path}")
    click.echo(f"sha256  {info.sha256}")
    click.echo(f"format  ONNX IR {info.ir_version}, opset {opsets}, producer {info.producer}")
    click.echo(f"params  {info.parameters:,}")
    click.echo(info.contract.describe())
    if info.dynamic_size and kwargs["input_size"] is None:
        height, width = INSPECT_SIZE
        click.echo(f"size    dynamic height and width (read here at {height}x{width}); `label`, `steal` "
                   "and `audit` need --input-size HEIGHT,WIDTH")
