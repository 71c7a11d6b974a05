"""How many query images one call to a model may hold: sized by the target's input, not fixed.

A black box's activations cannot be seen, but they grow with its input: a conv net's first
layers hold several floats for every input value of every image in a batch (VGG16's first
block: 64 channels for 3, two layers of them), and onnxruntime keeps its largest batch's
buffers in its arena. A fixed 64 images per call therefore cost a 240 px VGG16 target
gigabytes, while a 32 px target runs fastest with batches far larger than 64. When no batch
size is given, :func:`query_batch_size` takes the largest power of two whose images, as the
float32 tensor the model receives, fit :data:`QUERY_BATCH_VALUES`, between 1 and
:data:`MAX_QUERY_BATCH`. Labeling, candidate scoring and evaluation use it; a batch size
the user gives is used as given. The bound is a fixed number, not a share of this
machine's memory, so one command sends the same batches everywhere (records never depend
on the batch anyway).

Example:

>>> query_batch_size((240, 240, 3))       # a vendor model's input: 8 images a call
8
>>> query_batch_size((32, 32, 3))         # a small colour target: 512
512
>>> query_batch_size((32, 32, 3), given=64)
64
>>> query_batch_size((28, 28, 1), metered=True)
64
"""

from __future__ import annotations

import math

#: Input values (height x width x channels x images) one call may hold when no batch size is
#: given: 2 Mi, 8 MiB as float32. Measured with ``benchmarks/perf/memory.py --vgg16``: a
#: VGG16-sized target at 240 px labels at batch 8 (2 x 172,800 values is over the bound,
#: so 12 images round down to 8) within 3 GB of peak for the whole ``steal``, where batch
#: 64 (11 Mi values) peaked at 8.8 GB; and ``benchmarks/perf/labeling.py`` at 32 px ran
#: onnxruntime fastest at 256 to 1,024 images a call (BENCHMARKS.md, Large targets).
QUERY_BATCH_VALUES = 2 * 2**20

#: Most images one call holds when no batch size is given: past it onnxruntime runs no
#: faster (BENCHMARKS.md), and the decode window ahead of a batch grows with it.
MAX_QUERY_BATCH = 1024

#: Most images one call to a metered (paid) target holds when no batch size is given: a kill
#: loses the answers to the batch in flight, already paid for (the answers journal keeps
#: every earlier one), so a paid API keeps the batch it always had.
METERED_QUERY_BATCH = 64


def query_batch_size(image_shape: tuple[int, ...], given: int | None = None, *, metered: bool = False) -> int:
    """``given``, or the images per call that fit :data:`QUERY_BATCH_VALUES` at ``image_shape``.

    Args:
        image_shape: the target's ``(height, width, channels)``.
        given: the batch size the user asked for; used as given when not ``None``.
        metered: the target charges per query; its batch stays at most
            :data:`METERED_QUERY_BATCH`.

    Returns:
        A power of two between 1 and :data:`MAX_QUERY_BATCH`, or ``given``.
    """
    if given is not None:
        return given
    fits = max(1, QUERY_BATCH_VALUES // math.prod(int(v) for v in image_shape))
    most = METERED_QUERY_BATCH if metered else MAX_QUERY_BATCH
    return min(most, 1 << (fits.bit_length() - 1))
