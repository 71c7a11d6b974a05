"""Options shared by every command that opens a target model."""

from __future__ import annotations

import click

from copycat_tf.contract import CHANNEL_ORDERS, LAYOUTS, OUTPUT_KINDS, Preprocessing


def _floats(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected one or three comma-separated numbers; received {value!r}")

def _size(ctx, param, value):
    if value is None:
        return None
    try:
        height, width = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected HEIGHT,WIDTH; received {value!r}")
    return height, width

def oracle_options(command):
    """Add the target-contract overrides (``--mean``, ``--std``, ``--layout``, ...)."""
    options = [
        click.option("--mean", callback=_floats, metavar="M[,M,M]",
                     help="Model input = (pixel - mean) / std, pixel units. Default: from the "
                          "model's metadata, else 0."),
        click.option("--std", callback=_floats, metavar="S[,S,S]",
                     help="See --mean. Default: from metadata, else 255 for float inputs "
                          "([0, 1] scaling) and 1 for uint8 inputs (raw pixels)."),
        click.option("--channel-order", type=click.Choice(CHANNEL_ORDERS),
                     help="Channel order the model expects (default rgb)."),
        click.option("--layout", type=click.Choice(LAYOUTS),
                     help="Input layout; default detected from the channel axis."),
        click.option("--output", "output_name", metavar="NAME",
                     help="Output holding the class rows, when the model has several."),
        click.option("--output-kind", type=click.Choice(OUTPUT_KINDS),
                     help="What the output holds; default probed with a few noise images."),
        click.option("--input-size", callback=_size, metavar="H,W",
                     help="Image size for models whose input size is dynamic."),
        click.option("--provider", "providers", multiple=True, metavar="NAME",
                     help="onnxruntime execution provider, repeatable in priority order "
                          "(default CPUExecutionProvider)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command

def oracle_kwargs(options: dict) -> dict:
    """Pop the --mean/--std/... values out of a command's options as OnnxOracle arguments."""

    mean, std, order = options.pop("mean"), options.pop("std"), options.pop("channel_order")
    preprocessing = None
    if mean is not None or std is not None or order is not None:
        preprocessing = Preprocessing(
            mean=mean if mean is not None else (0.0,),
            std=std if std is not None else (1.0,),
            channel_order=order or "rgb",
        )
    return {
        "preprocessing": preprocessing,
        "layout": options.pop("layout"),
        "output": options.pop("output_name"),
        "output_kind": options.pop("output_kind"),
        "input_size": options.pop("input_size"),
        "providers": list(options.pop("providers")) or None,
    }
