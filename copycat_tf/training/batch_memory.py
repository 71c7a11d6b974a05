"""How many images one training batch may hold: the default batch size, bounded by memory.

A copycat trained on a vendor model's 224 or 240 px inputs keeps every layer's output, and
its gradient, for each image of a batch; at an architecture's CPU default batch that can be
many gigabytes (a ResNet50 copycat at 224 px, batch 32: about 25 GB). When no batch size is
given, :func:`bounded_batch_size` lowers the architecture's default until one batch's
estimated training memory fits :data:`BATCH_MEMORY_BYTES`. The bound is a fixed number,
not a share of this machine's free memory, so the same command trains the same copycat on
any machine and a stopped run resumes anywhere.

Example:

>>> bounded_batch_size("small_cnn", (28, 28, 1), 128)
128
"""

from __future__ import annotations

import functools
import math

#: Estimated training memory one batch may take when no batch size is given (4 GiB: a
#: 16 GB laptop keeps room for TensorFlow, the fake dataset and everything else).
BATCH_MEMORY_BYTES = 4 * 2**30

#: Training memory per float of layer output: the float32 output kept for the backward
#: pass, its gradient, and what TensorFlow holds beside them. Measured with
#: ``benchmarks/memory.py`` above TensorFlow's own 0.7 GB: ``resnet50`` at 224 px, batch 8,
#: 6.3 GB for 37.4 M output floats an image (21 bytes a float); ``small_cnn`` at 240 px
#: without its downscaling, batch 128, 4.5 GB for 4.95 M (7 bytes). The larger one counts
#: (BENCHMARKS.md, Large inputs).
BYTES_PER_OUTPUT_FLOAT = 24


def bounded_batch_size(arch: str, input_shape: tuple[int, int, int], batch_size: int,
                       memory_bytes: int = BATCH_MEMORY_BYTES) -> int:
    """``batch_size``, halved until a batch's estimated training memory fits ``memory_bytes``.

    Args:
        arch: a :data:`copycat_tf.models.ARCHITECTURES` name.
        input_shape: the copycat's ``(height, width, channels)``.
        batch_size: the batch wanted (the architecture's default).
        memory_bytes: the bound.

    Returns:
        The batch size: ``batch_size`` or a power-of-two fraction of it, at least 1.
    """
    per_image = output_floats(arch, tuple(int(v) for v in input_shape)) * BYTES_PER_OUTPUT_FLOAT
    fits = max(1, memory_bytes // per_image)
    if fits >= batch_size:
        return batch_size
    return max(1, batch_size >> math.ceil(math.log2(batch_size / fits)))


@functools.lru_cache(maxsize=16)
def output_floats(arch: str, input_shape: tuple[int, int, int]) -> int:
    """Floats every layer of ``arch`` outputs for one image of ``input_shape``."""
    from copycat_tf.models import build

    return _layer_floats(build(arch, input_shape, 2))


def _layer_floats(model) -> int:
    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model (the keras.applications backbones)
            total += _layer_floats(layer)
            continue
        outputs = layer.output if isinstance(layer.output, list | tuple) else [layer.output]
        total += sum(math.prod(int(d) for d in output.shape[1:]) for output in outputs)
    return total
