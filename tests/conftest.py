import os
import sys

# Tests import their small factories (onnx_factory, cli_runner) by plain name, and the
# benchmarks package (its scripts and the KServe test server) from the repository root,
# which `pytest` run as a command does not put on the path.
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# --- the `server` tests: run, skip with one line, or fail under CI=true (server_sandbox.py) ---

import pytest  # noqa: E402

_SANDBOX = pytest.StashKey()


def _sandbox(config):
    """The decision for this session, made at the first `server` test (never when none runs)."""
    if _SANDBOX not in config.stash:
        from server_sandbox import decide, probe

        config.stash[_SANDBOX] = {"decision": decide(probe(), os.environ), "count": 0}
    return config.stash[_SANDBOX]


@pytest.hookimpl(tryfirst=True)  # before the fixtures: a server that cannot start is never tried
def pytest_runtest_setup(item):
    if item.get_closest_marker("server") is None:
        return
    sandbox = _sandbox(item.config)
    decision = sandbox["decision"]
    if decision.action == "run":
        return
    sandbox["count"] += 1
    if decision.action == "skip":
        pytest.skip(decision.line)
    pytest.fail(decision.line, pytrace=False)


def pytest_terminal_summary(terminalreporter, config):
    # Skip reasons are hidden without -rs: the one line that says why and how to fix it is not.
    sandbox = config.stash.get(_SANDBOX, None)
    if sandbox and sandbox["count"]:
        terminalreporter.write_line(f"{sandbox['decision'].line} ({sandbox['count']} tests)")


# --- query sources and fake datasets (test_queries, test_fakeset, test_label_cli) ---

import struct  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture
def query_target(tmp_path):
    """Factory for tiny linear ONNX targets: ``query_target(shape, classes, seed) -> path``."""
    from onnx_factory import make_linear_classifier

    def make(image_shape=(16, 16, 3), num_classes=5, seed=0):
        path = tmp_path / f"target-{'x'.join(map(str, image_shape))}-{num_classes}-{seed}.onnx"
        if not path.exists():
            make_linear_classifier(path, image_shape=image_shape, num_classes=num_classes, seed=seed)
        return path

    return make


def _pixels(rng, height, width, channels=3):
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


@pytest.fixture
def query_folder(tmp_path):
    """A folder of decodable images in every format and colour mode, flat and nested.

    Returns ``(folder, keys)``: keys are the relative paths of the good images.
    """
    rng = np.random.default_rng(0)
    folder = tmp_path / "queries"
    (folder / "n01" / "deep").mkdir(parents=True)
    (folder / "n02").mkdir()
    rgb = lambda: Image.fromarray(_pixels(rng, 30, 40))  # noqa: E731
    images = {
        "a.jpg": (rgb(), {}),
        "b.PNG": (rgb(), {}),
        "c.bmp": (rgb(), {}),
        "d.gif": (rgb().convert("P"), {}),
        "e.webp": (rgb(), {}),
        "f.tiff": (rgb(), {}),
        "n01/cmyk.jpg": (rgb().convert("CMYK"), {}),
        "n01/gray16.png": (Image.fromarray((rng.integers(0, 65536, (20, 25))).astype(np.uint16)), {}),
        "n01/palette.png": (rgb().convert("P"), {"transparency": 0}),
        "n01/deep/rgba.png": (Image.fromarray(_pixels(rng, 30, 40, 4), "RGBA"), {}),
        "n01/deep/la.png": (Image.fromarray(_pixels(rng, 30, 40, 2), "LA"), {}),
        "n02/bilevel.bmp": (rgb().convert("1"), {}),
        "n02/gray.jpeg": (rgb().convert("L"), {}),
        "n02/png-named.jpg": (rgb(), {"format": "PNG"}),
    }
    for key, (image, options) in images.items():
        image.save(folder / key, **options)
    return folder, sorted(images)


@pytest.fixture
def bad_query_files():
    """``bad_query_files(folder) -> {key: reason fragment}``: files that must be rejected."""

    def add(folder: Path) -> dict[str, str]:
        rng = np.random.default_rng(1)
        buffer = folder / "whole.jpg"
        Image.fromarray(_pixels(rng, 60, 80)).save(buffer, quality=95)
        data = buffer.read_bytes()
        buffer.unlink()
        (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
        Image.fromarray(_pixels(rng, 60, 80)).save(folder / "corrupt.png")
        with open(folder / "corrupt.png", "r+b") as handle:  # scramble the pixel data, keep the header
            handle.seek(100)
            handle.write(rng.bytes(400))
        (folder / "empty.jpg").write_bytes(b"")
        (folder / "text-as.jpg").write_text("just some text, not a JPEG\n")
        (folder / "notes.txt").write_text("not an image\n")
        (folder / "bomb.png").write_bytes(png_bomb(9_000, 9_000))
        (folder / "gone.png").symlink_to(folder / "does-not-exist.png")
        return {
            "truncated.jpg": "truncated",
            "corrupt.png": "corrupt",
            "empty.jpg": "empty file",
            "text-as.jpg": "not a recognised image",
            "notes.txt": "not an image file",
            "bomb.png": "bomb",
            "gone.png": "cannot read",
        }

    return add


def png_bomb(width: int, height: int) -> bytes:
    """A small PNG declaring ``width x height`` RGB pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- targets, fake datasets and copycats (test_models, test_training, test_train_cli) ---


@pytest.fixture(scope="session")
def digits_target(tmp_path_factory):
    """A real small_cnn target trained on scikit-learn's 8x8 digits: ``TargetResult``."""
    from copycat_tf.training import TrainConfig, train_target

    path = tmp_path_factory.mktemp("digits-target") / "target.onnx"
    return train_target("digits", path, TrainConfig(arch="small_cnn", epochs=10, seed=0))


@pytest.fixture(scope="session")
def digits_queries(tmp_path_factory):
    """The digits training images as an unlabelled ``.npz`` query file."""
    from copycat_tf.datasets import load_labelled

    path = tmp_path_factory.mktemp("digits-queries") / "queries.npz"
    np.savez(path, x=load_labelled("digits:train").images)
    return path


@pytest.fixture(scope="session")
def make_fakeset(tmp_path_factory):
    """``make_fakeset(target, queries, budget, labels="hard", seed=0, oracle_budget=None)``:
    label a fake dataset (cached per arguments) and return the open ``FakeSet``."""
    from copycat_tf.fakeset import label
    from copycat_tf.oracle import OnnxOracle

    made = {}

    def make(target, queries, budget, labels="hard", seed=0, oracle_budget=None):
        key = (str(target), tuple(map(str, queries)), budget, labels, seed, oracle_budget)
        if key not in made:
            out = tmp_path_factory.mktemp("fakeset")
            oracle = OnnxOracle(target, budget=oracle_budget)
            made[key] = label(oracle, [str(q) for q in queries], budget, out, labels=labels,
                              seed=seed, shard_size=256)
        return made[key]

    return make
