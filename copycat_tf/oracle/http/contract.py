"""The contract of a remote model, from its metadata, the user's options, or both.

Metadata (v2 ``GET /v2/models/NAME``, TF Serving ``.../metadata``) names the input and
outputs, their dtypes and shapes; it never says how pixels are preprocessed, so that comes
from the options (default: ``[0, 1]`` scaling for float inputs, raw pixels for integer
ones; this project's own exported targets take raw pixels, ``mean=0, std=1``). Without
metadata the options give it all: input size, channels, layout, dtype.

Example:

>>> image_input([{"name": "x", "dtype": "float32", "shape": [None, 3, 32, 32]}], where="url",
...             no_metadata="", input_name=None, input_size=None, channels=None, layout=None,
...             dtype=None)
ImageInput(name='x', shape=(None, 3, 32, 32), dtype='float32', layout='NCHW')
>>> choose_output([{"name": "label", "dtype": "int64", "shape": [None]},
...                {"name": "probs", "dtype": "float32", "shape": [None, 7]}], None,
...               where="url", protocol="v2", labels_first=False)
('probs', 'float32', 7)
"""

from __future__ import annotations

import logging

from copycat_tf.contract import LAYOUTS, ImageInput
from copycat_tf.errors import CopycatError, check_whole
from copycat_tf.oracle.base import MAX_FIXED_BATCH, MAX_INPUT_PIXELS
from copycat_tf.oracle.http.wire import SENDABLE, is_float_type

log = logging.getLogger(__name__)

#: More classes than this is not a classifier's answer.
MAX_CLASSES = 1_000_000


def image_input(inputs: list[dict], *, where: str, no_metadata: str, input_name: str | None,
                input_size: tuple[int, int] | None, channels: int | None, layout: str | None,
                dtype: str | None) -> ImageInput:
    """The image input: from the metadata's ``inputs`` (see
    :func:`~copycat_tf.oracle.http.wire.metadata_tensors`) checked against the options, or
    from the options alone when there is no metadata (``no_metadata`` says why, ``where``
    names the endpoint in messages)."""
    if layout is not None and layout not in LAYOUTS:
        raise CopycatError(f"layout must be one of {LAYOUTS}; received {layout!r}")
    if channels is not None and channels not in (1, 3):
        raise CopycatError(f"channels must be 1 or 3; received {channels!r}")
    if inputs:
        if len(inputs) != 1 and input_name is None:
            names = ", ".join(i["name"] for i in inputs)
            raise CopycatError(f"{where} takes {len(inputs)} inputs ({names}); "
                               "copycat-tf sends one image tensor")
        chosen = [i for i in inputs if input_name in (None, i["name"])]
        if not chosen:
            raise CopycatError(f"{where} has no input {input_name!r}; its inputs are "
                               + ", ".join(i["name"] for i in inputs))
        meta = chosen[0]
        name, shape = meta["name"], meta["shape"]
        declared = meta["dtype"]
        if dtype is not None and declared is not None and dtype != declared:
            raise CopycatError(f"input {name!r} takes {declared}; dtype={dtype!r} contradicts it")
        dtype = declared or dtype
        if shape is None:
            shape = [None, None, None, None]
        if len(shape) != 4:
            raise CopycatError(
                f"input {name!r} has shape {shape}; copycat-tf sends batches of images "
                "(N, H, W, C) or (N, C, H, W): serve the model with a batch axis (Triton: max_batch_size > 0)"
            )
    else:
        name = input_name or "input"
        dtype = dtype or "float32"
        c = channels or 3
        if input_size is None:
            raise CopycatError(
                f"{where} publishes no model metadata ({no_metadata}: a wrong "
                "model name, or a server or gateway without a metadata endpoint), so the input "
                "shape is unknown; check the URL, or pass input_size=(HEIGHT, WIDTH) "
                "(--input-size), and channels, layout and dtype if not 3, NHWC and float32"
            )
        shape = [None, None, None, c] if (layout or "NHWC") == "NHWC" else [None, c, None, None]
        layout = layout or "NHWC"
    if dtype not in SENDABLE:
        raise CopycatError(f"input {name!r} takes {dtype} values; copycat-tf sends one of {SENDABLE}")
    shape = list(shape)
    if layout is None:
        layout = detect_layout(shape, channels)
    channel_axis = 3 if layout == "NHWC" else 1
    if shape[channel_axis] is None:
        shape[channel_axis] = channels or 3
    elif shape[channel_axis] not in (1, 3):
        raise CopycatError(f"input {name!r} of shape {shape} in {layout} has {shape[channel_axis]} "
                           "channels; images have 1 or 3 (set layout if it is the other one)")
    if channels is not None and shape[channel_axis] != channels:
        raise CopycatError(f"input {name!r} has {shape[channel_axis]} channels; channels={channels} contradicts it")
    axes = (1, 2) if layout == "NHWC" else (2, 3)
    if input_size is not None:
        for axis, size in zip(axes, input_size):
            if shape[axis] not in (None, size):
                raise CopycatError(f"input {name!r} is fixed at {shape}; cannot use input size {tuple(input_size)}")
            shape[axis] = int(size)
    if any(shape[axis] is None for axis in axes):
        raise CopycatError(f"input {name!r} of shape {shape} has a dynamic image size; pass "
                           "input_size=(HEIGHT, WIDTH) (--input-size)")
    height, width = (shape[axis] for axis in axes)
    if height * width > MAX_INPUT_PIXELS:
        raise CopycatError(f"input {name!r} declares {height}x{width} images, over the "
                           f"{MAX_INPUT_PIXELS} pixel limit")
    if shape[0] is not None and not 1 <= shape[0] <= MAX_FIXED_BATCH:
        raise CopycatError(f"input {name!r} declares a batch of {shape[0]} images; at most "
                           f"{MAX_FIXED_BATCH} are sent at once")
    return ImageInput(name, tuple(shape), dtype, layout)


def choose_output(outputs: list[dict], wanted: str | None, *, where: str, protocol: str,
                  labels_first: bool) -> tuple[str, str | None, int | None]:
    """``(name, dtype or None, classes or None)`` of the output that holds the classes:
    ``wanted``, else the first rank-2 float output (or, with ``labels_first``, the first
    integer or string one); without metadata, ``wanted`` or the protocol's usual name."""
    if not outputs:
        return wanted or ("output" if protocol == "v2" else "predictions"), None, None
    if wanted is not None:
        chosen = [o for o in outputs if o["name"] == wanted]
        if not chosen:
            raise CopycatError(f"{where} has no output {wanted!r}; its outputs are "
                               + ", ".join(o["name"] for o in outputs))
    else:
        rows = [o for o in outputs if is_float_type(o["dtype"]) and (o["shape"] is None or len(o["shape"]) == 2)]
        labels = [o for o in outputs if not is_float_type(o["dtype"])
                  and o["shape"] is not None and len(o["shape"]) in (1, 2)]
        chosen = labels + rows if labels_first else rows + labels
        if not chosen:
            described = ", ".join(f"{o['name']} {o['dtype']} {o['shape']}" for o in outputs)
            raise CopycatError(f"{where} has no output of class rows (N, classes) or "
                               f"labels (N,); its outputs are: {described}")
    meta = chosen[0]
    shape = meta["shape"]
    classes = None
    if is_float_type(meta["dtype"]) and shape is not None and len(shape) == 2 and shape[1] is not None:
        classes = shape[1]
        if not 2 <= classes <= MAX_CLASSES:
            raise CopycatError(f"output {meta['name']!r} declares {classes} classes; expected 2 to {MAX_CLASSES}")
    return meta["name"], meta["dtype"], classes


def detect_layout(shape: list[int | None], channels: int | None) -> str:
    wanted = (channels,) if channels else (1, 3)
    nhwc, nchw = shape[3] in wanted, shape[1] in wanted
    if nchw and not nhwc:
        return "NCHW"
    if nhwc and nchw:
        log.warning("input shape %s is ambiguous; reading it as NHWC (override with layout)", shape)
    return "NHWC"


def check_class_names(class_names, num_classes) -> tuple[str, ...] | None:
    check_whole("num_classes", num_classes, minimum=2, optional=True)
    if class_names is None:
        return None
    if isinstance(class_names, str):
        class_names = [name.strip() for name in class_names.split(",")]
    names = tuple(str(n) for n in class_names)
    if len(set(names)) != len(names):
        raise CopycatError("class names must be distinct")
    if not 2 <= len(names) <= MAX_CLASSES:
        raise CopycatError(f"give 2 to {MAX_CLASSES} class names; received {len(names)}")
    if num_classes is not None and num_classes != len(names):
        raise CopycatError(f"num_classes={num_classes} but {len(names)} class names were given")
    return names
