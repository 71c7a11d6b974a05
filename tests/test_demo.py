"""`demo` reruns: what a changed argument affects is redone, and only that."""

import pytest

from copycat_tf.errors import CopycatError
from copycat_tf.execution import Execution
from copycat_tf.files import read_json
from copycat_tf.pipeline import demo
from copycat_tf.training import TrainConfig

#: The smallest demo that still trains a target and steals it (about a minute on 2 CPU cores).
TINY = {"target_epochs": 1, "train_config": TrainConfig(epochs=1, balance="sqrt-weights")}


@pytest.mark.slow
def test_demo_overwrite_after_a_budget_change_keeps_the_target_and_steals_again(tmp_path):
    out = tmp_path / "demo"
    stages = []
    first = demo(out, budget=200, **TINY, execution=Execution(on_stage=lambda *stage: stages.append(stage)))
    assert stages[0] == (1, 4, "training a Fashion-MNIST target (small_cnn, 1 epoch)")
    assert [stage[:2] for stage in stages] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    target = out / "target.onnx"
    card, written = read_json(out / "target.json"), target.stat().st_mtime_ns

    with pytest.raises(CopycatError, match=r"epochs 1, not 2 \(--target-epochs\); pass --overwrite"):
        demo(out, budget=200, **{**TINY, "target_epochs": 2})

    stages.clear()
    second = demo(out, budget=300, **TINY,
                  execution=Execution(overwrite=True, on_stage=lambda *stage: stages.append(stage)))
    assert stages[0] == (1, 4, f"reusing the target in {target} (trained with the same settings)")
    assert target.stat().st_mtime_ns == written and read_json(out / "target.json") == card
    assert (first.fakeset.count, second.fakeset.count) == (200, 300)
    assert not second.copycat.already_trained and second.run["budget"] == 300
