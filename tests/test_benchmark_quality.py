"""benchmarks.research.quality: seeds, label-free vendor targets scored on held-out images, named grids."""

import doctest
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from onnx_factory import make_linear_classifier
from PIL import Image

from benchmarks.research import quality
from copycat_tf.datasets import load_labelled
from copycat_tf.evaluation import evaluate
from copycat_tf.oracle import OnnxOracle


def _vendor_dir(folder: Path, shapes: dict) -> Path:
    """A ``benchmarks.data.targets``-like folder: one linear ONNX model per name and targets.json."""
    folder.mkdir()
    entries = {}
    for name, shape in shapes.items():
        path = folder / f"{name}.onnx"
        make_linear_classifier(path, image_shape=shape, num_classes=4, seed=len(entries))
        entries[name] = {"name": name, "onnx": path.name, "onnx_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    (folder / "targets.json").write_text(json.dumps(entries))
    return folder


def _heldout_dir(folder: Path, count: int = 12) -> Path:
    """natural/ (colour photos of mixed sizes) and faces/ (small grayscale crops), as heldout_images.py lays them."""
    rng = np.random.default_rng(7)
    for sub, mode in (("natural", "RGB"), ("faces", "L")):
        (folder / sub).mkdir(parents=True)
        for i in range(count):
            size = (40 + 7 * i, 30 + 5 * i)
            small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
            Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).convert(mode).save(folder / sub / f"{i}.png")
    return folder


def test_docstring_examples_run():
    assert doctest.testmod(quality).failed == 0


def test_issue17_grid_is_the_issues_table():
    seeds, cells = quality.plan(quality.parser().parse_args(["--grid", "issue17"]))
    assert seeds == (0, 1, 2)
    assert [(c.target, c.budget, c.strategies) for c in cells] == [
        ("fashion-mnist", 10_000, ("balanced",)), ("fashion-mnist", 30_000, ("balanced",)),
        ("mnist", 10_000, ("balanced",)), ("mnist", 30_000, ("balanced",)),
        ("cifar10-cnn", 10_000, ("balanced",)), ("fer-emotion", 10_000, ("balanced",))]
    assert {(c.target, c.budget): c.art for c in cells if c.art} == {
        ("fashion-mnist", 10_000): ("copycat", "random", "adaptive")}


def test_grid_refuses_the_options_it_sets():
    args = quality.parser().parse_args(["--grid", "issue17", "--seeds", "0", "--budgets", "300"])
    with pytest.raises(SystemExit, match=r"--grid issue17 sets .* itself; drop --budgets, --seeds"):
        quality.plan(args)


def test_options_make_the_cross_product_with_three_seeds_by_default():
    seeds, cells = quality.plan(quality.parser().parse_args(
        ["--targets", "mnist,cifar10-cnn", "--budgets", "300,1000", "--strategies", "paper", "--art", "copycat"]))
    assert seeds == (0, 1, 2)
    assert [(c.target, c.budget, c.strategies, c.art) for c in cells] == [
        ("mnist", 300, ("paper",), ("copycat",)), ("mnist", 1000, ("paper",), ("copycat",)),
        ("cifar10-cnn", 300, ("paper",), ("copycat",)), ("cifar10-cnn", 1000, ("paper",), ("copycat",))]
    with pytest.raises(SystemExit, match=r"--seeds: expected comma-separated int values; received '0,one'"):
        quality.plan(quality.parser().parse_args(["--seeds", "0,one"]))


def test_vendor_targets_are_scored_on_the_heldout_folder_that_fits(tmp_path):
    targets = _vendor_dir(tmp_path / "targets", {"cifar10-tiny": (32, 32, 3), "fer-emotion": (16, 16, 1)})
    heldout = _heldout_dir(tmp_path / "heldout")
    work = tmp_path / "work"
    tiny = quality.resolve_target("cifar10-tiny", work, targets, heldout)
    fer = quality.resolve_target("fer-emotion", work, targets, heldout)
    assert (tiny.path, tiny.test_data) == (targets / "cifar10-tiny.onnx", None)
    assert tiny.eval_data == str(heldout / "natural")
    assert (fer.test_data, fer.eval_data) == (None, str(heldout / "faces"))
    mnist = quality.resolve_target("mnist", work, targets, heldout)
    assert (mnist.path, mnist.test_data, mnist.eval_data) == (work / "target-mnist.onnx", "mnist:test", None)
    assert not mnist.path.exists()  # found now, trained by main() only once every name is known


def test_vendor_target_errors_say_what_to_do(tmp_path):
    targets = _vendor_dir(tmp_path / "targets", {"cifar10-tiny": (32, 32, 3)})
    heldout = _heldout_dir(tmp_path / "heldout")
    work = tmp_path / "work"
    with pytest.raises(SystemExit, match=r"unknown target 'cifar10'; choose from fashion-mnist, mnist, cifar10-tiny$"):
        quality.resolve_target("cifar10", work, targets, heldout)
    with pytest.raises(SystemExit, match=r"targets.json not found: make it with `python -m benchmarks.data.targets"):
        quality.resolve_target("cifar10-tiny", work, tmp_path / "nowhere", heldout)
    with pytest.raises(SystemExit, match=r"nothing/natural: no such folder; cifar10-tiny has no labelled data"):
        quality.resolve_target("cifar10-tiny", work, targets, tmp_path / "nothing")
    make_linear_classifier(targets / "cifar10-tiny.onnx", image_shape=(32, 32, 3), num_classes=4, seed=9)
    with pytest.raises(SystemExit, match=r"cifar10-tiny.onnx: sha256 .* is not the .* listed in"):
        quality.resolve_target("cifar10-tiny", work, targets, heldout)


def test_pd_share_is_refused_for_a_target_without_training_images(tmp_path):
    targets = _vendor_dir(tmp_path / "targets", {"cifar10-tiny": (32, 32, 3)})
    heldout = _heldout_dir(tmp_path / "heldout")
    with pytest.raises(SystemExit, match=r"--pd-share needs the target's training images; cifar10-tiny has none"):
        quality.main(["--targets", "cifar10-tiny", "--pd-share", "0.05", "--target-dir", str(targets),
                      "--heldout", str(heldout), "--work", str(tmp_path / "work")])


@pytest.mark.slow
def test_label_free_runs_per_seed_with_a_mean_row_and_reuse_finished_runs(tmp_path, capsys):
    targets = _vendor_dir(tmp_path / "targets", {"cifar10-tiny": (32, 32, 3)})
    heldout = _heldout_dir(tmp_path / "heldout")
    work, rows_file = tmp_path / "work", tmp_path / "rows.json"
    argv = ["--targets", "cifar10-tiny", "--budgets", "120", "--seeds", "0,1", "--strategies", "paper",
            "--target-dir", str(targets), "--heldout", str(heldout), "--work", str(work), "--markdown",
            "--json", str(rows_file)]
    quality.main(argv)
    first = capsys.readouterr().out
    rows = json.loads(rows_file.read_text())
    assert [(r["target"], r["strategy"], r["queries"], r["seed"]) for r in rows] == [
        ("cifar10-tiny", "paper", 120, 0), ("cifar10-tiny", "paper", 120, 1)]
    assert all(r["ratio"] is None and r["copycat_accuracy"] is None and r["scored_images"] == 12 for r in rows)
    # The agreement is steal's own evaluation on the held-out folder, fitted to the target's input.
    images = load_labelled(str(heldout / "natural"), image_shape=(32, 32, 3))
    for row in rows:
        copycat = work / f"cifar10-tiny-paper-hard-small_cnn-120-s{row['seed']}" / "copycat" / "copycat.onnx"
        expected = evaluate(OnnxOracle(targets / "cifar10-tiny.onnx"), OnnxOracle(copycat), images).agreement
        assert row["agreement"] == pytest.approx(expected)
    lines = first.splitlines()
    assert f"cifar10-tiny: no labels; agreement on the images of {heldout / 'natural'}" in lines
    seed_lines = [line.split() for line in lines if line.startswith("cifar10-tiny   paper")]
    assert [cells[2:7] for cells in seed_lines[:2]] == [
        ["small_cnn", "120", "0", "-", "-"], ["small_cnn", "120", "1", "-", "-"]]
    assert all(r["per_class_agreement"] is not None and r["queries_used"] == ["photos"] for r in rows)
    mean = [rows[0]["agreement"], rows[1]["agreement"]]
    per_class = quality.spread([r["per_class_agreement"] for r in rows])
    kappa = quality.spread([r["kappa"] for r in rows])
    assert seed_lines[2][4:8] == ["mean", "-", "-", quality.spread(mean).split()[0]]
    assert (f"| cifar10-tiny | 120 | `paper` | small_cnn | 0, 1 | - | {quality.spread(mean)} | {per_class} | "
            f"{kappa} | {heldout / 'natural'} (12) |" in first)

    quality.main(argv)  # finished runs are reused: same figures, first wall times
    again = capsys.readouterr().out
    assert again.count("(cached)") == 2
    assert json.loads(rows_file.read_text()) == [{**row, "cached": True} for row in rows]
