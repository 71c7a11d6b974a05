"""One folder rule for every command: new, empty or ours with the same arguments, else refused;
``overwrite`` deletes only copycat-tf's own files."""

import pytest
from onnx_factory import make_linear_classifier

from copycat_tf.errors import CopycatError
from copycat_tf.files import OutputFolder
from copycat_tf.execution import Execution
from copycat_tf.oracle import TargetSpec
from copycat_tf.pipeline import steal
from copycat_tf.training import TrainConfig


def test_output_folder_claims_new_empty_and_own_folders_and_refuses_foreign_ones(tmp_path):
    folder = OutputFolder(tmp_path / "run", "report", files=("report.json",), patterns=(r"shard-\d+\.npz",),
                          folders=("logs",))
    folder.claim(overwrite=False)
    for name in ("report.json", "shard-00001.npz", "report.json.tmp"):
        (folder.path / name).write_text("x")
    (folder.path / "logs").mkdir()
    folder.claim(overwrite=False)  # only our own files there
    (folder.path / "notes.txt").write_text("the user's")
    with pytest.raises(CopycatError, match=r"not empty \(notes.txt\) and holds no report; .*--overwrite"):
        folder.claim(overwrite=False)
    folder.claim(overwrite=False, holds_run=True)
    folder.claim(overwrite=True)
    assert sorted(p.name for p in folder.path.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(CopycatError, match="is a file; give a folder for the report"):
        OutputFolder(tmp_path / "file", "report").claim(overwrite=True)


def _steal(target, out, budget=64, **execution):
    return steal(TargetSpec(target, price_per_1k=2.5), ["noise:uniform"], out, budget=budget, strategy="paper",
                 train_config=TrainConfig(epochs=1, seed=0), execution=Execution(**execution))


def test_steal_resumes_only_its_own_run_and_overwrite_starts_again(tmp_path):
    target = tmp_path / "target.onnx"
    make_linear_classifier(target, image_shape=(12, 12, 1))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(CopycatError, match=r"not empty \(holiday.jpg\) and holds no steal run"):
        _steal(target, busy)

    out = tmp_path / "run"
    reports = []
    first = _steal(target, out, label_progress=reports.append)
    assert first.run["budget"] == 64 and first.run["target"]["sha256"] == first.fakeset.oracle_sha256
    assert reports[-1].queries_spent == 64 and reports[-1].cost == pytest.approx(64 * 2.5 / 1000)
    assert reports[-1].retries == 0 and first.run["price_per_1k"] == 2.5
    assert _steal(target, out).copycat.already_trained  # same arguments: resumed, nothing redone
    with pytest.raises(CopycatError, match="other arguments .*budget 64 vs now 96.*--overwrite"):
        _steal(target, out, budget=96)
    again = _steal(target, out, budget=96, overwrite=True)
    assert again.fakeset.count == 96 and not again.copycat.already_trained
    with pytest.raises(CopycatError, match="other arguments .*seed 0 vs now 3"):
        steal(TargetSpec(target, price_per_1k=2.5), ["noise:uniform"], out, budget=96, strategy="paper",
              train_config=TrainConfig(epochs=1, seed=3))
