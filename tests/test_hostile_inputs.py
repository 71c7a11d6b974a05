"""The hostile-input corpus (tests/hostile_corpus.py) through the real console script.

Every error case must end with exit status 2 and one clear ``copycat-tf: error:`` line, no
traceback, and must write nothing outside its output folder: each run gets a fresh working
directory, HOME and TMPDIR inside the case's folder, and the whole folder (inputs
included) is compared before and after. Hostile images inside a query folder are not an
error: the run completes and lists them in ``rejected.tsv``. Unusual colour modes are
accepted and converted to the expected pixels.

The quick loop (``-m "not slow"``) runs the cases in ``QUICK``; the slow marker, which CI
runs too, holds the rest (each is a separate ``copycat-tf`` process, about half a second).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from hostile_corpus import CONVERTED_IMAGES, ERROR_CASES, OUT, REJECTED_IMAGES, good_images
from onnx_factory import make_linear_classifier

from copycat_tf.fakeset import FakeSet


def snapshot(root: Path, exclude: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (but ``exclude``): type, size, mtime and content hash.

    Nothing is followed or opened but regular files, so symlink loops and FIFOs are safe.
    """
    entries = {}
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        if Path(folder) == exclude:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = Path(folder) / name
            if path == exclude:
                continue
            info = os.lstat(path)
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                entries[key] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                entries[key] = ("file", info.st_size, info.st_mtime_ns,
                                hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISDIR(info.st_mode):
                entries[key] = ("dir", info.st_mtime_ns)
            else:
                entries[key] = ("other", stat.S_IFMT(info.st_mode))
    return entries


class Sandbox:
    """A case's folder: ``in/`` for inputs, ``cwd/``, ``home/``, ``tmp/`` and ``out``."""

    def __init__(self, root: Path):
        self.root = root
        self.inputs = root / "in"
        self.out = root / "out"
        for name in ("in", "cwd", "home", "tmp"):
            (root / name).mkdir()

    def run(self, args, *, tensorflow: bool = False):
        """Run the CLI; fail if anything outside ``out`` changed.

        Temporary files are allowed while the command runs (the ``tmp/`` folder's own
        time stamp may change) but none may be left. Once TensorFlow is loaded, Keras and
        matplotlib may create their usual config and cache files in HOME (README, Safety).
        """
        args = [self.out if a is OUT else a for a in args]
        before = snapshot(self.root, self.out)
        env = {"HOME": str(self.root / "home"), "TMPDIR": str(self.root / "tmp"),
               "MPLCONFIGDIR": str(self.root / "home" / ".matplotlib")}
        result = run_cli(*args, cwd=self.root / "cwd", env=env, timeout=300)
        after = snapshot(self.root, self.out)
        allowed = {"tmp"} | ({"home", "home/.keras", "home/.keras/keras.json"} if tensorflow else set())
        changed = sorted(k for k in before.keys() | after.keys()
                         if before.get(k) != after.get(k) and k not in allowed
                         and not (tensorflow and k.startswith("home/.matplotlib")))
        assert not changed, f"written or changed outside the output folder: {changed}\n{result.stderr}"
        if self.out.is_dir():
            leftovers = [p.name for p in self.out.rglob("*.tmp")]
            assert not leftovers, leftovers
        return result


#: Run in the quick (``-m "not slow"``) loop: one or two of each kind, and every bug found.
QUICK = {
    "onnx-truncated", "onnx-absurd-fixed-batch", "onnx-two-inputs", "onnx-external-dotdot",
    "onnx-external-sparse-initializer", "onnx-custom-domain-op", "onnx-bad-contract-metadata",
    "images-only-hostile", "array-npz-pickled-objects", "array-npz-header-bomb", "array-npz-truncated",
    "test-npz-header-bomb", "manifest-shard-dotdot", "manifest-shard-symlink-out",
    "manifest-deep-nesting", "shard-pickled-objects",
    "png-header-bomb", "fifo-named-png", "symlink-loop-file",
}


def _params(cases, name=lambda c: c.name):
    return [pytest.param(*([c] if not isinstance(c, tuple) else c), id=name(c),
                         marks=[] if name(c) in QUICK else [pytest.mark.slow]) for c in cases]


@pytest.mark.parametrize("case", _params(ERROR_CASES))
def test_hostile_input_exits_2_with_one_clear_line(case, tmp_path):
    sandbox = Sandbox(tmp_path)
    result = sandbox.run(case.build(sandbox.inputs), tensorflow=case.tensorflow)
    result.assert_clean_error(*case.fragments)
    assert "internal error" not in result.stderr


def test_the_corpus_is_big_enough():
    assert len(ERROR_CASES) >= 30
    names = [c.name for c in ERROR_CASES] + [c[0] for c in REJECTED_IMAGES]
    assert len(set(names)) == len(names) and QUICK <= set(names)
    assert not any(c.tensorflow and c.name in QUICK for c in ERROR_CASES)


@pytest.mark.parametrize("name, build, reason", _params(REJECTED_IMAGES, name=lambda c: c[0]))
def test_hostile_image_in_a_query_folder_is_rejected_and_listed(name, build, reason, tmp_path):
    sandbox = Sandbox(tmp_path)
    folder = sandbox.inputs / "queries"
    good = good_images(folder)
    key = build(folder)
    target = sandbox.inputs / "target.onnx"
    make_linear_classifier(target, image_shape=(16, 16, 3), num_classes=4)
    result = sandbox.run(["label", target, "--queries", folder, "--budget", 50, "--out", OUT])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    fakeset = FakeSet.open(sandbox.out)
    assert fakeset.count == len(good) and fakeset.rejected == 1
    keys = sorted(k for shard in fakeset.iter_shards() for k in shard["keys"].tolist())
    assert keys == good
    rows = (sandbox.out / "rejected.tsv").read_text().splitlines()[1:]
    assert len(rows) == 1
    source, rejected_key, why = rows[0].split("\t")
    assert (source, rejected_key) == (str(folder), key)
    assert reason.lower() in why.lower(), why


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One `label` run over a folder holding every unusual colour mode: (fakeset, expected)."""
    root = tmp_path_factory.mktemp("modes")
    sandbox = Sandbox(root)
    folder = sandbox.inputs / "queries"
    folder.mkdir()
    expected = {name: build(folder) for name, build in CONVERTED_IMAGES}
    target = sandbox.inputs / "target.onnx"
    make_linear_classifier(target, image_shape=(16, 16, 3), num_classes=4)
    result = sandbox.run(["label", target, "--queries", folder, "--budget", 50, "--out", OUT])
    assert result.returncode == 0, result.stderr
    fakeset = FakeSet.open(sandbox.out)
    images = {k: image for shard in fakeset.iter_shards()
              for k, image in zip(shard["keys"].tolist(), shard["images"])}
    return fakeset, images, expected


@pytest.mark.parametrize("name", [c[0] for c in CONVERTED_IMAGES])
def test_unusual_colour_modes_are_accepted_and_converted(converted, name):
    fakeset, images, expected = converted
    assert fakeset.rejected == 0
    key, pixels, tolerance = expected[name]
    assert key in images, sorted(images)
    difference = np.abs(images[key].astype(int) - pixels.astype(int))
    assert difference.max() <= tolerance, (name, difference.max())
