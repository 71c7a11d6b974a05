"""Pretrained backbones: the paper's copycat starts from natural-image features.

Correia-Silva et al. (2018, 2021) fine-tune an ImageNet-pretrained VGG16 on the fake
dataset. This module holds what a pretrained ``keras.applications`` backbone needs beyond
a from-scratch one:

- :func:`backbone_front`: the backbone's own preprocessing, channel replication for
  grayscale targets and upsampling of small inputs, as layers inside the model, so the
  exported ONNX file still takes the target's raw pixels;
- :func:`load_backbone_weights`: ``"imagenet"`` through ``keras.applications`` (a download on
  a connected machine, Keras's cached file on an offline one) or a local weights file;
- :func:`set_trainable`: which part trains in each stage of the transfer schedule (the head
  alone, then the backbone's top block or all of it; BatchNorm stays frozen, in inference
  mode).

Usage::

    model = build("vgg16", (32, 32, 3), 10, weights="vgg16_notop.weights.h5")
    set_trainable(model, "head")   # stage 1: the new head on frozen features
    set_trainable(model, "top")    # stage 2: fine-tune block5 and the head
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copycat_tf.errors import CopycatError, first_line

#: Backbones see at least this many pixels a side: their filters were learnt on 224 px
#: photos, and at 32 px VGG16's last block sees a single position (the issue-23 screen: a
#: frozen VGG16 at 32 px copied a CIFAR-10 model to 0.25 agreement, at 64 px to 0.44).
PRETRAINED_MIN_SIZE = 64
#: The name of the nested backbone model inside every ``keras.applications`` copycat.
BACKBONE = "backbone"
#: What trains in a stage: the head alone, the backbone's top block and the head, or all.
TRAINABLE_PARTS = ("head", "top", "all")

# keras.applications.imagenet_utils: "caffe" is RGB -> BGR minus the ImageNet mean,
# "tf" is [-1, 1].
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Pretraining:
    """How one ``keras.applications`` backbone is fed and fine-tuned.

    Attributes:
        application: the ``keras.applications`` function.
        preprocessing: ``"caffe"`` or ``"tf"``, as ``keras.applications.<name>.preprocess_input``.
        top_layers: name prefixes of the layers that ``fine_tune="top"`` unfreezes.
    """

    application: str
    preprocessing: str
    top_layers: tuple[str, ...]


PRETRAINING = {
    "vgg16": Pretraining("VGG16", "caffe", ("block5_",)),
    "resnet50": Pretraining("ResNet50", "caffe", ("conv5_",)),
    "mobilenet_v2": Pretraining("MobileNetV2", "tf", ("block_16_", "Conv_1", "out_relu")),
}


def check_weights(arch: str, weights: str | None) -> str | None:
    """Return ``weights`` if ``arch`` can start from them: ``None``, ``"imagenet"`` or an
    existing file; anything else is a one-line error before any query is bought.

    >>> check_weights("small_cnn", None) is None
    True
    >>> check_weights("small_cnn", "imagenet")
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: --weights needs a keras.applications architecture (mobilenet_v2, resnet50, vgg16); small_cnn always starts from random weights
    """
    if weights is None:
        return None
    if arch not in PRETRAINING:
        raise CopycatError(
            f"--weights needs a keras.applications architecture ({', '.join(sorted(PRETRAINING))}); "
            f"{arch} always starts from random weights"
        )
    if weights != "imagenet" and not Path(weights).is_file():
        raise CopycatError(
            f"--weights {weights}: no such file; give 'imagenet' or a Keras weights file of the "
            f"{arch} backbone without its top"
        )
    return weights


def ensure_weights(arch: str, weights: str | None) -> None:
    """Make sure ``weights`` can be had and fit ``arch``'s backbone, before any query is
    bought: ``"imagenet"`` is downloaded into Keras's cache now if it is not there yet.

    Raises:
        CopycatError: as :func:`imagenet_backbone` and :func:`load_backbone_weights`.
    """
    if check_weights(arch, weights) is not None:
        make_backbone(arch, (PRETRAINED_MIN_SIZE, PRETRAINED_MIN_SIZE, 3), weights)


def make_backbone(arch: str, input_shape: tuple[int, int, int], weights: str | None):
    """``arch``'s ``keras.applications`` backbone without its top, average-pooled, named
    :data:`BACKBONE`: random (``weights=None``), ImageNet's (:func:`imagenet_backbone`) or a
    weights file's (:func:`load_backbone_weights`)."""
    import keras

    factory = getattr(keras.applications, PRETRAINING[arch].application)
    if weights == "imagenet":
        return imagenet_backbone(factory, arch, input_shape)
    backbone = factory(include_top=False, weights=None, input_shape=input_shape, pooling="avg", name=BACKBONE)
    if weights is not None:
        load_backbone_weights(backbone, arch, weights)
    return backbone


def backbone_front(x, arch: str, channels: int):
    """Raw ``[0, 255]`` pixels to what the pretrained backbone was trained on.

    One frozen 1x1 convolution replicates a grayscale channel to RGB and applies the
    backbone's preprocessing (``caffe``: RGB to BGR minus the ImageNet mean; ``tf``: to
    ``[-1, 1]``), then images under :data:`PRETRAINED_MIN_SIZE` are resized up. A
    convolution rather than custom code keeps the model loadable in ``safe_mode`` and the
    ONNX export plain.
    """
    import keras

    kernel, bias = _preprocessing_affine(PRETRAINING[arch].preprocessing, channels)
    layer = keras.layers.Conv2D(3, 1, name="backbone_preprocessing", trainable=False)
    x = layer(x)
    layer.set_weights([kernel, bias])
    height, width = x.shape[1], x.shape[2]
    if height < PRETRAINED_MIN_SIZE or width < PRETRAINED_MIN_SIZE:
        x = keras.layers.Resizing(max(height, PRETRAINED_MIN_SIZE), max(width, PRETRAINED_MIN_SIZE),
                                  interpolation="bilinear", name="upsample")(x)
    return x


def _preprocessing_affine(mode: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1x1 kernel ``(1, 1, channels, 3)`` and bias ``(3,)`` of :func:`backbone_front`."""
    kernel = np.zeros((1, 1, channels, 3), np.float32)
    for out in range(3):
        source = 0 if channels == 1 else (2 - out if mode == "caffe" else out)
        kernel[0, 0, source, out] = 1.0 if mode == "caffe" else 1 / 127.5
    bias = -np.asarray(_CAFFE_MEAN_BGR, np.float32) if mode == "caffe" else -np.ones(3, np.float32)
    return kernel, bias


def load_backbone_weights(backbone, arch: str, weights: str) -> None:
    """Load a local weights file into ``backbone`` (``weights="imagenet"`` is given to
    ``keras.applications`` when the backbone is made, see :func:`imagenet_backbone`).

    Raises:
        CopycatError: the file is not a weights file of this backbone without its top.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            backbone.load_weights(weights)
        # Keras only warns when it skips part of the file and leaves those layers random.
        skipped = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        if skipped:
            raise ValueError(skipped[0])
    except Exception as exc:  # noqa: BLE001 - h5py, Keras and shape errors all mean "wrong file"
        raise CopycatError(
            f"--weights {weights}: cannot load it into {arch} without its top ({first_line(exc)}); "
            f"expected a Keras weights file saved from keras.applications with include_top=False"
        ) from exc


def imagenet_backbone(factory, arch: str, input_shape: tuple[int, int, int]):
    """``factory(weights="imagenet")``: Keras downloads the weights once into its cache
    (``$KERAS_HOME/models``, default ``~/.keras/models``); an offline machine without that
    file gets one error line naming ``--weights PATH``."""
    try:
        return factory(include_top=False, weights="imagenet", input_shape=input_shape,
                       pooling="avg", name=BACKBONE)
    except Exception as exc:  # noqa: BLE001 - urllib, HTTP and hash errors all mean "no weights"
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
        raise CopycatError(
            f"--weights imagenet: Keras could not get the ImageNet weights of {arch} "
            f"({first_line(exc)}); offline, put Keras's {arch} 'notop' weights file in {cache}, "
            "or pass --weights PATH (a Keras weights file of the backbone without its top)"
        ) from exc


def set_trainable(model, part: str) -> None:
    """Make ``part`` of a pretrained copycat trainable (see :data:`TRAINABLE_PARTS`).

    The head always trains; the preprocessing layer never does, nor do the backbone's
    BatchNorm layers: a frozen BatchNorm runs in inference mode in Keras 3, so a few
    thousand fake records never overwrite statistics learnt on a million photos (the Keras
    transfer-learning guide's advice; calling the backbone with ``training=False`` alone
    does not hold once the model is fitted). Recompile afterwards.
    """
    import keras

    if part not in TRAINABLE_PARTS:
        raise CopycatError(f"fine_tune must be one of {', '.join(TRAINABLE_PARTS[1:])}; received {part!r}")
    backbone = model.get_layer(BACKBONE)
    backbone.trainable = part != "head"
    prefixes = PRETRAINING[model.name].top_layers
    # Every layer set each time: an earlier stage's choice must not linger.
    for layer in backbone.layers:
        layer.trainable = (not isinstance(layer, keras.layers.BatchNormalization)
                           and (part == "all" or (part == "top" and layer.name.startswith(prefixes))))
