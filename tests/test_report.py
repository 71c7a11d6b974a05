"""Report files: JSON keys, Markdown content, PNG plots and the headline."""

import json

import numpy as np
import pytest
from PIL import Image

from copycat_tf.errors import CopycatError
from copycat_tf.evaluation import Evaluation, ModelScores
from copycat_tf.report import headline, summary, write_report

Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 1, 0])
TARGET_PRED = np.array([0, 0, 0, 1, 1, 2, 2, 2, 1, 1])  # 9 of 10 right
COPYCAT_PRED = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1, 1])  # 7 of 10 right, agrees on 8


def labelled(queries=30_000):
    return Evaluation(
        test_name="tiny:test",
        count=10,
        class_names=["cat", "dog", "a|b"],
        target=ModelScores.from_predictions(Y_TRUE, TARGET_PRED, 3),
        copycat=ModelScores.from_predictions(Y_TRUE, COPYCAT_PRED, 3),
        agreement=0.8,
        per_class_agreement=0.75,
        kappa=0.677,
        agreement_matrix=np.array([[3, 1, 0], [0, 4, 0], [1, 0, 1]]),
        queries=queries,
        target_sha256="a" * 64,
        copycat_sha256="b" * 64,
        arch="vgg16",
    )


def unlabelled(queries=None):
    return Evaluation(
        test_name="./photos",
        count=10_000,
        class_names=["0", "1", "2"],
        target=None,
        copycat=None,
        agreement=0.91,
        per_class_agreement=0.9,
        kappa=None,
        agreement_matrix=np.eye(3, dtype=np.int64),
        queries=queries,
        target_sha256="a" * 64,
        copycat_sha256="b" * 64,
    )


def test_report_json_has_the_required_keys_and_values(tmp_path):
    paths = write_report(labelled(), tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    assert data["target"]["accuracy"] == 0.9
    assert data["copycat"]["accuracy"] == 0.7
    assert data["performance_ratio"] == pytest.approx(0.7 / 0.9)
    assert data["agreement"] == 0.8
    assert data["per_class_agreement"] == 0.75 and data["kappa"] == 0.677
    assert data["queries"] == 30_000
    # Per-class F1 = 2TP / (2TP + FP + FN): target 6/7, 6/7, 1; copycat 4/7, 6/8, 4/5.
    assert data["target"]["macro_f1"] == pytest.approx((6 / 7 + 6 / 7 + 1) / 3)
    assert data["copycat"]["macro_f1"] == pytest.approx((4 / 7 + 6 / 8 + 4 / 5) / 3)
    assert data["macro_f1_ratio"] == pytest.approx((4 / 7 + 6 / 8 + 4 / 5) / (6 / 7 + 6 / 7 + 1))
    assert data["target"]["confusion"] == [[3, 1, 0], [0, 3, 0], [0, 0, 3]]
    assert data["copycat"]["per_class"]["recall"] == pytest.approx([0.5, 1.0, 2 / 3])
    assert data["target"]["per_class"]["support"] == [4, 3, 3]
    assert data["class_names"] == ["cat", "dog", "a|b"]
    assert data["target"]["sha256"] == "a" * 64 and data["copycat"]["arch"] == "vgg16"
    assert list(data) == sorted(data)


def test_report_markdown_puts_the_models_side_by_side(tmp_path):
    text = write_report(labelled(), tmp_path)["markdown"].read_text()
    assert "copycat reaches 77.8% of the target's accuracy (agreement 80.0%) with 30,000 queries" in text
    assert "| accuracy | 90.00% | 70.00% |" in text
    assert "Performance ratio (copycat / target accuracy): **77.8%**" in text
    assert ("Agreement (same predicted label): **80.00%** (per class of the target's answers 75.00%; "
            "Cohen's kappa 0.677)") in text
    assert "| cat | 4 | 1.000 | 0.750 | 0.667 | 0.500 |" in text
    assert "| a\\|b |" in text  # a pipe in a class name must not break the table
    assert "![confusion matrices](confusion.png)" in text


def test_plots_are_real_pngs_side_by_side(tmp_path):
    paths = write_report(labelled(), tmp_path)
    with Image.open(paths["confusion_plot"]) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert 300 <= height <= 2000 and width > 1.5 * height  # two panels next to each other
    with Image.open(paths["agreement_plot"]) as image:
        assert image.format == "PNG" and min(image.size) >= 200


def test_unlabelled_report_has_agreement_only(tmp_path):
    write_report(labelled(), tmp_path)  # an earlier labelled run into the same folder
    paths = write_report(unlabelled(queries=30_000), tmp_path)
    assert "confusion_plot" not in paths and not (tmp_path / "confusion.png").exists()
    data = json.loads(paths["json"].read_text())
    assert data["performance_ratio"] is None
    assert data["target"]["accuracy"] is None and data["copycat"]["macro_f1"] is None
    assert data["agreement"] == 0.91 and data["labelled"] is False
    assert data["per_class_agreement"] == 0.9 and data["kappa"] is None
    assert "unlabelled: agreement only" in paths["markdown"].read_text()
    assert "Cohen's kappa undefined, one answer throughout" in paths["markdown"].read_text()


def test_headlines():
    assert headline(labelled()) == (
        "copycat reaches 77.8% of the target's accuracy (agreement 80.0%) with 30,000 queries"
    )
    assert headline(labelled(queries=None)) == (
        "copycat reaches 77.8% of the target's accuracy (agreement 80.0%)"
    )
    assert headline(unlabelled(queries=30_000)) == (
        "copycat agrees with the target on 91.0% of 10,000 test images (30,000 queries)"
    )
    assert headline(unlabelled()) == "copycat agrees with the target on 91.0% of 10,000 test images"


def test_summary_table():
    lines = summary(labelled()).splitlines()
    assert lines[1].split() == ["target", "copycat"]
    assert lines[2].split() == ["accuracy", "90.0%", "70.0%"]
    assert lines[-1].split() == ["agreement", "80.0%"]


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(CopycatError, match="is a file"):
        write_report(labelled(), tmp_path / "taken")


def test_a_folder_with_another_tools_files_is_refused_but_a_killed_write_is_taken_up(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CopycatError, match=r"not empty \(notes.txt\) and holds no copycat-tf report"):
        write_report(labelled(), foreign)
    assert (foreign / "notes.txt").read_text() == "mine"

    killed = tmp_path / "killed"  # a run killed while writing its first report.json
    killed.mkdir()
    (killed / "report.json.tmp").write_text('{"performance_ra')
    paths = write_report(labelled(), killed)
    assert json.loads(paths["json"].read_text())["queries"] == 30_000
    assert not list(killed.glob("*.tmp"))
