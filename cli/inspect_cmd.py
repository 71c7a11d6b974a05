"""`copycat-tf inspect`: check an ONNX model, or a model behind an inference API, and show its contract."""

import json

import click

from copycat_tf.cli.helptext import Command
from copycat_tf.cli.options import oracle_options, target_argument, target_spec

#: Image size a model with dynamic height and width is read at, to show its contract.
INSPECT_SIZE = (64, 64)


@click.command("inspect", cls=Command)
@target_argument
@click.option("--json", "as_json", is_flag=True, help="Print one machine-readable JSON object.")
@oracle_options
def inspect_command(target, as_json, **options):
    """Check a target model and print its input/output contract.

    An ONNX file: runs onnx.checker, opens it in onnxruntime as a black box, and reports the
    image input (name, shape, dtype, layout, batch), the class output (classes and
    whether it holds probabilities, logits or scores), the preprocessing that will be
    applied, opset, producer, parameter count and the file's sha256. A model whose image
    size is dynamic is read at 64x64 and said to need --input-size for labeling. A URL:
    the protocol, model, version and contract (from its metadata endpoint, else from the
    options and a probe of two images, charged like any query); header values are never shown.

    \b
    Examples:
      copycat-tf inspect target.onnx
      copycat-tf inspect vendor.onnx --layout NCHW --mean 123.7,116.3,103.5 --std 58.4,57.1,57.4
      copycat-tf inspect target.onnx --json | jq .num_classes
      copycat-tf inspect http://127.0.0.1:8080/v2/models/fer --header @headers.txt
    """
    spec = target_spec(target, options)
    info = spec.open(read_size=INSPECT_SIZE).info()
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2, sort_keys=True))
        return
    details = info.details
    if info.kind == "http":
        click.echo(f"url     {info.location}")
        click.echo(f"api     {details['protocol']}, model {details['model']}"
                   + (f" version {details['version']}" if details["version"] else "")
                   + ("" if details["server_metadata"] else " (no metadata endpoint: contract from options and a probe)"))
        click.echo(f"id      {info.identity}")
    else:
        opsets = ", ".join(f"{domain} {version}" for domain, version in sorted(details["opsets"].items()))
        click.echo(f"model   {info.location}")
        click.echo(f"sha256  {info.identity}")
        click.echo(f"format  ONNX IR {details['ir_version']}, opset {opsets}, producer {info.producer or 'unknown'}")
        click.echo(f"params  {info.parameters:,}")
    click.echo(info.contract.describe())
    if info.class_names:
        click.echo(f"classes {', '.join(info.class_names)}")
    if details.get("dynamic_size") and spec.overrides.input_size is None:
        height, width = INSPECT_SIZE
        click.echo(f"size    dynamic height and width (read here at {height}x{width}); `label`, `steal` "
                   "and `audit` need --input-size HEIGHT,WIDTH")
    if info.probe_queries:
        click.echo(f"probe   {info.probe_queries} images sent to learn the output (charged)")
