"""Keras architectures for targets and copycats, all behind one :func:`build` call.

Every model takes NHWC float32 pixel values in ``[0, 255]`` (RGB or grayscale, as many
channels as ``input_shape`` says) and returns softmax probabilities. Rescaling, and
upsampling of images smaller than an architecture's minimum, happen inside the model, so an
exported ONNX file takes raw pixels and nothing outside the model needs to know.

Weights start random (``weights=None``: nothing is downloaded). The ``keras.applications``
copycats can start from pretrained backbone weights instead (``weights="imagenet"`` or a
weights file; :mod:`copycat_tf.models.pretrained`), the paper's copycat, trained with
their own schedule (:func:`default_training` with ``pretrained=True``).

This module imports TensorFlow only inside :func:`build`, so listing the architectures and
their training defaults stays cheap (the CLI's ``--help`` uses them).

Example:

>>> from copycat_tf.models import ARCHITECTURES, build, default_training
>>> sorted(ARCHITECTURES)
['alexnet', 'mobilenet_v2', 'resnet50', 'small_cnn', 'vgg16']
>>> default_training("vgg16")["learning_rate"]
0.0001
>>> default_training("vgg16", pretrained=True)["epochs"]
3
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from copycat_tf.errors import CopycatError
from copycat_tf.models.pretrained import PRETRAINING, check_weights


@dataclass(frozen=True)
class _Architecture:
    description: str
    builder: str  # "module:function" inside this package, imported on use
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str = "adam"


@dataclass(frozen=True)
class _PretrainedTraining:
    """A pretrained copycat's schedule: ``head_epochs`` on the new head with the backbone
    frozen, at ``head_learning_rate``; then ``epochs`` fine-tuning at ``learning_rate``.
    Pretrained features need far fewer epochs than a network learning from scratch."""

    head_epochs: int = 2
    head_learning_rate: float = 1e-3
    epochs: int = 3
    learning_rate: float = 1e-4


PRETRAINED_TRAINING = _PretrainedTraining()


_REGISTRY = {
    "small_cnn": _Architecture(
        "two conv blocks with BatchNorm and max-pooling, then a dense layer with dropout; "
        "fast on a CPU (a Fashion-MNIST target in about three minutes)",
        "small_cnn:build_small_cnn", epochs=4, batch_size=128, learning_rate=2e-3,
    ),
    "alexnet": _Architecture(
        "AlexNet-style: five conv layers and two dense layers (the 2021 cross-architecture "
        "study); BatchNorm in place of local response normalisation",
        "alexnet:build_alexnet", epochs=15, batch_size=64, learning_rate=3e-4,
    ),
    "vgg16": _Architecture(
        "keras.applications.VGG16 from scratch with a new softmax head (the paper's copycat); "
        "slow on a CPU",
        "applications:build_vgg16", epochs=10, batch_size=32, learning_rate=1e-4,
    ),
    "mobilenet_v2": _Architecture(
        "keras.applications.MobileNetV2 from scratch with a new softmax head",
        "applications:build_mobilenet_v2", epochs=10, batch_size=64, learning_rate=1e-3,
    ),
    "resnet50": _Architecture(
        "keras.applications.ResNet50 from scratch with a new softmax head",
        "applications:build_resnet50", epochs=10, batch_size=32, learning_rate=5e-4,
    ),
}

#: Architecture name -> one-line description.
ARCHITECTURES = {name: spec.description for name, spec in _REGISTRY.items()}

OPTIMIZERS = ("adam", "sgd")


def check_name(name: str) -> str:
    """Return ``name`` if it is a known architecture.

    Raises:
        CopycatError: naming the valid architectures.
    """
    if name not in _REGISTRY:
        raise CopycatError(
            f"unknown architecture {name!r}; choose one of {', '.join(_REGISTRY)}"
        )
    return name


def default_training(name: str, pretrained: bool = False) -> dict:
    """Epochs, batch size, learning rate and optimizer that suit ``name`` on a CPU; with
    ``pretrained``, the fine-tuning stage's epochs and learning rate (see
    :data:`PRETRAINED_TRAINING`).

    Returns:
        ``{"epochs": int, "batch_size": int, "learning_rate": float, "optimizer": str}``.

    Example:

    >>> default_training("small_cnn")
    {'epochs': 4, 'batch_size': 128, 'learning_rate': 0.002, 'optimizer': 'adam'}
    """
    spec = _REGISTRY[check_name(name)]
    return {
        "epochs": PRETRAINED_TRAINING.epochs if pretrained else spec.epochs,
        "batch_size": spec.batch_size,
        "learning_rate": PRETRAINED_TRAINING.learning_rate if pretrained else spec.learning_rate,
        "optimizer": spec.optimizer,
    }


def build(name: str, input_shape: tuple[int, int, int], num_classes: int, weights: str | None = None):
    """A new Keras classifier, randomly initialised or on a pretrained backbone.

    Args:
        name: a key of :data:`ARCHITECTURES`.
        input_shape: ``(height, width, channels)`` with 1 (grayscale) or 3 (RGB) channels;
            any size, smaller images are upsampled inside the model.
        num_classes: outputs of the softmax head (at least 2).
        weights: ``None`` (random), or for the ``keras.applications`` architectures
            ``"imagenet"`` (downloaded by Keras once, then cached) or a path to a Keras
            weights file of the backbone without its top.

    Returns:
        A ``keras.Model`` mapping float32 ``(N, H, W, C)`` pixels in ``[0, 255]`` to
        ``(N, num_classes)`` probabilities.

    Raises:
        CopycatError: unknown name, a shape or class count no model can take, or weights
            that cannot be had or do not fit the backbone.

    Usage::

        model = build("small_cnn", (28, 28, 1), 10)
        model.predict(images.astype("float32")).sum(axis=1)  # rows sum to 1
    """
    spec = _REGISTRY[check_name(name)]
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3 or input_shape[2] not in (1, 3) or min(input_shape[:2]) < 1:
        raise CopycatError(
            f"input_shape must be (height, width, channels) with 1 or 3 channels; "
            f"received {input_shape}"
        )
    if int(num_classes) < 2:
        raise CopycatError(f"num_classes must be at least 2; received {num_classes}")
    check_weights(name, weights)
    module_name, function = spec.builder.split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    if name in PRETRAINING:
        return getattr(module, function)(input_shape, int(num_classes), weights)
    return getattr(module, function)(input_shape, int(num_classes))
