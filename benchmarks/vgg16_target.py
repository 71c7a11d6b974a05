"""A VGG16-sized ONNX target for the large-input benchmarks: random weights, built here, no download.

The layout of a vendor's fine-tuned VGG16 (the 13 convolutions of
``keras.applications.VGG16`` at the vendor's input size, global average pooling and a
softmax head): 14.7 M parameters, a 59 MB file, about what a 65 MB vendor model holds. The
full ImageNet head (two 4,096-wide dense layers) would make a 540 MB file that no vendor
fine-tune ships and that measures loading a file rather than the activations at stake.
"""

from __future__ import annotations

from pathlib import Path


def make_vgg16_target(path: Path, size: int = 240, num_classes: int = 4, seed: int = 0) -> None:
    """Write ``path``: VGG16's convolutions at ``size`` x ``size`` x 3, NHWC float [0, 255] input."""
    import keras
    import tensorflow as tf
    import tf2onnx

    keras.utils.set_random_seed(seed)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3), pooling="avg")
    outputs = keras.layers.Dense(num_classes, activation="softmax")(base.output)
    model = keras.Model(base.input, outputs)

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32, name="image")])
    def serve(image):
        return {"probs": model(image, training=False)}

    tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=17,
                                  output_path=str(path))
