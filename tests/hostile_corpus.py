"""A corpus of hostile inputs, generated on the spot (nothing is downloaded).

Each :class:`Case` builds its inputs inside a folder and returns the ``copycat-tf``
arguments that feed them to the tool. ``tests/test_hostile_inputs.py`` runs every case
through the real console script and checks what must happen:

- ``ERROR_CASES``: exit status 2, one ``copycat-tf: error:`` line naming the problem, no
  traceback, nothing written outside the output folder, the inputs unchanged;
- ``REJECTED_IMAGES``: a hostile file among good images in a query folder: the run
  completes and lists the file in ``rejected.tsv`` with a clear reason;
- ``CONVERTED_IMAGES``: unusual but valid colour modes (CMYK, 16-bit, palette, alpha, ...):
  accepted, and converted to exactly the expected pixels.

Arguments may hold :data:`OUT`, replaced by the case's output folder.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx_factory import make_linear_classifier
from PIL import Image

OUT = object()  # placeholder for the case's output folder
SHAPE = (8, 8, 3)  # image shape of the small targets
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Case:
    """One hostile input.

    Attributes:
        name: the test id.
        build: ``build(folder) -> args``: writes the inputs under ``folder``, returns the
            command line (with :data:`OUT` for the output folder).
        fragments: text the error line must contain.
        tensorflow: the problem shows once training started, so TensorFlow loads first.
    """

    name: str
    build: Callable[[Path], list]
    fragments: tuple[str, ...] = ()
    tensorflow: bool = False  # fails only once training has started (slow: TensorFlow loads)


# ------------------------------------------------------------------------------ helpers


def target(folder: Path, name: str = "target.onnx", **options) -> Path:
    """A good linear classifier (8x8x3, 4 classes unless told otherwise)."""
    path = folder / name
    options = {"image_shape": SHAPE, "num_classes": 4, **options}
    make_linear_classifier(path, **options)
    return path


def pixels(seed: int, height: int = 8, width: int = 8, channels: int = 3) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def good_images(folder: Path, count: int = 3) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        Image.fromarray(pixels(100 + i)).save(folder / f"good-{i}.png")
        names.append(f"good-{i}.png")
    return names


def save_model(path: Path, graph, *, opset: int = 17, ir_version: int | None = None, opsets=None) -> Path:
    model = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def value(name: str, elem, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def classifier_graph(nodes, inputs=None, outputs=None, initializers=(), name="hostile"):
    """A graph taking ``x`` (N, 8, 8, 3) float unless told otherwise."""
    inputs = inputs if inputs is not None else [value("x", TensorProto.FLOAT, ["N", 8, 8, 3])]
    outputs = outputs if outputs is not None else [value("y", TensorProto.FLOAT, ["N", 4])]
    return helper.make_graph(nodes, name, inputs, outputs, list(initializers))


def linear_nodes(x="x", out="y", classes=4, weight="W"):
    """Flatten + Gemm + Softmax on an (N, 8, 8, 3) input, with the weight as an initializer."""
    nodes = [helper.make_node("Flatten", [x], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", weight], ["logits"]),
             helper.make_node("Softmax", ["logits"], [out], axis=1)]
    w = numpy_helper.from_array(np.ones((192, classes), np.float32) / 192, weight)
    return nodes, w


def external(tensor: onnx.TensorProto, location: str, length: int | None = None) -> onnx.TensorProto:
    """Turn ``tensor`` into an external-data reference to ``location``."""
    size = length if length is not None else len(tensor.raw_data or b"") or 4 * int(np.prod(tensor.dims))
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, val in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, val
    return tensor


def png_bomb(width: int, height: int, *, color_type: int = 2, bit_depth: int = 8) -> bytes:
    """A small PNG whose header declares ``width x height`` pixels (zlib data of zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 65536, 9)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def real_png_bomb(side: int) -> bytes:
    """A complete, valid 1-bit PNG of ``side x side`` pixels: a few KB on disk, huge decoded."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is patched to declare ``width x height``."""
    buffer = io.BytesIO()
    Image.fromarray(pixels(7, 16, 16)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_with_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels(8, 4, 4)).save(buffer, format="BMP")
    data = bytearray(buffer.getvalue())
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def gif_with_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels(9, 4, 4)).convert("P").save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    at = data.index(b"\x2c")  # image descriptor
    data[at + 5 : at + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def tiff_with_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels(10, 4, 4)).save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    # Patch ImageWidth (256) and ImageLength (257) in the first IFD.
    offset = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[offset : offset + 2])[0]
    for i in range(count):
        entry = offset + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):
            size = width if tag == 256 else height
            if kind == 3:
                data[entry + 2 : entry + 4] = struct.pack("<H", 4)  # make it a LONG
            data[entry + 8 : entry + 12] = struct.pack("<I", size)
    return bytes(data)


def npy_header_bomb(shape, dtype="<u1") -> bytes:
    """A ``.npy`` payload whose header declares ``shape`` but which holds 64 bytes of data."""
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + b"\0" * 64


def npz(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def object_array(count: int = 2) -> np.ndarray:
    values = np.empty(count, dtype=object)
    for i in range(count):
        values[i] = {"payload": i}
    return values


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(1, int(len(data) * keep))]


# ---------------------------------------------------------------------- ONNX models


def inspect(path) -> list:
    return ["inspect", path]


def label_with(path, *extra) -> list:
    return ["label", path, "--queries", "noise:uniform", "--budget", 4, "--out", OUT, *extra]


def _onnx_zero_byte(d):
    (d / "m.onnx").write_bytes(b"")
    return inspect(d / "m.onnx")


def _onnx_truncated(d):
    good = target(d, "good.onnx")
    (d / "m.onnx").write_bytes(truncated(good.read_bytes(), 0.6))
    return inspect(d / "m.onnx")


def _onnx_random_bytes(d):
    (d / "m.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    return inspect(d / "m.onnx")


def _onnx_text(d):
    (d / "m.onnx").write_text("ir_version: 8\ngraph { node { op_type: 'Relu' } }\n" * 20)
    return inspect(d / "m.onnx")


def _onnx_checker_unknown_op(d):
    graph = classifier_graph([helper.make_node("NoSuchOperator", ["x"], ["y"])])
    return inspect(save_model(d / "m.onnx", graph))


def _onnx_future_ir_version(d):
    nodes, w = linear_nodes()
    return inspect(save_model(d / "m.onnx", classifier_graph(nodes, initializers=[w]), ir_version=999))


def _onnx_future_opset(d):
    nodes, w = linear_nodes()
    return inspect(save_model(d / "m.onnx", classifier_graph(nodes, initializers=[w]), opset=999))


def _onnx_absurd_image_size(d):
    x = value("x", TensorProto.FLOAT, [1, 100000, 100000, 3])
    graph = classifier_graph([helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0, axes=[1, 2]),
                              helper.make_node("Softmax", ["m"], ["y"], axis=1)],
                             inputs=[x], outputs=[value("y", TensorProto.FLOAT, [1, 3])])
    return inspect(save_model(d / "m.onnx", graph, opset=13))


def _onnx_absurd_fixed_batch(d):
    target(d, "m.onnx", batch=2**31 - 1)
    return inspect(d / "m.onnx")


def _onnx_absurd_input_size_option(d):
    x = value("x", TensorProto.FLOAT, ["N", "H", "W", 3])
    graph = classifier_graph([helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0, axes=[1, 2]),
                              helper.make_node("Softmax", ["m"], ["y"], axis=1)],
                             inputs=[x], outputs=[value("y", TensorProto.FLOAT, ["N", 3])])
    return [*inspect(save_model(d / "m.onnx", graph, opset=13)), "--input-size", "0,0"]


def _onnx_string_input(d):
    s = value("s", TensorProto.STRING, ["N", 8, 8, 3])
    graph = classifier_graph([helper.make_node("Identity", ["s"], ["o"])], inputs=[s],
                             outputs=[value("o", TensorProto.STRING, ["N", 8, 8, 3])])
    return inspect(save_model(d / "m.onnx", graph))


def _onnx_bool_input(d):
    b = value("b", TensorProto.BOOL, ["N", 8, 8, 3])
    graph = classifier_graph([helper.make_node("Cast", ["b"], ["f"], to=TensorProto.FLOAT),
                              helper.make_node("ReduceMean", ["f"], ["y"], keepdims=0, axes=[1, 2])],
                             inputs=[b], outputs=[value("y", TensorProto.FLOAT, ["N", 3])])
    return inspect(save_model(d / "m.onnx", graph, opset=13))


def _onnx_two_inputs(d):
    nodes, w = linear_nodes(x="sum")
    inputs = [value("a", TensorProto.FLOAT, ["N", 8, 8, 3]), value("b", TensorProto.FLOAT, ["N", 8, 8, 3])]
    graph = classifier_graph([helper.make_node("Add", ["a", "b"], ["sum"]), *nodes], inputs=inputs,
                             initializers=[w])
    return inspect(save_model(d / "m.onnx", graph))


def _onnx_no_inputs(d):
    constant = helper.make_node("Constant", [], ["y"],
                                value=numpy_helper.from_array(np.full((1, 4), 0.25, np.float32)))
    graph = classifier_graph([constant], inputs=[], outputs=[value("y", TensorProto.FLOAT, [1, 4])])
    return inspect(save_model(d / "m.onnx", graph))


def _onnx_no_outputs(d):
    nodes, w = linear_nodes()
    return inspect(save_model(d / "m.onnx", classifier_graph(nodes, outputs=[], initializers=[w])))


def _onnx_only_integer_output(d):
    nodes, w = linear_nodes(out="probs")
    nodes.append(helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0))
    graph = classifier_graph(nodes, outputs=[value("label", TensorProto.INT64, ["N"])], initializers=[w])
    return inspect(save_model(d / "m.onnx", graph))


def _onnx_rank2_input(d):
    v = value("v", TensorProto.FLOAT, ["N", 192])
    graph = classifier_graph([helper.make_node("Gemm", ["v", "W"], ["l"]),
                              helper.make_node("Softmax", ["l"], ["y"], axis=1)],
                             inputs=[v], initializers=[numpy_helper.from_array(np.ones((192, 4), np.float32), "W")])
    return inspect(save_model(d / "m.onnx", graph))


def _onnx_four_channels(d):
    x = value("x", TensorProto.FLOAT, ["N", 8, 8, 4])
    graph = classifier_graph([helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0, axes=[1, 2])],
                             inputs=[x], outputs=[value("y", TensorProto.FLOAT, ["N", 4])])
    return [*inspect(save_model(d / "m.onnx", graph, opset=13)), "--layout", "NHWC"]


def _onnx_one_class(d):
    nodes, w = linear_nodes(classes=1)
    graph = classifier_graph(nodes, outputs=[value("y", TensorProto.FLOAT, ["N", 1])], initializers=[w])
    return inspect(save_model(d / "m.onnx", graph))


def _onnx_nan_output(d):
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0, axes=[1, 2]),
             helper.make_node("Neg", ["m"], ["n"]),
             helper.make_node("Sqrt", ["n"], ["y"])]  # sqrt of negative pixels: NaN
    graph = classifier_graph(nodes, outputs=[value("y", TensorProto.FLOAT, ["N", 3])])
    return label_with(save_model(d / "m.onnx", graph, opset=13), "--mean", "-1", "--std", "1")


def _onnx_fails_at_runtime(d):
    shape = numpy_helper.from_array(np.array([-1, 7], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]  # 192 pixels do not split in 7s
    graph = classifier_graph(nodes, outputs=[value("y", TensorProto.FLOAT, ["N", 7])], initializers=[shape])
    return inspect(save_model(d / "m.onnx", graph))


def _with_external_weight(d, location: str, *, prepare=None):
    folder = d / "model"
    folder.mkdir(parents=True, exist_ok=True)
    if prepare:
        prepare(d, folder)
    nodes, w = linear_nodes()
    graph = classifier_graph(nodes, initializers=[external(w, location)])
    return save_model(folder / "m.onnx", graph)


def _secret(d):
    secret = d / "secret.bin"
    secret.write_bytes(np.ones(192 * 4, np.float32).tobytes())
    return secret


def _onnx_external_dotdot(d):
    _secret(d)
    return inspect(_with_external_weight(d, "../secret.bin"))


def _onnx_external_etc_passwd(d):
    return inspect(_with_external_weight(d, "../../../../../../../../etc/passwd", ))


def _onnx_external_absolute(d):
    secret = _secret(d)
    return inspect(_with_external_weight(d, str(secret)))


def _onnx_external_symlink_out(d):
    def link(d, folder):
        (folder / "weights.bin").symlink_to(_secret(d))

    return inspect(_with_external_weight(d, "weights.bin", prepare=link))


def _onnx_external_sneaky_subfolder(d):
    def sub(d, folder):
        (folder / "sub").mkdir()
        _secret(d)

    return inspect(_with_external_weight(d, "sub/../../secret.bin", prepare=sub))


def _onnx_external_missing(d):
    return inspect(_with_external_weight(d, "weights.bin"))


def _onnx_external_in_constant(d):
    _secret(d)
    folder = d / "model"
    folder.mkdir()
    weight = external(numpy_helper.from_array(np.ones((192, 4), np.float32), "W"), "../secret.bin")
    nodes, _ = linear_nodes()
    graph = classifier_graph([helper.make_node("Constant", [], ["W"], value=weight), *nodes])
    return label_with(save_model(folder / "m.onnx", graph))


def _onnx_external_in_subgraph(d):
    _secret(d)
    folder = d / "model"
    folder.mkdir()
    weight = external(numpy_helper.from_array(np.ones((192, 4), np.float32), "W"), "../secret.bin")
    branch_nodes, _ = linear_nodes(x="x")
    branch = helper.make_graph(branch_nodes, "branch", [], [value("y_branch", TensorProto.FLOAT, ["N", 4])],
                               [weight])
    branch.node[-1].output[0] = "y_branch"
    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    graph = classifier_graph([node], initializers=[cond])
    return inspect(save_model(folder / "m.onnx", graph))


def _onnx_external_sparse_initializer(d):
    _secret(d)
    folder = d / "model"
    folder.mkdir()
    values = external(numpy_helper.from_array(np.ones(4, np.float32), "W_values"), "../secret.bin")
    indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), "W_indices")
    sparse = helper.make_sparse_tensor(values, indices, [192, 4])
    sparse.values.name = "W"
    nodes, _ = linear_nodes()
    graph = classifier_graph(nodes)
    graph.sparse_initializer.append(sparse)
    return inspect(save_model(folder / "m.onnx", graph))


def _onnx_custom_domain(d):
    custom = helper.make_node("StealMe", ["x"], ["y"], domain="com.vendor.secret")
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.vendor.secret", 1)]
    return inspect(save_model(d / "m.onnx", classifier_graph([custom]), opsets=opsets))


def _onnx_custom_domain_as_copycat(d):
    good = target(d)
    custom = helper.make_node("StealMe", ["x"], ["y"], domain="com.vendor.secret")
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.vendor.secret", 1)]
    copycat = save_model(d / "copycat.onnx", classifier_graph([custom]), opsets=opsets)
    test = npz(d / "test.npz", x=np.stack([pixels(i) for i in range(4)]), y=np.arange(4))
    return ["evaluate", good, copycat, "--test-data", test, "--out", OUT]


def _onnx_bad_contract_metadata(d):
    bad = json.dumps({"input": "NHWC", "output": ["probs"], "preprocessing": {"mean": "abc"}})
    return inspect(target(d, "m.onnx", metadata={"copycat_tf.contract": bad}))


def _onnx_bad_preprocessing_metadata(d):
    bad = json.dumps({"preprocessing": {"mean": [1, 2], "std": [0], "channel_order": "yuv"}})
    return inspect(target(d, "m.onnx", metadata={"copycat_tf.contract": bad}))


def _onnx_symlink_loop(d):
    (d / "m.onnx").symlink_to(d / "m.onnx")
    return inspect(d / "m.onnx")


def _onnx_hostile_label_target(d):
    _secret(d)
    return label_with(_with_external_weight(d, "../secret.bin"))


# ------------------------------------------------------------------ query images and arrays


def _query_label(d, queries, *extra):
    return ["label", target(d), "--queries", queries, "--budget", 8, "--out", OUT, *extra]


def _only_hostile_images(d):
    folder = d / "queries"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(png_bomb(20000, 20000))
    (folder / "truncated.jpg").write_bytes(truncated(jpeg_with_size(16, 16)))
    (folder / "empty.png").write_bytes(b"")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    return _query_label(d, folder)


def _only_symlink_loops(d):
    folder = d / "queries"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "up").symlink_to(folder)
    (folder / "self").symlink_to(folder / "self")
    (folder / "here").symlink_to(".")
    return _query_label(d, folder)


def _array_pickled_objects_npz(d):
    return _query_label(d, npz(d / "x.npz", x=object_array()))


def _array_pickle_file_as_npy(d):
    import pickle

    (d / "x.npy").write_bytes(pickle.dumps({"x": [1, 2, 3]}))
    return _query_label(d, d / "x.npy")


def _array_object_npy(d):
    np.save(d / "x.npy", object_array(), allow_pickle=True)
    return _query_label(d, d / "x.npy")


def _array_truncated_npz(d):
    path = npz(d / "full.npz", x=np.stack([pixels(i) for i in range(8)]))
    (d / "x.npz").write_bytes(truncated(path.read_bytes(), 0.5))
    return _query_label(d, d / "x.npz")


def _array_zero_byte_npz(d):
    (d / "x.npz").write_bytes(b"")
    return _query_label(d, d / "x.npz")


def _array_header_bomb_npz(d):
    with zipfile.ZipFile(d / "x.npz", "w") as archive:
        archive.writestr("x.npy", npy_header_bomb((10**6, 4096, 4096, 3)))
    return _query_label(d, d / "x.npz")


def _array_header_bomb_npy(d):
    (d / "x.npy").write_bytes(npy_header_bomb((10**6, 4096, 4096, 3)))
    return _query_label(d, d / "x.npy")


def _array_dtype(dtype, name):
    def build(d):
        images = np.zeros((4, 8, 8, 3), dtype=dtype)
        return _query_label(d, npz(d / f"{name}.npz", x=images))

    return build


def _array_nan(d):
    images = np.full((4, 8, 8, 3), np.nan, np.float32)
    return _query_label(d, npz(d / "x.npz", x=images))


def _array_shape(shape, name):
    def build(d):
        return _query_label(d, npz(d / f"{name}.npz", x=np.zeros(shape, np.uint8)))

    return build


def _array_several_no_x(d):
    return _query_label(d, npz(d / "x.npz", a=np.zeros((2, 8, 8, 3), np.uint8), b=np.zeros((2, 8, 8, 3), np.uint8)))


# --------------------------------------------------------------------- evaluate test data


def _evaluate(d, test):
    return ["evaluate", target(d), target(d, "copycat.onnx"), "--test-data", test, "--out", OUT]


def _test_npz_pickled_labels(d):
    return _evaluate(d, npz(d / "test.npz", x=np.zeros((2, 8, 8, 3), np.uint8), y=object_array()))


def _test_npz_pickled_images(d):
    return _evaluate(d, npz(d / "test.npz", x=object_array(), y=np.arange(2)))


def _test_npz_truncated(d):
    path = npz(d / "full.npz", x=np.stack([pixels(i) for i in range(8)]), y=np.arange(8) % 4)
    (d / "test.npz").write_bytes(truncated(path.read_bytes(), 0.7))
    return _evaluate(d, d / "test.npz")


def _test_npz_header_bomb(d):
    with zipfile.ZipFile(d / "test.npz", "w") as archive:
        archive.writestr("x.npy", npy_header_bomb((10**6, 4096, 4096, 3)))
        archive.writestr("y.npy", npy_header_bomb((10**6,), "<i8"))
    return _evaluate(d, d / "test.npz")


def _test_npz_float_labels(d):
    return _evaluate(d, npz(d / "test.npz", x=np.zeros((2, 8, 8, 3), np.uint8), y=np.array([0.5, 1.5])))


def _test_npz_negative_labels(d):
    return _evaluate(d, npz(d / "test.npz", x=np.zeros((2, 8, 8, 3), np.uint8), y=np.array([-1, 0])))


def _test_npz_zero_size_images(d):
    return _evaluate(d, npz(d / "test.npz", x=np.zeros((2, 0, 8, 3), np.uint8), y=np.array([0, 1])))


def _test_folder_only_hostile(d):
    folder = d / "test"
    (folder / "cat").mkdir(parents=True)
    (folder / "dog").mkdir()
    (folder / "cat" / "bomb.png").write_bytes(png_bomb(30000, 30000))
    (folder / "dog" / "huge.jpg").write_bytes(jpeg_with_size(65000, 65000))
    (folder / "dog" / "loop.png").symlink_to(folder / "dog" / "loop.png")
    return _evaluate(d, folder)


def _test_folder_symlink_loops(d):
    folder = d / "test"
    (folder / "cat").mkdir(parents=True)
    (folder / "dog").mkdir()
    (folder / "cat" / "up").symlink_to(folder)
    (folder / "dog" / "self").symlink_to(folder / "dog")
    (folder / "dog" / "loop.png").symlink_to(folder / "dog" / "loop.png")
    return _evaluate(d, folder)


# ------------------------------------------------------------------ fake-dataset manifests


def fakeset(d: Path, *, count: int = 8, shard_arrays=None) -> Path:
    """A valid little fake dataset written by hand (one shard), as ``label`` would."""
    from copycat_tf.contract import ClassOutput, Contract, ImageInput, Preprocessing
    from copycat_tf.files import file_sha256

    folder = d / "fake"
    folder.mkdir(parents=True, exist_ok=True)
    contract = Contract(ImageInput("input", (None, 8, 8, 3), "float32", "NHWC"),
                        ClassOutput("probs", 4, "probabilities"), Preprocessing(std=(255.0,)))
    arrays = {"images": np.stack([pixels(i) for i in range(count)]),
              "labels": np.arange(count, dtype=np.int64) % 4,
              "sources": np.zeros(count, np.int32),
              "keys": np.array([str(i) for i in range(count)])}
    arrays.update(shard_arrays or {})
    np.savez(folder / "shard-00000.npz", **arrays)
    manifest = {
        "format": "copycat-tf.fakeset", "format_version": 1, "tool_version": "0.1.0",
        "oracle": {"sha256": "0" * 64, "contract": contract.to_dict()},
        "config": {"sources": [{"spec": "noise:uniform", "kind": "noise:uniform", "weight": 1.0,
                                "size": None, "fingerprint": "uniform"}],
                   "seed": 0, "image_shape": [8, 8, 3], "resize": "resize", "max_pixels": 40000000,
                   "labels": "hard", "shard_size": 1024},
        "budget": count, "count": count, "queries_spent": count,
        "label_histogram": np.bincount(np.arange(count) % 4, minlength=4).tolist(),
        "source_counts": [count], "rejected": 0, "rejected_bytes": 0, "next_item": count,
        "complete": True, "exhausted": False,
        "shards": [{"file": "shard-00000.npz", "count": count,
                    "sha256": file_sha256(folder / "shard-00000.npz"), "next_item": count}],
    }
    write_manifest(folder, manifest)
    return folder


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def write_manifest(folder: Path, manifest) -> None:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (folder / "manifest.json").write_text(text)


def train(folder) -> list:
    return ["train", folder, "--out", OUT, "--epochs", 1]


def _manifest_edit(edit):
    def build(d):
        folder = fakeset(d)
        manifest = read_manifest(folder)
        write_manifest(folder, edit(manifest, folder, d))
        return train(folder)

    return build


def _set_shard(key, val):
    def edit(manifest, folder, d):
        manifest["shards"][0][key] = val
        return manifest

    return edit


def _manifest_symlinked_shard(manifest, folder, d):
    from copycat_tf.files import file_sha256

    elsewhere = d / "elsewhere"
    elsewhere.mkdir()
    os.replace(folder / "shard-00000.npz", elsewhere / "data.npz")
    (folder / "shard-00000.npz").symlink_to(elsewhere / "data.npz")
    manifest["shards"][0]["sha256"] = file_sha256(elsewhere / "data.npz")
    return manifest


def _manifest_absurd_shape(manifest, folder, d):
    manifest["oracle"]["contract"]["input"]["shape"] = [None, 100000, 100000, 3]
    return manifest


def _manifest_bad_histogram(manifest, folder, d):
    manifest["label_histogram"] = [1] * 1000
    return manifest


def _manifest_negative_count(manifest, folder, d):
    manifest["count"] = -8
    manifest["shards"][0]["count"] = -8
    return manifest


def _shard_edit(arrays):
    def build(d):
        return train(fakeset(d, shard_arrays=arrays))

    return build


def _shard_truncated(d):
    from copycat_tf.files import file_sha256

    folder = fakeset(d)
    shard = folder / "shard-00000.npz"
    shard.write_bytes(truncated(shard.read_bytes(), 0.5))
    manifest = read_manifest(folder)
    manifest["shards"][0]["sha256"] = file_sha256(shard)
    write_manifest(folder, manifest)
    return train(folder)


def _shard_header_bomb(d):
    from copycat_tf.files import file_sha256

    folder = fakeset(d)
    shard = folder / "shard-00000.npz"
    with np.load(shard) as archive:
        arrays = {name: archive[name] for name in archive.files}
    with zipfile.ZipFile(shard, "w") as archive:
        for name, array in arrays.items():
            if name == "images":
                archive.writestr("images.npy", npy_header_bomb((8, 8, 8, 3 * 10**9)))
            else:
                buffer = io.BytesIO()
                np.save(buffer, array)
                archive.writestr(f"{name}.npy", buffer.getvalue())
    manifest = read_manifest(folder)
    manifest["shards"][0]["sha256"] = file_sha256(shard)
    write_manifest(folder, manifest)
    return train(folder)


ERROR_CASES = [
    # --- ONNX targets
    Case("onnx-zero-byte", _onnx_zero_byte, ("m.onnx", "empty file")),
    Case("onnx-truncated", _onnx_truncated, ("m.onnx", "not an ONNX model")),
    Case("onnx-random-bytes", _onnx_random_bytes, ("m.onnx", "not an ONNX model")),
    Case("onnx-text", _onnx_text, ("m.onnx", "not an ONNX model")),
    Case("onnx-checker-unknown-op", _onnx_checker_unknown_op, ("onnx.checker",)),
    Case("onnx-future-ir-version", _onnx_future_ir_version, ("onnx.checker",)),
    Case("onnx-future-opset", _onnx_future_opset, ("m.onnx",)),
    Case("onnx-absurd-image-size", _onnx_absurd_image_size, ("100000x100000", "pixel limit")),
    Case("onnx-absurd-fixed-batch", _onnx_absurd_fixed_batch, ("batch", "2147483647")),
    Case("onnx-zero-input-size-option", _onnx_absurd_input_size_option, ("input size must be",)),
    Case("onnx-string-input", _onnx_string_input, ("tensor(string)",)),
    Case("onnx-bool-input", _onnx_bool_input, ("tensor(bool)",)),
    Case("onnx-two-inputs", _onnx_two_inputs, ("expected one image input, found 2",)),
    Case("onnx-no-inputs", _onnx_no_inputs, ("found 0",)),
    Case("onnx-no-outputs", _onnx_no_outputs, ("m.onnx",)),
    Case("onnx-only-integer-output", _onnx_only_integer_output, ("no rank-2 float output",)),
    Case("onnx-rank2-input", _onnx_rank2_input, ("rank-4 image batch",)),
    Case("onnx-four-channels", _onnx_four_channels, ("4 channels",)),
    Case("onnx-one-class", _onnx_one_class, ("at least 2 classes",)),
    Case("onnx-nan-output", _onnx_nan_output, ("NaN",)),
    Case("onnx-fails-at-runtime", _onnx_fails_at_runtime, ("fails on a test batch",)),
    Case("onnx-external-dotdot", _onnx_external_dotdot, ("'../secret.bin'", "outside the model's folder")),
    Case("onnx-external-etc-passwd", _onnx_external_etc_passwd, ("etc/passwd", "outside the model's folder")),
    Case("onnx-external-absolute", _onnx_external_absolute, ("outside the model's folder",)),
    Case("onnx-external-symlink-out", _onnx_external_symlink_out, ("outside the model's folder",)),
    Case("onnx-external-sneaky-subfolder", _onnx_external_sneaky_subfolder, ("outside the model's folder",)),
    Case("onnx-external-missing", _onnx_external_missing, ("weights.bin", "missing")),
    Case("onnx-external-in-constant", _onnx_external_in_constant, ("outside the model's folder",)),
    Case("onnx-external-in-subgraph", _onnx_external_in_subgraph, ("outside the model's folder",)),
    Case("onnx-external-sparse-initializer", _onnx_external_sparse_initializer, ("outside the model's folder",)),
    Case("onnx-custom-domain-op", _onnx_custom_domain, ("onnxruntime cannot load",)),
    Case("onnx-custom-domain-copycat", _onnx_custom_domain_as_copycat, ("copycat.onnx", "onnxruntime cannot load")),
    Case("onnx-bad-contract-metadata", _onnx_bad_contract_metadata, ("copycat_tf.contract",)),
    Case("onnx-bad-preprocessing-metadata", _onnx_bad_preprocessing_metadata,
         ("copycat_tf.contract", "mean and std take 1 or 3 values")),
    Case("onnx-symlink-loop", _onnx_symlink_loop, ("m.onnx",)),
    Case("onnx-hostile-label-target", _onnx_hostile_label_target, ("outside the model's folder",)),
    # --- query folders and arrays
    Case("images-only-hostile", _only_hostile_images, ("no usable query", "rejected.tsv")),
    Case("images-only-symlink-loops", _only_symlink_loops, ("no images",)),
    Case("array-npz-pickled-objects", _array_pickled_objects_npz, ("x.npz", "allow_pickle=False")),
    Case("array-pickle-file-as-npy", _array_pickle_file_as_npy, ("x.npy", "allow_pickle=False")),
    Case("array-object-npy", _array_object_npy, ("x.npy", "allow_pickle=False")),
    Case("array-npz-truncated", _array_truncated_npz, ("x.npz",)),
    Case("array-npz-zero-byte", _array_zero_byte_npz, ("x.npz",)),
    Case("array-npz-header-bomb", _array_header_bomb_npz, ("x.npz",)),
    Case("array-npy-header-bomb", _array_header_bomb_npy, ("x.npy",)),
    Case("array-bool", _array_dtype(bool, "bool"), ("bool",)),
    Case("array-complex", _array_dtype(np.complex64, "complex"), ("complex64",)),
    Case("array-strings", _array_dtype("<U3", "strings"), ("<U3",)),
    Case("array-nan", _array_nan, ("nan",)),
    Case("array-four-channels", _array_shape((4, 8, 8, 4), "four"), ("(4, 8, 8, 4)",)),
    Case("array-one-dimensional", _array_shape((64,), "flat"), ("(64,)",)),
    Case("array-zero-size-images", _array_shape((4, 0, 8, 3), "zero"), ("(4, 0, 8, 3)",)),
    Case("array-empty", _array_shape((0, 8, 8, 3), "empty"), ("holds no images",)),
    Case("array-several-no-x", _array_several_no_x, ("'x'",)),
    # --- evaluate test data
    Case("test-npz-pickled-labels", _test_npz_pickled_labels, ("test.npz", "pickle")),
    Case("test-npz-pickled-images", _test_npz_pickled_images, ("test.npz", "pickle")),
    Case("test-npz-truncated", _test_npz_truncated, ("test.npz",)),
    Case("test-npz-header-bomb", _test_npz_header_bomb, ("test.npz",)),
    Case("test-npz-float-labels", _test_npz_float_labels, ("test.npz", "integer label")),
    Case("test-npz-negative-labels", _test_npz_negative_labels, ("test.npz", ">= 0")),
    Case("test-npz-zero-size-images", _test_npz_zero_size_images, ("test.npz",)),
    Case("test-folder-only-hostile", _test_folder_only_hostile, ("no readable images",)),
    Case("test-folder-symlink-loops", _test_folder_symlink_loops, ("no readable images",)),
    # --- fake-dataset manifests and shards
    Case("manifest-not-json", _manifest_edit(lambda m, f, d: "{ not json"), ("unreadable",)),
    Case("manifest-a-list", _manifest_edit(lambda m, f, d: [m]), ("not a copycat-tf.fakeset manifest",)),
    Case("manifest-future-version", _manifest_edit(lambda m, f, d: {**m, "format_version": 99}), ("version 99",)),
    Case("manifest-missing-field", _manifest_edit(lambda m, f, d: {k: v for k, v in m.items() if k != "shards"}),
         ("'shards'",)),
    Case("manifest-deep-nesting", _manifest_edit(lambda m, f, d: "[" * 100000 + "]" * 100000), ("manifest.json",)),
    Case("manifest-huge-integer", _manifest_edit(lambda m, f, d: json.dumps(m).replace('"count": 8', '"count": ' + "9" * 5000)),
         ("manifest.json",)),
    Case("manifest-shard-dotdot", _manifest_edit(_set_shard("file", "../elsewhere/shard-00000.npz")),
         ("not a plain shard name",)),
    Case("manifest-shard-absolute", _manifest_edit(_set_shard("file", "/etc/passwd")), ("not a plain shard name",)),
    Case("manifest-shard-symlink-out", _manifest_edit(_manifest_symlinked_shard), ("shard-00000.npz", "outside")),
    Case("manifest-absurd-image-shape", _manifest_edit(_manifest_absurd_shape), ("manifest.json",)),
    Case("manifest-histogram-length", _manifest_edit(_manifest_bad_histogram), ("label_histogram",)),
    Case("manifest-negative-count", _manifest_edit(_manifest_negative_count), ("manifest.json",)),
    Case("manifest-is-a-folder", lambda d: train(_manifest_folder(d)), ("unreadable",)),
    Case("shard-pickled-objects", _shard_edit({"keys": object_array(8)}), ("shard-00000.npz", "pickled")),
    Case("shard-float-images", _shard_edit({"images": np.zeros((8, 8, 8, 3), np.float64)}),
         ("shard-00000.npz", "float64")),
    Case("shard-wrong-image-shape", _shard_edit({"images": np.zeros((8, 9, 8, 3), np.uint8)}),
         ("shard-00000.npz", "(8, 9, 8, 3)")),
    Case("shard-header-bomb", _shard_header_bomb, ("shard-00000.npz", "forged")),
    Case("shard-truncated", _shard_truncated, ("shard-00000.npz", "not a readable .npz")),
    Case("shard-labels-out-of-range", _shard_edit({"labels": np.full(8, 99, np.int64)}),
         ("shard-00000.npz", "99"), tensorflow=True),
]


def _manifest_folder(d):
    folder = fakeset(d)
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").mkdir()
    return folder


# --------------------------------------------------- hostile images inside a query folder


def _write(name, make):
    def build(folder: Path):
        path = folder / name
        data = make(folder)
        if data is not None:
            path.write_bytes(data)
        return name

    return build


def _mkfifo(folder):
    os.mkfifo(folder / "pipe.png")


def _dev_zero(folder):
    (folder / "zero.jpg").symlink_to("/dev/zero")


def _self_loop(folder):
    (folder / "loop.png").symlink_to(folder / "loop.png")


def _psd_as_png(folder):
    return b"8BPS\x00\x01" + b"\x00" * 200  # Photoshop magic: a decoder Pillow may not try here


def _dev_urandom(folder):
    (folder / "random.png").symlink_to("/dev/urandom")


def _folder_named_jpg(folder):
    # A folder is walked into, not read: the file inside is what gets rejected.
    (folder / "folder.jpg").mkdir()
    return b"not an image, in a folder named like one\n"


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _bad_crc_png(folder):
    buffer = io.BytesIO()
    Image.fromarray(pixels(12, 16, 16)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    at = data.index(b"IDAT") + 4
    data[at : at + 16] = b"\xff" * 16
    return bytes(data)


#: (name, build(folder) -> key, reason fragment in rejected.tsv)
REJECTED_IMAGES = [
    ("truncated-jpeg", _write("truncated.jpg", lambda f: truncated(jpeg_with_size(16, 16))), "truncated"),
    ("truncated-png", _write("truncated.png", lambda f: truncated(_png(pixels(13, 64, 64)), 0.6)), "truncated"),
    ("corrupt-png-data", _write("crc.png", _bad_crc_png), "corrupt"),
    ("zero-byte", _write("empty.png", lambda f: b""), "empty file"),
    ("random-bytes", _write("noise.jpg", lambda f: np.random.default_rng(3).bytes(3000)), "not a recognised image"),
    ("png-header-bomb", _write("bomb.png", lambda f: png_bomb(100000, 100000)), "bomb"),
    ("png-real-bomb", _write("real-bomb.png", lambda f: real_png_bomb(8000)), "bomb"),
    ("jpeg-huge-dimensions", _write("huge.jpg", lambda f: jpeg_with_size(65000, 65000)), "bomb"),
    ("bmp-huge-dimensions", _write("huge.bmp", lambda f: bmp_with_size(50000, 50000)), "bomb"),
    ("gif-huge-dimensions", _write("huge.gif", lambda f: gif_with_size(65000, 65000)), "bomb"),
    ("tiff-huge-dimensions", _write("huge.tiff", lambda f: tiff_with_size(100000, 100000)), "bomb"),
    ("psd-named-png", _write("photoshop.png", _psd_as_png), "not a recognised image"),
    ("symlink-loop-file", _write("loop.png", _self_loop), "cannot read"),
    ("fifo-named-png", _write("pipe.png", _mkfifo), "not a regular file"),
    ("symlink-to-dev-zero", _write("zero.jpg", _dev_zero), "not a regular file"),
    ("symlink-to-dev-urandom", _write("random.png", _dev_urandom), "not a regular file"),
    ("folder-named-jpg", _write("folder.jpg/inner.png", _folder_named_jpg), "not a recognised image"),
]


# ------------------------------------------------------------ unusual but valid colour modes


def _rgb(seed=20):
    return pixels(seed, 16, 16)


def _alpha_over_black(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float64) / 255
    return np.rint(rgba[..., :3] * alpha).astype(np.uint8)


def _mode_cmyk(folder):
    Image.fromarray(_rgb()).convert("CMYK").save(folder / "cmyk.tiff")
    with Image.open(folder / "cmyk.tiff") as image:
        return "cmyk.tiff", np.asarray(image.convert("RGB")), 0


def _mode_cmyk_jpeg(folder):
    Image.fromarray(_rgb()).convert("CMYK").save(folder / "cmyk.jpg", quality=100)
    with Image.open(folder / "cmyk.jpg") as image:
        return "cmyk.jpg", np.asarray(image.convert("RGB")), 0


def _mode_gray16(folder):
    values = np.random.default_rng(21).integers(0, 65536, (16, 16)).astype(np.uint16)
    values[0, :3] = [0, 65535, 32768]
    Image.fromarray(values).save(folder / "gray16.png")
    gray = np.rint(values / 257.0).astype(np.uint8)
    return "gray16.png", np.repeat(gray[..., None], 3, axis=2), 0


def _mode_palette(folder):
    image = Image.fromarray(_rgb()).quantize(16)
    image.save(folder / "palette.png")
    return "palette.png", np.asarray(image.convert("RGB")), 0


def _mode_palette_transparency(folder):
    image = Image.fromarray(_rgb()).quantize(16)
    image.save(folder / "palette-t.png", transparency=0)
    expected = np.asarray(image.convert("RGB")).copy()
    expected[np.asarray(image) == 0] = 0  # transparent pixels become black
    return "palette-t.png", expected, 0


def _mode_rgba(folder):
    rgba = pixels(22, 16, 16, 4)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    return "rgba.png", _alpha_over_black(rgba), 1


def _mode_la(folder):
    la = pixels(23, 16, 16, 2)
    Image.fromarray(la, "LA").save(folder / "la.png")
    gray = _alpha_over_black(np.stack([la[..., 0]] * 3 + [la[..., 1]], axis=-1))
    return "la.png", gray, 1


def _mode_bilevel(folder):
    image = Image.fromarray(_rgb()).convert("1")
    image.save(folder / "bilevel.bmp")
    return "bilevel.bmp", np.asarray(image.convert("RGB")), 0


def _mode_float_tiff(folder):
    values = np.random.default_rng(24).random((16, 16)).astype(np.float32) * 255
    Image.fromarray(values, "F").save(folder / "float.tiff")
    gray = np.rint(np.clip(values, 0, None)).astype(np.uint8)
    return "float.tiff", np.repeat(gray[..., None], 3, axis=2), 1


def _mode_exif_garbage(folder):
    buffer = io.BytesIO()
    exif = b"MM\x00\x2a\x00\x00\x00\x08" + np.random.default_rng(26).bytes(200)
    Image.fromarray(_rgb(27)).save(buffer, format="JPEG", exif=exif, quality=100)
    (folder / "exif.jpg").write_bytes(buffer.getvalue())
    with Image.open(folder / "exif.jpg") as image:
        return "exif.jpg", np.asarray(image.convert("RGB")), 0


def _mode_gray_into_rgb(folder):
    gray = pixels(25, 16, 16, 1)
    Image.fromarray(gray, "L").save(folder / "gray.png")
    return "gray.png", np.repeat(gray[..., None], 3, axis=2), 0


#: (name, build(folder) -> (key, expected uint8 16x16x3 pixels, tolerance)) for a 16x16x3 target
CONVERTED_IMAGES = [
    ("cmyk-tiff", _mode_cmyk),
    ("cmyk-jpeg", _mode_cmyk_jpeg),
    ("gray-16-bit", _mode_gray16),
    ("palette", _mode_palette),
    ("palette-transparency", _mode_palette_transparency),
    ("rgba", _mode_rgba),
    ("gray-alpha", _mode_la),
    ("bilevel", _mode_bilevel),
    ("float-tiff", _mode_float_tiff),
    ("gray-into-rgb", _mode_gray_into_rgb),
    ("exif-garbage", _mode_exif_garbage),
]
