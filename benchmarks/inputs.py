"""What the performance benchmarks run on: a small conv-net ONNX target and real-looking JPEGs.

Both are generated (seeded), so a figure needs no download and two runs see the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from copycat_tf.queries import PhotoView, photo_pool


def make_conv_target(path: Path, size: int, channels: int = 3, num_classes: int = 10, seed: int = 0) -> None:
    """A small CNN (two 3x3 convs, pooling, dense, softmax) taking NHWC float [0, 1] images."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name, *shape):
        fan_in = int(np.prod(shape[1:]))
        return numpy_helper.from_array(rng.normal(0, (2 / fan_in) ** 0.5, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    initializers = [
        weight("w1", 16, channels, 3, 3), numpy_helper.from_array(np.zeros(16, np.float32), "b1"),
        weight("w2", 32, 16, 3, 3), numpy_helper.from_array(np.zeros(32, np.float32), "b2"),
        weight("w3", 32, num_classes), numpy_helper.from_array(np.zeros(num_classes, np.float32), "b3"),
    ]
    graph = helper.make_graph(
        nodes, "bench_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, channels])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", num_classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_jpegs(folder: Path, count: int, seed: int = 0) -> None:
    """Real-looking 500x375 JPEGs: random crops of the offline photo pool."""
    folder.mkdir(parents=True, exist_ok=True)
    pool = photo_pool()
    sizes = [image.size for _, image in pool]
    rng = np.random.default_rng(seed)
    for i in range(count):
        view = PhotoView.draw(rng, sizes, 500 / 375)
        image = view.render(pool[view.photo][1]).convert("RGB").resize((500, 375), Image.BILINEAR)
        image.save(folder / f"img_{i:05d}.jpg", quality=90)
