import json

import click
from copycat_tf.cli.options import oracle_kwargs, oracle_options

from copycat_tf.oracle import OnnxOracle


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one machine-readable JSON object.")
@oracle_options
def inspect_command(model, as_json, **options):
    """Check an ONNX model and print its input/output contract.

    Runs onnx.checker, opens the model in onnxruntime as a black box, and reports the
    image input (name, shape, dtype, layout, batch), the class output (classes and
    whether it holds probabilities, logits or scores), the preprocessing that will be
    applied, opset, producer, parameter count and the file's sha256.

    \b
    Examples:
      copycat-tf inspect target.onnx
      copycat-tf inspect vendor.onnx --layout NCHW --mean 123.7,116.3,103.5 --std 58.4,57.1,57.4
      copycat-tf inspect target.onnx --json | jq .num_classes
    """

    info = OnnxOracle(model, **oracle_kwargs(options)).info()
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2, sort_keys=True))
        return
    opsets = ", ".join(f"{domain} {version}" for domain, version in sorted(info.opsets.items()))
    click.echo(f"model   {info.path}")
    click.echo(f"sha256  {info.sha256}")
    click.echo(f"format  ONNX IR {info.ir_version}, opset {opsets}, producer {info.producer}")
    click.echo(f"params  {info.parameters:,}")
    click.echo(info.contract.describe())
