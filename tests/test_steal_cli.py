"""`copycat-tf steal` end to end through the real CLI, on a real digits target."""

import json

import pytest
from cli_runner import run_cli, value_columns
from onnx_factory import make_linear_classifier

import copycat_tf


@pytest.fixture(scope="module")
def stolen(digits_target, digits_queries, tmp_path_factory):
    out = tmp_path_factory.mktemp("steal")
    args = ("steal", digits_target.path, "--queries", digits_queries, "--queries", "noise:uniform:0.2",
            "--budget", 700, "--epochs", 12, "--test-data", "digits:test", "--out", out)
    first = run_cli(*args)
    return out, args, first


def test_steal_writes_every_stage_and_ends_with_the_headline(stolen, digits_target):
    out, _, result = stolen
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("copycat reaches ") and "with 700 queries" in last
    # the result block's values start in one column: `test data` as `fake set` and `report`
    assert value_columns(result.stdout, ("fake set", "test data", "report")) == {10}
    report = json.loads((out / "report" / "report.json").read_text())
    for key in ("performance_ratio", "agreement", "queries"):
        assert key in report
    assert report["queries"] == 700
    assert report["target"]["accuracy"] > 0.8
    # trained on mostly problem-domain digits, the copy must be far better than chance
    assert report["copycat"]["accuracy"] > 0.5 and report["agreement"] > 0.5
    manifest = json.loads((out / "fakeset" / "manifest.json").read_text())
    assert manifest["count"] == 700 and manifest["complete"]
    assert (out / "copycat" / "copycat.onnx").is_file()
    provenance = report["provenance"]  # how the copy was made, to reproduce and audit it
    assert provenance["target"]["sha256"] == digits_target.card["sha256"]
    assert (provenance["strategy"], provenance["budget"], provenance["seed"]) == ("balanced", 700, 0)
    assert provenance["queries"][1] == "noise:uniform:0.2" and provenance["copycat"]["arch"] == "small_cnn"
    assert provenance["tool_version"] == copycat_tf.__version__
    markdown = (out / "report" / "report.md").read_text()
    assert "## Provenance" in markdown and digits_target.card["sha256"] in markdown


def test_copycat_is_a_drop_in_replacement(stolen, digits_target):
    out, _, _ = stolen
    target = json.loads(run_cli("inspect", digits_target.path, "--json").stdout)
    copycat = json.loads(run_cli("inspect", out / "copycat" / "copycat.onnx", "--json").stdout)
    assert copycat["inputs"] == target["inputs"]
    assert copycat["num_classes"] == target["num_classes"]
    assert copycat["metadata"]["copycat_tf.target_sha256"] == target["sha256"]


def test_rerun_skips_finished_stages_and_buys_nothing(stolen):
    out, args, first = stolen
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "already trained" in again.stdout
    manifest = json.loads((out / "fakeset" / "manifest.json").read_text())
    assert manifest["queries_spent"] == 700
    assert again.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]


def test_steal_without_test_data_reports_held_out_agreement(digits_target, digits_queries, tmp_path):
    result = run_cli("steal", digits_target.path, "--queries", digits_queries, "--budget", 300,
                     "--epochs", 1, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "of held-out queries (300 queries)" in result.stdout.strip().splitlines()[-1]


def test_steal_refuses_a_run_folder_of_another_target(stolen, tmp_path):
    out, _, _ = stolen
    other = tmp_path / "other.onnx"
    make_linear_classifier(other, image_shape=(8, 8, 1), num_classes=10)
    run_cli("steal", other, "--queries", "noise:uniform", "--budget", 700, "--out", out).assert_clean_error(
        "holds a steal run made with other arguments (target sha256", "--overwrite"
    )


def test_steal_bad_inputs(tmp_path, digits_target):
    run_cli("steal", tmp_path / "missing.onnx", "--queries", "photos", "--out", tmp_path / "r").assert_clean_error(
        "no such file")
    run_cli("steal", digits_target.path, "--queries", "photos", "--budget", 0,
            "--out", tmp_path / "r").assert_clean_error("budget")
    run_cli("steal", digits_target.path, "--queries", "photos", "--arch", "nope",
            "--out", tmp_path / "r2").assert_clean_error("nope")
