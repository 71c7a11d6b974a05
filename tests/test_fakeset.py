"""The fake dataset: labeling, the manifest, reading back, resuming and refusing."""

import errno
import json

import numpy as np
import pytest
from onnx_factory import linear_weights, reference_logits

import copycat_tf.fakeset.writer as fakeset_writer
from copycat_tf.errors import CopycatError
from copycat_tf.execution import Execution
from copycat_tf.fakeset import FakeSet, Manifest, label
from copycat_tf.files import file_sha256
from copycat_tf.oracle import OnnxOracle
from copycat_tf.queries import open_query_source


def records(fakeset, with_probabilities=False):
    """All records of a fake dataset, concatenated."""
    shards = list(fakeset.iter_shards(with_probabilities=with_probabilities))
    return {name: np.concatenate([s[name] for s in shards]) for name in shards[0]}


def assert_same_records(a, b):
    first, second = records(a, a.has_probabilities), records(b, b.has_probabilities)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


class Interrupt:
    """A progress callback that presses Ctrl-C after ``after`` reports."""

    def __init__(self, after):
        self.after, self.calls = after, 0

    def __call__(self, progress):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt


def test_hard_labels_are_the_oracles_answers(query_target, tmp_path):
    target = query_target((8, 8, 3), 4)
    oracle = OnnxOracle(target)
    fakeset = label(oracle, ["noise:uniform"], 300, tmp_path / "fake", seed=3, batch_size=32,
                    shard_size=128)
    data = records(fakeset)
    assert fakeset.count == 300 and fakeset.complete and oracle.queries_spent == 300
    assert [p.name for p in fakeset.shard_paths] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    weights, bias = linear_weights((8, 8, 3), 4)
    np.testing.assert_array_equal(data["labels"], reference_logits(data["images"], weights, bias).argmax(1))
    assert data["images"].dtype == np.uint8 and data["labels"].dtype == np.int64
    assert data["keys"].tolist() == [str(i) for i in range(300)]
    assert (data["sources"] == 0).all() and data["index"].tolist() == list(range(300))
    assert fakeset.label_histogram == np.bincount(data["labels"], minlength=4).tolist()
    stream = open_query_source("noise:uniform", (8, 8, 3), seed=3).queries()
    np.testing.assert_array_equal(data["images"], np.stack([next(stream).image for _ in range(300)]))
    stream.close()
    assert not fakeset.has_probabilities


def test_soft_labels_keep_probabilities(query_target, tmp_path):
    fakeset = label(OnnxOracle(query_target()), "noise:gaussian", 100, tmp_path / "fake",
                    labels="soft", shard_size=64)
    data = records(fakeset, with_probabilities=True)
    assert fakeset.has_probabilities and data["probabilities"].dtype == np.float32
    np.testing.assert_allclose(data["probabilities"].sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(data["probabilities"].argmax(1), data["labels"])


def test_manifest_contents(query_target, query_folder, tmp_path):
    folder, keys = query_folder
    target = query_target()
    oracle = OnnxOracle(target)
    fakeset = label(oracle, [str(folder), "noise:uniform:0.25"], 40, tmp_path / "fake", seed=9,
                    shard_size=16, batch_size=8)
    manifest = json.loads((tmp_path / "fake" / "manifest.json").read_text())
    assert manifest["format"] == "copycat-tf.fakeset" and manifest["format_version"] == 1
    assert manifest["oracle"] == {"sha256": file_sha256(target), "contract": oracle.contract.to_dict()}
    config = manifest["config"]
    assert config["seed"] == 9 and config["labels"] == "hard" and config["resize"] == "resize"
    assert config["shard_size"] == 16 and config["image_shape"] == [16, 16, 3]
    assert [s["spec"] for s in config["sources"]] == [str(folder), "noise:uniform:0.25"]
    assert [s["weight"] for s in config["sources"]] == [0.75, 0.25]
    assert config["sources"][0]["size"] == len(keys) and config["sources"][1]["size"] is None
    assert manifest["count"] == 40 and manifest["budget"] == 40 and manifest["complete"]
    assert manifest["queries_spent"] == 40 and manifest["rejected"] == 0
    assert sum(manifest["label_histogram"]) == 40 and len(manifest["label_histogram"]) == 5
    assert sum(manifest["source_counts"]) == 40 and manifest["source_counts"][0] == len(keys)
    assert [s["count"] for s in manifest["shards"]] == [16, 16, 8]
    for shard in manifest["shards"]:
        assert shard["sha256"] == file_sha256(tmp_path / "fake" / shard["file"])
    # the typed record other modules read: the same figures, and the file's object back
    record = fakeset.record
    assert record.to_json() == manifest and Manifest.from_json(manifest) == record
    assert (record.count, record.next_item, record.labels, fakeset.exhausted) == (40, manifest["next_item"], "hard", False)
    assert fakeset.shard_sha256s == [s["sha256"] for s in manifest["shards"]]
    fakeset.verify()
    summary = fakeset.summary()
    assert summary["count"] == 40 and summary["rejected"] == 0 and summary["queries_spent"] == 40
    assert summary["label_histogram"][summary["dominant_class"]] / 40 == summary["dominant_share"]


def test_hard_set_refuses_probabilities(query_target, tmp_path):
    fakeset = label(OnnxOracle(query_target()), "noise:uniform", 10, tmp_path / "fake")
    with pytest.raises(CopycatError, match="--labels soft"):
        next(fakeset.iter_shards(with_probabilities=True))


def test_open_rejects_missing_malformed_and_tampered_sets(query_target, tmp_path):
    with pytest.raises(CopycatError, match="no such folder"):
        FakeSet.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CopycatError, match="no manifest.json"):
        FakeSet.open(tmp_path / "empty")
    out = tmp_path / "fake"
    label(OnnxOracle(query_target()), "noise:uniform", 20, out, shard_size=8)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"][0]["file"] = "../elsewhere/shard-00000.npz"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CopycatError, match="not a plain shard name"):
        FakeSet.open(out)
    manifest_path.write_text("{ not json")
    with pytest.raises(CopycatError, match="unreadable"):
        FakeSet.open(out)


def test_verify_catches_a_modified_shard(query_target, tmp_path):
    out = tmp_path / "fake"
    label(OnnxOracle(query_target()), "noise:uniform", 20, out, shard_size=8)
    shard = out / "shard-00001.npz"
    data = bytearray(shard.read_bytes())
    data[-200] ^= 0xFF
    shard.write_bytes(bytes(data))
    fakeset = FakeSet.open(out)
    with pytest.raises(CopycatError, match="shard-00001.npz does not match its sha256"):
        fakeset.verify()
    with pytest.raises(CopycatError, match="does not match"):
        list(fakeset.iter_shards())


def test_rejected_files_are_listed_counted_and_never_sent(query_target, query_folder,
                                                          bad_query_files, tmp_path):
    folder, keys = query_folder
    bad = bad_query_files(folder)
    oracle = OnnxOracle(query_target())
    fakeset = label(oracle, str(folder), 1000, tmp_path / "fake", shard_size=4)
    assert fakeset.count == len(keys) and oracle.queries_spent == len(keys)
    assert fakeset.complete and fakeset.manifest["exhausted"]
    assert sorted(records(fakeset)["keys"].tolist()) == keys
    lines = (tmp_path / "fake" / "rejected.tsv").read_text().splitlines()
    assert lines[0] == "source\tkey\treason"
    rows = {key: (source, reason) for source, key, reason in (line.split("\t") for line in lines[1:])}
    assert set(rows) == set(bad)
    assert all(source == str(folder) and bad[key] in reason for key, (source, reason) in rows.items())
    assert fakeset.rejected == len(bad) == fakeset.summary()["rejected"]


def test_interrupted_run_resumes_to_the_same_records(query_target, query_folder, bad_query_files, tmp_path):
    folder, _ = query_folder
    bad_query_files(folder)
    specs = [str(folder), "noise:uniform:0.5"]
    target = query_target()
    whole = label(OnnxOracle(target), specs, 90, tmp_path / "whole", shard_size=16, batch_size=4)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        label(OnnxOracle(target), specs, 90, out, shard_size=16, batch_size=4, execution=Execution(label_progress=Interrupt(10)))
    assert FakeSet.open(out).count == 32
    resumed = label(OnnxOracle(target), specs, 90, out, shard_size=16, batch_size=4)
    assert_same_records(whole, resumed)
    assert resumed.manifest["shards"] == whole.manifest["shards"]
    assert (out / "rejected.tsv").read_text() == (tmp_path / "whole" / "rejected.tsv").read_text()
    assert resumed.queries_spent == 90  # the unfinished shard's answers were kept from the journal
    assert resumed.summary()["rebought"] == 0



def test_a_torn_journal_entry_is_cut_off_and_an_entry_already_in_a_shard_is_skipped(query_target, tmp_path):
    target = query_target()
    whole = label(OnnxOracle(target), ["noise:uniform"], 40, tmp_path / "whole", shard_size=16, batch_size=4)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        label(OnnxOracle(target), ["noise:uniform"], 40, out, shard_size=16, batch_size=4, execution=Execution(label_progress=Interrupt(6)))
    journal = out / "answers.journal"
    entries = journal.read_bytes()
    assert FakeSet.open(out).count == 16 and entries  # one shard saved, the next one's answers journaled
    # a kill in the middle of writing an entry leaves half of it: that half is dropped
    journal.write_bytes(entries + entries[: len(entries) // 3])
    resumed = label(OnnxOracle(target), ["noise:uniform"], 40, out, shard_size=16, batch_size=4)
    assert_same_records(whole, resumed)
    assert resumed.queries_spent == 40 and journal.read_bytes() == b""
    # a journal that outlived its shard's commit (killed in between) adds nothing twice
    journal.write_bytes(entries)
    again = label(OnnxOracle(target), ["noise:uniform"], 40, out, shard_size=16, batch_size=4)
    assert_same_records(whole, again) and again.count == 40

def test_larger_budget_extends_and_smaller_reports_complete(query_target, tmp_path):
    target = query_target()
    whole = label(OnnxOracle(target), "noise:uniform", 100, tmp_path / "whole", shard_size=32)
    out = tmp_path / "grown"
    first = label(OnnxOracle(target), "noise:uniform", 50, out, shard_size=32)
    assert first.count == 50 and first.complete
    grown = label(OnnxOracle(target), "noise:uniform", 100, out, shard_size=32)
    assert grown.count == 100 and grown.complete and grown.queries_spent == 100
    assert_same_records(whole, grown)
    oracle = OnnxOracle(target)
    again = label(oracle, "noise:uniform", 60, out, shard_size=32)
    assert again.count == 100 and again.complete and oracle.queries_spent == 0


def test_disk_full_stops_cleanly_and_resumes(query_target, tmp_path, monkeypatch):
    target = query_target()
    whole = label(OnnxOracle(target), "noise:uniform", 64, tmp_path / "whole", shard_size=16)
    real_write = fakeset_writer._write_npz
    writes = []

    def fill_disk(handle, arrays):
        writes.append(1)
        if len(writes) == 3:
            handle.write(b"partial bytes")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(handle, arrays)

    monkeypatch.setattr(fakeset_writer, "_write_npz", fill_disk)
    out = tmp_path / "full"
    with pytest.raises(CopycatError, match="disk full .* rerun the same command to resume"):
        label(OnnxOracle(target), "noise:uniform", 64, out, shard_size=16)
    assert sorted(p.name for p in out.iterdir()) == ["answers.journal", "manifest.json", "queries.log",
                                                     "shard-00000.npz", "shard-00001.npz"]
    stopped = FakeSet.open(out)
    assert stopped.count == 32 and not stopped.complete
    stopped.verify()
    monkeypatch.setattr(fakeset_writer, "_write_npz", real_write)
    resumed = label(OnnxOracle(target), "noise:uniform", 64, out, shard_size=16)
    assert_same_records(whole, resumed)
    assert resumed.queries_spent == 64  # the shard the full disk refused was kept in the journal


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"target_seed": 1}, "another oracle"),
        ({"seed": 1}, "seed 0 vs now 1"),
        ({"labels": "soft"}, "labels 'hard' vs now 'soft'"),
        ({"specs": ["noise:gaussian"]}, "query sources ['noise:uniform'] vs now ['noise:gaussian']"),
        ({"shard_size": 8}, "shard_size 16 vs now 8"),
    ],
)
def test_incompatible_resume_is_refused(query_target, tmp_path, change, fragment):
    out = tmp_path / "fake"
    label(OnnxOracle(query_target()), ["noise:uniform"], 20, out, shard_size=16)
    oracle = OnnxOracle(query_target(seed=change.get("target_seed", 0)))
    with pytest.raises(CopycatError) as error:
        label(oracle, change.get("specs", ["noise:uniform"]), 40, out, seed=change.get("seed", 0),
              labels=change.get("labels", "hard"), shard_size=change.get("shard_size", 16))
    assert fragment in str(error.value) and "--overwrite" in str(error.value)
    assert oracle.queries_spent == 0


def test_changed_query_folder_is_refused(query_target, query_folder, tmp_path):
    folder, _ = query_folder
    out = tmp_path / "fake"
    label(OnnxOracle(query_target()), str(folder), 5, out, shard_size=4)
    (folder / "a.jpg").rename(folder / "renamed.jpg")
    with pytest.raises(CopycatError, match="contents of query source"):
        label(OnnxOracle(query_target()), str(folder), 10, out, shard_size=4)


def test_overwrite_replaces_only_its_own_files(query_target, tmp_path):
    out = tmp_path / "fake"
    label(OnnxOracle(query_target()), "noise:uniform", 20, out, shard_size=8)
    (out / "notes.md").write_text("mine")
    fakeset = label(OnnxOracle(query_target(seed=1)), "noise:gaussian", 10, out, shard_size=8, execution=Execution(overwrite=True))
    assert fakeset.count == 10 and fakeset.manifest["config"]["sources"][0]["spec"] == "noise:gaussian"
    assert sorted(p.name for p in out.iterdir()) == ["answers.journal", "manifest.json", "notes.md", "queries.log",
                                                     "shard-00000.npz", "shard-00001.npz"]
    assert (out / "notes.md").read_text() == "mine"


def test_output_folder_checks(query_target, query_folder, tmp_path):
    folder, _ = query_folder
    oracle = OnnxOracle(query_target())
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CopycatError, match="is a file"):
        label(oracle, "noise:uniform", 10, tmp_path / "a-file")
    with pytest.raises(CopycatError, match="inside the query folder"):
        label(oracle, str(folder), 10, folder / "n01" / "fake")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "other.txt").write_text("x")
    with pytest.raises(CopycatError, match=r"not empty \(other.txt\) and holds no fake dataset"):
        label(oracle, "noise:uniform", 10, tmp_path / "busy")
    assert oracle.queries_spent == 0


@pytest.mark.parametrize("kwargs", [{"budget": 0}, {"budget": -5}, {"batch_size": 0}, {"shard_size": 0},
                                    {"labels": "fuzzy"}])
def test_bad_arguments(query_target, tmp_path, kwargs):
    arguments = {"budget": 10, **kwargs}
    budget = arguments.pop("budget")
    with pytest.raises(CopycatError):
        label(OnnxOracle(query_target()), "noise:uniform", budget, tmp_path / "fake", **arguments)
    assert not (tmp_path / "fake").exists()


def test_a_stricter_oracle_budget_is_respected(query_target, tmp_path):
    oracle = OnnxOracle(query_target(), budget=50)
    fakeset = label(oracle, "noise:uniform", 200, tmp_path / "fake", shard_size=16, batch_size=12)
    assert fakeset.count == 50 and not fakeset.complete
    assert oracle.queries_spent == 50 and oracle.budget == 50
