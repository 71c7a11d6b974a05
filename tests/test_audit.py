"""`copycat-tf audit`: one purchase of queries, derived fake datasets per budget and defence,
the report (JSON, Markdown, PNG, self-contained HTML checked in headless Chromium)."""

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from onnx_factory import make_linear_classifier

from copycat_tf.audit.anchors import PUBLISHED_ATTACKS
from copycat_tf.audit.defences import parse_defence
from copycat_tf.audit.report import write_audit_report
from copycat_tf.audit.verdict import attacker_statement, verdict
from copycat_tf.audit.results import AuditRow
from copycat_tf.errors import CopycatError
from copycat_tf.fakeset import FakeSet, derive

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records(fakeset, with_probabilities=False):
    shards = list(fakeset.iter_shards(with_probabilities=with_probabilities))
    return {key: np.concatenate([s[key] for s in shards]) for key in shards[0]}


# ------------------------------------------------------------------ derived fake datasets


@pytest.fixture
def soft_fakeset(query_target, make_fakeset):
    return make_fakeset(query_target((8, 8, 1), 4), ["noise:uniform"], 300, labels="soft")


def test_derive_takes_the_first_records_and_rewrites_the_answers(soft_fakeset, tmp_path):
    source = _records(soft_fakeset, with_probabilities=True)
    top1 = derive(soft_fakeset, tmp_path / "100-top1", 100, parse_defence("top1").attacker_view,
                  name="defence:top1", labels="hard")
    assert (top1.count, top1.queries_spent, top1.complete, top1.has_probabilities) == (100, 100, True, False)
    assert top1.oracle_sha256 == soft_fakeset.oracle_sha256 and top1.contract == soft_fakeset.contract
    assert top1.manifest["config"]["derivation"] == "defence:top1"
    assert top1.manifest["config"]["derived_from"]["count"] == 100
    got = _records(top1)
    np.testing.assert_array_equal(got["images"], source["images"][:100])
    np.testing.assert_array_equal(got["labels"], source["labels"][:100])
    np.testing.assert_array_equal(got["keys"], source["keys"][:100])

    # across a shard boundary of the source (256 records), with probabilities kept
    rounded = derive(soft_fakeset, tmp_path / "280-round1", 280, parse_defence("round1").attacker_view,
                     name="defence:round1", labels="soft")
    got = _records(rounded, with_probabilities=True)
    expected = np.round(source["probabilities"][:280].astype(np.float64), 1)
    expected = expected / expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got["probabilities"], expected, rtol=1e-6)
    np.testing.assert_array_equal(got["labels"], expected.argmax(axis=1))
    np.testing.assert_array_equal(got["images"], source["images"][:280])
    assert sum(rounded.label_histogram) == 280


def test_derive_resumes_and_refuses_what_it_does_not_own(soft_fakeset, tmp_path):
    out = tmp_path / "cell"
    first = derive(soft_fakeset, out, 50, name="prefix")
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = derive(soft_fakeset, out, 50, name="prefix")
    assert again.manifest == first.manifest
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing rewritten
    other = derive(soft_fakeset, out, 60, name="prefix")  # another derivation replaces its own files
    assert other.count == 60
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(CopycatError, match="not empty"):
        derive(soft_fakeset, stranger, 50)
    with pytest.raises(CopycatError, match="cannot take the first 301"):
        derive(soft_fakeset, tmp_path / "big", 301)
    with pytest.raises(CopycatError, match="labels only"):
        derive(soft_fakeset, tmp_path / "soft-top1", 10, parse_defence("top1").attacker_view, labels="soft")


# ---------------------------------------------------------------------------- report


def _report(**changes):
    report = {
        "target": "vendor.onnx",
        "sha256": "ab" * 32,
        "contract": {
            "input": {"name": HOSTILE, "shape": [None, 8, 8, 1], "dtype": "float32", "layout": "NHWC"},
            "output": {"name": "probs|x", "num_classes": 10, "kind": "probabilities"},
            "preprocessing": {"mean": [0.0], "std": [255.0], "channel_order": "rgb"},
            "extra_outputs": [],
        },
        "model": {"producer": "x", "parameters": 1234, "metadata": {"note": HOSTILE}},
        "queries": ["photos"],
        "strategy": "balanced",
        "arch": "small_cnn",
        "weights": None,
        "test_data": "digits:test",
        "metric": "performance_ratio",
        "evaluation_images": 359,
        "budgets": [1000, 5000, 20000],
        "defences": [{"name": n, "description": parse_defence(n).description} for n in ("none", "top1", "round2")],
        "queries_spent": 20000,
        "eval_queries_spent": 0,
        "price_per_1k": 1.5,
        "total_cost": 30.0,
        "results": [],
    }
    scores = {("none", 1000): 0.7, ("none", 5000): 0.95, ("none", 20000): 0.97,
              ("top1", 1000): 0.6, ("top1", 5000): 0.9, ("top1", 20000): 0.9,
              ("round2", 1000): 0.7, ("round2", 5000): 0.94, ("round2", 20000): 0.96}
    for (defence, n), ratio in scores.items():
        report["results"].append({"queries": n, "defence": defence, "performance_ratio": ratio,
                                  "agreement": ratio - 0.05, "per_class_agreement": ratio - 0.1,
                                  "kappa": ratio - 0.15, "copycat_accuracy": ratio * 0.9,
                                  "target_accuracy": 0.9, "cost": n / 1000 * 1.5,
                                  "top1_kept": 1.0 if defence != "round2" else 0.998})
    report.update(changes)
    return report


def test_verdict_is_one_sentence_then_a_bullet_per_finding_with_its_thresholds():
    sentence, *bullets = verdict(_report()).splitlines()
    assert sentence == ("High risk (a lower bound): with label-only answers (top1), 90% of this model's accuracy "
                        "was copied with 5,000 queries of photos (cost 7.50 at 1.50 per 1,000 queries).")
    assert all(line.startswith("- ") and line.endswith(".") for line in bullets)
    attack, attacker, published, top1, round2 = bullets
    assert attack.startswith("- attack (balanced strategy, copycat small_cnn): ")
    assert "within 1 point of its best" in attack and "High at >= 80%, Medium from 50%, Low below" in attack
    assert "there the per-class agreement is 80% and kappa 0.75" in attack
    assert attacker.startswith("- attacker simulated: copycat small_cnn, not pretrained, balanced strategy")
    assert published.startswith("- published attacks: ImageNet-pretrained VGG16 copycat")
    assert top1 == ("- defence top1: label-only answers; 90% at 20,000 queries against 97% with full "
                    "probabilities (no defence), a cut of 7.0 points.")
    assert "no cut beyond the 1-point margin" in round2  # 96% against 97%: one point is within the margin
    assert ("keeps the top-1 label for 99.8% of these queries, so label-only stealing (the Copycat CNN threat "
            "model) gets what the top1 row shows") in round2
    unlabelled = _report(metric="agreement", price_per_1k=None)
    assert "agreeing with this model on 85% of fresh query images was made with 5,000 queries" in verdict(unlabelled)
    assert "cost" not in verdict(unlabelled).splitlines()[0]
    assert verdict(_report(results=[{**r, "performance_ratio": r["performance_ratio"] / 2}
                                     for r in _report()["results"]])).startswith("Low risk (a lower bound): ")


def test_verdict_names_its_attacker_and_calls_a_weaker_ones_risk_a_lower_bound():
    text = verdict(_report())
    attacker = next(line for line in text.splitlines() if line.startswith("- attacker simulated: "))
    assert attacker == (
        "- attacker simulated: copycat small_cnn, not pretrained, balanced strategy, queries of photos, budgets "
        "1,000, 5,000 and 20,000. It is weaker than the published attacks (not pretrained; at most 20,000 queries "
        "against the papers' 100,000 and more), so this risk is a lower bound: a stronger attacker may copy more, "
        "and a Low verdict does not mean safe.")
    published = next(line for line in text.splitlines() if line.startswith("- published attacks: "))
    for anchor in PUBLISHED_ATTACKS:
        assert str(anchor) in published
    for figure in ("0.93 of a CIFAR-10-style target's accuracy", "71.5% accuracy (per-class mean 0.67)",
                   "90.5% at 500,000", "+0.19", "at least 93.7%", "at least 98.6%", "Pattern Recognition 2021",
                   "IJCNN 2018"):
        assert figure in published
    # A pretrained copycat that is still short of the papers' budget: the budget alone is named.
    pretrained = attacker_statement(_report(weights="imagenet"))
    assert "copycat small_cnn, pretrained (ImageNet weights), balanced" in pretrained
    assert "(at most 20,000 queries against the papers' 100,000 and more)" in pretrained
    local = attacker_statement(_report(weights="/weights/vgg16_notop.weights.h5", arch="vgg16"))
    assert "copycat vgg16, pretrained (weights vgg16_notop.weights.h5)" in local and "/weights/" not in local
    # As strong as the papers' attacker: pretrained, 100,000 queries; no lower bound is claimed.
    strong = _report(weights="imagenet", budgets=[100_000],
                     results=[{**r, "queries": 100_000} for r in _report()["results"] if r["queries"] == 20000])
    sentence, *_ = verdict(strong).splitlines()
    assert sentence.startswith("High risk: with label-only answers (top1), ")
    assert ("budgets 100,000. It is as strong as the published attacks in pretraining and budget."
            in attacker_statement(strong))
    # A report from before the weights option: its copycat was trained from scratch.
    old = {k: v for k, v in _report().items() if k != "weights"}
    assert "not pretrained" in attacker_statement(old) and "a lower bound" in verdict(old).splitlines()[0]


def test_verdict_glues_no_list_into_a_sentence():
    report = _report(queries=["photos", "noise:uniform:0.2", "pd/:0.1"])
    report["defences"].append({"name": "round1", "description": "probabilities rounded to 1 decimal"})
    report["results"].append({**report["results"][-1], "defence": "round1", "performance_ratio": 0.95})
    text = verdict(report)
    assert "queries of photos, noise:uniform:0.2 and pd/:0.1 (cost" in text
    assert "which" not in text and "round2, round1" not in text
    assert sum(line.startswith("- defence round") for line in text.splitlines()) == 2


def test_verdict_says_what_monitoring_and_label_defences_would_have_done():
    report = _report()
    report["defences"] += [{"name": "misinformation", "description": "x", "parameters": {"tau": 0.5}},
                           {"name": "watermark", "description": "y", "parameters": {"rate": 0.005}}]
    report["results"] += [
        {"queries": 20000, "defence": "misinformation", "performance_ratio": 0.52, "owner_changed": 0.004},
        {"queries": 20000, "defence": "watermark", "performance_ratio": 0.89, "watermark_p_value": 3e-13,
         "watermark_marks": 100, "watermark_disagreements": 12, "watermark_matches": 11, "watermark_chance": 1 / 9},
    ]
    report["detection"] = {"prada": {"delta": 0.9, "strategy": "balanced", "first_alarm": 1429,
                                     "queries_to_alarm": 1430, "min_w": 0.71, "benign_alarm": False,
                                     "benign_source": "digits:test", "benign_first_alarm": None}}
    lines = verdict(report).splitlines()
    assert ("- detection: PRADA-style monitoring (alarm while Shapiro-Wilk W < delta 0.9) flags this attack after "
            "1,430 queries (lowest W 0.710); it stays quiet on the benign images of digits:test.") in lines
    assert ("- defence misinformation: x; 52% at 20,000 queries against 90% with label-only answers (top1), "
            "a cut of 38.0 points; it changes 0.4% of honest answers.") in lines
    assert ("- watermark: a 0.5% watermark identifies the copy when the binomial test gives p < 0.001; "
            "here p = 3e-13 at 20,000 queries, so it does.") in lines
    report["detection"]["prada"].update(first_alarm=None, queries_to_alarm=None)
    report["results"][-1]["watermark_p_value"] = 0.0014
    text = verdict(report)
    assert "does not flag this attack in 20,000 queries (lowest W 0.710)" in text
    assert "gives p < 0.001; here p = 0.0014 at 20,000 queries, so it does not." in text
    page = write_audit_report({**report, "verdict": text}, Path(tempfile.mkdtemp()))["markdown"].read_text()
    assert "## Detection and defences" in page and "matches 11 of 12 disagreements" in page


def test_report_files_are_complete_self_contained_and_escape_model_metadata(tmp_path):
    report = _report()
    report["verdict"] = verdict(report)
    files = write_audit_report(report, tmp_path)
    data = json.loads(files["json"].read_text())
    for key in ("sha256", "contract", "queries_spent", "eval_queries_spent", "price_per_1k", "results", "verdict"):
        assert key in data
    assert files["curve"].read_bytes().startswith(PNG_MAGIC)
    page = files["html"].read_text()
    assert report["sha256"] in page and all(html.escape(line.removeprefix("- ")) in page
                                            for line in report["verdict"].splitlines())
    assert "data:image/png;base64," in page
    assert "http" not in page and "<script" not in page and "<link" not in page
    assert "onerror=alert(1)>" not in page and html.escape(HOSTILE) in page
    markdown = files["markdown"].read_text()
    assert "<script" not in markdown and "probs\\|x" in markdown
    assert all(line in markdown for line in report["verdict"].splitlines()[1:])  # the bullets, as a list


def test_readme_quotes_the_published_attacks_the_verdict_cites():
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    missing = [str(anchor) for anchor in PUBLISHED_ATTACKS if str(anchor) not in readme]
    assert not missing, f"README's audit section should quote copycat_tf.audit.anchors word for word: {missing}"


def test_report_tables_show_per_class_agreement_and_kappa_and_read_old_rows(tmp_path):
    report = _report()
    report["verdict"] = verdict(report)
    files = write_audit_report(report, tmp_path)
    row = next(r for r in json.loads(files["json"].read_text())["results"]
               if (r["queries"], r["defence"]) == (5000, "top1"))
    assert (row["per_class_agreement"], row["kappa"]) == pytest.approx((0.8, 0.75))
    markdown = files["markdown"].read_text()
    assert "| queries | defence | performance ratio | agreement | per-class agreement | kappa |" in markdown
    assert "| 5,000 | top1 | 90.0% | 85.0% | 80.0% | 0.75 |" in markdown
    assert "scores 1 / classes and 0 on them" in markdown
    page = files["html"].read_text()
    assert "<th>per-class agreement</th><th>kappa</th>" in page and "<td class=n>0.75</td>" in page
    # audit.json rows written before these figures: read as None, shown as n/a.
    old = [{k: v for k, v in r.items() if k not in ("per_class_agreement", "kappa")} for r in report["results"]]
    assert {(AuditRow.from_json(r).per_class_agreement, AuditRow.from_json(r).kappa) for r in old} == {(None, None)}
    old_report = {**report, "results": old}
    old_report["verdict"] = verdict(old_report)
    assert "per-class agreement is" not in old_report["verdict"]
    assert "| 5,000 | top1 | 90.0% | 85.0% | n/a | n/a |" in _markdown_of(old_report, tmp_path / "old")


def _markdown_of(report, out):
    return write_audit_report(report, out)["markdown"].read_text()


def test_report_says_grayscale_for_one_channel_and_never_none(tmp_path):
    report = _report(model={"producer": "tf2onnx 1.17.0 None", "parameters": None, "metadata": {}},
                     strategy=None, arch=None)
    report["contract"]["input"]["shape"] = [None, 28, 28, 1]  # dynamic batch: shown, but not as None
    report["contract"]["preprocessing"] = {"mean": [0.0], "std": [255.0], "channel_order": "rgb"}
    report["results"][0]["performance_ratio"] = None  # a cell that could not be scored
    report["verdict"] = verdict(report)
    files = write_audit_report(report, tmp_path)
    for page in (files["markdown"].read_text(), files["html"].read_text()):
        assert "None" not in page
        assert "tf2onnx 1.17.0" in page and "255.0], grayscale" in page and "rgb" not in page
    colour = _report()
    colour["contract"]["input"]["shape"] = [None, 8, 8, 3]
    colour["verdict"] = verdict(colour)
    assert "255.0], rgb" in write_audit_report(colour, tmp_path / "colour")["markdown"].read_text()


# ------------------------------------------------------------------- end to end, CLI


@pytest.fixture(scope="module")
def audited(digits_target, digits_queries, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    args = ("audit", digits_target.path, "--queries", digits_queries, "--budgets", "200,100",
            "--defences", "top1,round1,misinformation,watermark", "--watermark-rate", 0.2,
            "--epochs", 1, "--test-data", "digits:test",
            "--price-per-1k", 1.5, "--out", out)
    return out, args, run_cli(*args)


def test_audit_buys_the_largest_budget_once_and_derives_the_smaller_ones(audited):
    out, _, result = audited
    assert result.returncode == 0, result.stderr
    big = FakeSet.open(out / "fakeset")
    assert (big.count, big.queries_spent, big.has_probabilities) == (200, 200, True)
    source = _records(big)
    for n in (100, 200):
        for defence in ("top1", "round1"):
            cell = FakeSet.open(out / "fakesets" / f"{n}-{defence}")
            assert cell.count == n and cell.queries_spent == n
            assert cell.has_probabilities == (defence != "top1")
            np.testing.assert_array_equal(_records(cell)["images"], source["images"][:n])
            assert (out / "copycats" / f"{n}-{defence}" / "copycat.onnx").is_file()
    for n in (100, 200):
        for defence in ("misinformation-tau0.5", "watermark-rate0.2"):
            cell = FakeSet.open(out / "fakesets" / f"{n}-{defence}")
            assert cell.count == n and not cell.has_probabilities
            changed = _records(cell)["labels"] != source["labels"][:n]
            assert 0 < changed.mean() < 0.6  # some answers falsified, most kept
    assert "audit: stage 1/11: buying 200 queries once" in result.stderr and "audit: stage 11/11" in result.stderr


def test_audit_json_holds_every_result(audited, digits_target):
    out, _, result = audited
    report = json.loads((out / "audit.json").read_text())
    assert report["sha256"] == digits_target.card["sha256"]
    assert report["contract"]["output"]["num_classes"] == 10
    assert (report["queries_spent"], report["eval_queries_spent"], report["price_per_1k"]) == (200, 0, 1.5)
    cells = {(r["queries"], r["defence"]): r for r in report["results"]}
    assert set(cells) == {(n, d) for n in (100, 200) for d in ("top1", "round1", "misinformation", "watermark")}
    for (n, _), r in cells.items():
        assert 0 <= r["agreement"] <= 1 and r["performance_ratio"] is not None
        assert 0 <= r["per_class_agreement"] <= 1 and -1 <= r["kappa"] <= 1
        assert r["target_accuracy"] > 0.8
        assert r["performance_ratio"] == pytest.approx(r["copycat_accuracy"] / r["target_accuracy"])
        assert r["cost"] == pytest.approx(n / 1000 * 1.5)
    assert cells[(200, "top1")]["top1_kept"] == 1.0
    for n in (100, 200):
        assert 0 <= cells[(n, "misinformation")]["owner_changed"] <= 1
        watermark = cells[(n, "watermark")]
        assert watermark["watermark_marks"] > 0 and 0 < watermark["watermark_p_value"] <= 1
        assert 0 < watermark["owner_changed"] < 0.5  # honest answers changed at about the 20% rate
    prada = report["detection"]["prada"]
    assert prada["delta"] == 0.9 and prada["strategy"] == "balanced" and prada["benign_source"] == "digits:test"
    assert prada["first_alarm"] is None or 0 <= prada["first_alarm"] < 200
    assert isinstance(prada["benign_alarm"], bool) and prada["streams"]["balanced"]["queries"] == 200
    assert (out / report["detection"]["plot"]).read_bytes().startswith(PNG_MAGIC)
    assert [s["tau"] for s in report["misinformation_sweep"]] == [0.3, 0.5, 0.7]
    assert result.stdout.rstrip().endswith(report["verdict"])
    assert re.match(r"(High|Medium|Low) risk \(a lower bound\): with label-only answers \(top1\), ",
                    report["verdict"])
    assert report["weights"] is None and ("- attacker simulated: copycat small_cnn, not pretrained, balanced strategy, "
                                          "queries of ") in report["verdict"]
    header = next(line for line in result.stdout.splitlines() if line.lstrip().startswith("queries  defence"))
    assert header.split() == ["queries", "defence", "ratio", "agreement", "per-class", "kappa", "cost"]
    assert "- detection: PRADA-style monitoring (alarm while Shapiro-Wilk W < delta 0.9) " in report["verdict"]
    assert "None" not in report["verdict"]
    assert (out / "audit_curve.png").read_bytes().startswith(PNG_MAGIC)
    page = (out / "audit.html").read_text()
    assert report["sha256"] in page and "http" not in page and "<script" not in page


def test_audit_rerun_buys_nothing_and_retrains_nothing(audited):
    out, args, first = audited
    states = sorted(out.glob("copycats/*/training.json"))
    stamps = {p: p.stat().st_mtime_ns for p in states + sorted(out.glob("cells/*.json"))}
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert FakeSet.open(out / "fakeset").queries_spent == 200
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert "copycat epoch" not in again.stderr
    assert again.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]


def test_audit_rescores_a_cell_whose_file_is_broken_and_keeps_the_others(audited):
    out, args, first = audited
    broken, *others = sorted(out.glob("cells/*.json"))
    broken.write_text("[" * 100_000 + "]" * 100_000)  # would exhaust the JSON parser's recursion
    stamps = {p: p.stat().st_mtime_ns for p in others}
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert json.loads(broken.read_text())["format"] == "copycat-tf.audit-cell"
    assert {p: p.stat().st_mtime_ns for p in others} == stamps
    assert "copycat epoch" not in again.stderr  # scoring again needs no training
    assert again.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]


def test_audit_html_renders_in_headless_chromium(audited, tmp_path):
    out, _, _ = audited
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, ("the audit report's browser check needs Chromium: "
                      "apt-get install -y --no-install-recommends chromium")
    dom = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
         "--dump-dom", (out / "audit.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout
    report = json.loads((out / "audit.json").read_text())
    assert all(html.escape(line.removeprefix("- "), quote=False) in dom for line in report["verdict"].splitlines())
    assert 'id="verdict"' in dom and 'id="detection"' in dom and dom.count("data:image/png;base64,") == 2


def test_audit_without_test_data_scores_agreement_on_fresh_queries(tmp_path):
    from copycat_tf.audit import AuditPlan, audit
    from copycat_tf.training import TrainConfig

    target = tmp_path / "vendor.onnx"
    make_linear_classifier(target, image_shape=(8, 8, 1), num_classes=3, metadata={"note": HOSTILE})
    result = audit(target, ["noise:uniform"], tmp_path / "run", plan=AuditPlan(budgets="80", defences="top1",
                   eval_queries=40), strategy="paper", train_config=TrainConfig(epochs=1))
    report = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert (report["queries_spent"], report["eval_queries_spent"], report["metric"]) == (80, 40, "agreement")
    (cell,) = report["results"]
    assert cell["performance_ratio"] is None and 0 <= cell["agreement"] <= 1 and cell["cost"] is None
    assert 0 <= cell["per_class_agreement"] <= 1 and "kappa" in cell
    eval_set = FakeSet.open(next((tmp_path / "run" / "eval").iterdir()))
    attack = _records(FakeSet.open(tmp_path / "run" / "fakeset"))
    assert not set(_records(eval_set)["keys"]) & set(attack["keys"])  # fresh images only
    page = result.files["html"].read_text()
    assert html.escape(HOSTILE) in page and "<script" not in page


def test_audit_cli_bad_inputs(tmp_path):
    target = tmp_path / "t.onnx"
    make_linear_classifier(target, image_shape=(8, 8, 1), num_classes=3)
    base = ("audit", target, "--queries", "noise:uniform", "--out", tmp_path / "r")
    run_cli(*base, "--budgets", "1000,x").assert_clean_error("budgets must be whole numbers >= 1, e.g. 1000,5000")
    run_cli(*base, "--budgets", "0").assert_clean_error("budgets must be whole numbers")
    run_cli(*base, "--defences", "none,blur").assert_clean_error("unknown defence 'blur'", "reverse-sigmoid")
    run_cli(*base, "--price-per-1k", "-1").assert_clean_error("price-per-1k")
    assert not (tmp_path / "r").exists()
