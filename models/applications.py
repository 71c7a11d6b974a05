"""``vgg16``, ``mobilenet_v2``, ``resnet50``: ``keras.applications`` backbones with a new head.

Each backbone is built with ``include_top=False`` on the model's own pixel front and ends in
global average pooling, dropout and a softmax layer sized for the task. From scratch
(``weights=None``) the front scales pixels to ``[0, 1]``; pretrained (``"imagenet"`` or a
weights file) it is the backbone's own preprocessing, and which layers train is set per
stage (see :mod:`copycat_tf.models.pretrained`).
"""

from __future__ import annotations

from copycat_tf.models._inputs import pixel_input
from copycat_tf.models.pretrained import backbone_front, make_backbone

# keras.applications refuses images under 32x32 for all three.
MIN_SIZE = 32


def _with_head(name: str, input_shape, num_classes: int, dropout: float, weights: str | None):
    import keras
    from keras import layers

    if weights is None:
        inputs, x = pixel_input(input_shape, MIN_SIZE)
    else:
        inputs = keras.Input(shape=input_shape, name="pixels")
        x = backbone_front(inputs, name, input_shape[2])
    x = make_backbone(name, tuple(x.shape[1:]), weights)(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    # float32 even under a mixed_float16 policy: a float16 softmax loses small probabilities
    # (and their log in the loss); this one layer costs nothing next to the backbone.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def build_vgg16(input_shape: tuple[int, int, int], num_classes: int, weights: str | None = None):
    """VGG16 (Simonyan & Zisserman, 2015), the Copycat CNN paper's copycat.

    Usage::

        model = build_vgg16((28, 28, 1), 10)
    """
    return _with_head("vgg16", input_shape, num_classes, 0.5, weights)


def build_mobilenet_v2(input_shape: tuple[int, int, int], num_classes: int, weights: str | None = None):
    """MobileNetV2 (Sandler et al., 2018).

    Usage::

        model = build_mobilenet_v2((32, 32, 3), 10)
    """
    return _with_head("mobilenet_v2", input_shape, num_classes, 0.2, weights)


def build_resnet50(input_shape: tuple[int, int, int], num_classes: int, weights: str | None = None):
    """ResNet50 (He et al., 2016).

    Usage::

        model = build_resnet50((32, 32, 3), 10)
    """
    return _with_head("resnet50", input_shape, num_classes, 0.0, weights)
