"""Training one copycat on several devices of one machine (``--devices N|all``).

:func:`training_strategy` turns a device request into a ``tf.distribute.MirroredStrategy``
over that many GPUs (or logical CPU devices where there is no GPU): each batch is split
between the devices, which keep identical weights by summing their gradients every step.
The global batch stays the configured ``batch_size``, so the optimisation, the epochs rule
and the checkpoints are those of one device, and a run resumes on any number of devices.

Several *machines* are not supported: Keras 3 does not run under
``tf.distribute.MultiWorkerMirroredStrategy`` (keras-team/keras#20585; README, "Beyond one process").
Labeling, the part that grows with the budget, spreads over machines with Ray instead.

Example:

>>> training_strategy(None) is None  # one device: no strategy at all
True
"""

from __future__ import annotations

import logging

from copycat_tf.errors import CopycatError

log = logging.getLogger(__name__)


def parse_devices(value) -> int | str | None:
    """``None``, a whole number >= 1, or ``"all"``, from an option's text or a number.

    Example:

    >>> parse_devices("all"), parse_devices("2"), parse_devices(None)
    ('all', 2, None)
    """
    if value is None or value == "all":
        return value
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or str(number) != str(value).strip():
        raise CopycatError(f"devices must be a whole number >= 1 or 'all'; received {value!r}")
    return number


def training_strategy(devices):
    """A ``MirroredStrategy`` over the devices asked for, or ``None`` for one device.

    Args:
        devices: ``None`` or ``1`` (one device, the default path), a number of devices, or
            ``"all"``. GPUs are used when there are any, else logical CPU devices
            (``tf.config.set_logical_device_configuration``).

    Raises:
        CopycatError: more devices asked for than this machine has.
    """
    devices = parse_devices(devices)
    if devices is None or devices == 1:
        return None
    import tensorflow as tf

    kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    found = [device.name for device in tf.config.list_logical_devices(kind)]
    wanted = len(found) if devices == "all" else devices
    if wanted > len(found):
        raise CopycatError(
            f"--devices {devices} asks for more devices than this machine has ({len(found)} {kind}: "
            f"{', '.join(found)}); pass --devices all or a smaller number"
        )
    if wanted == 1:
        log.info("one %s device found; training on it without a distribution strategy", kind)
        return None
    # NCCL all-reduce is for GPUs; logical CPU devices sum their gradients on one device.
    reduce = tf.distribute.ReductionToOneDevice() if kind == "CPU" else None
    strategy = tf.distribute.MirroredStrategy(devices=found[:wanted], cross_device_ops=reduce)
    log.info("training on %d %s devices (MirroredStrategy): %s", wanted, kind, ", ".join(found[:wanted]))
    return strategy
