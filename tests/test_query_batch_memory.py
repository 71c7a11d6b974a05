"""Query batches are sized by the target's input: small inputs get large batches, large ones small."""

import numpy as np
import pytest
from test_fakeset import assert_same_records

from copycat_tf.evaluation import evaluate
from copycat_tf.execution import Execution
from copycat_tf.datasets import LabelledImages
from copycat_tf.fakeset import label
from copycat_tf.oracle import OnnxOracle
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.queries.batch_memory import (
    MAX_QUERY_BATCH,
    METERED_QUERY_BATCH,
    QUERY_BATCH_VALUES,
    query_batch_size,
)


@pytest.mark.parametrize("shape, batch", [((28, 28, 1), 1024), ((32, 32, 3), 512), ((64, 64, 3), 128),
                                          ((128, 128, 3), 32), ((224, 224, 3), 8), ((240, 240, 3), 8),
                                          ((4096, 4096, 3), 1)])
def test_the_batch_is_the_largest_power_of_two_that_fits_the_bound(shape, batch):
    assert query_batch_size(shape) == batch
    values = int(np.prod(shape))
    assert batch == 1 or batch * values <= QUERY_BATCH_VALUES
    assert batch == MAX_QUERY_BATCH or 2 * batch * values > QUERY_BATCH_VALUES


def test_a_given_batch_size_wins_however_large_the_input():
    assert query_batch_size((240, 240, 3), given=64) == 64
    assert query_batch_size((28, 28, 1), given=3, metered=True) == 3
    assert QuerySpec(("photos",), batch_size=64).batch_size_for((240, 240, 3)) == 64
    assert QuerySpec(("photos",)).batch_size_for((240, 240, 3)) == 8


def test_a_paid_target_keeps_its_small_batch_for_small_inputs_only():
    assert query_batch_size((28, 28, 1), metered=True) == METERED_QUERY_BATCH
    assert query_batch_size((240, 240, 3), metered=True) == 8


class Batches:
    """A label progress callback counting the batches sent (one report per batch, plus two)."""

    def __init__(self):
        self.reports = 0

    def __call__(self, progress):
        self.reports += 1

    @property
    def sent(self):
        return self.reports - 2


def test_a_larger_input_target_is_labeled_in_smaller_batches_into_the_same_records(query_target, query_folder,
                                                                                   tmp_path):
    target = query_target((128, 128, 3), 4)  # 49,152 values an image: 32 images a call
    folder = query_folder[0]
    for number in range(3):  # rejected between accepted ones, inside batches
        (folder / f"broken-{number}.jpg").write_bytes(b"not a JPEG")
    specs = [str(folder), "noise:uniform:0.5"]
    runs = {}
    for name, batch_size in (("sized", None), ("old default", 64), ("odd", 5)):
        batches = Batches()
        runs[name] = label(OnnxOracle(target), QuerySpec(tuple(specs), batch_size=batch_size), 100,
                           tmp_path / name, seed=4, shard_size=64, execution=Execution(label_progress=batches))
        runs[name, "batches"] = batches.sent
    assert runs["sized", "batches"] == 4 and runs["old default", "batches"] == 2  # 32+32 | 32+4; 64 | 36
    assert runs["odd", "batches"] == 13 + 8  # 64 in 5s (13 calls), then 36 (8 calls)
    assert runs["sized"].count == 100 and runs["sized"].rejected > 0
    assert_same_records(runs["sized"], runs["old default"])
    assert_same_records(runs["sized"], runs["odd"])


def test_evaluation_sizes_its_batches_too(query_target):
    target = OnnxOracle(query_target((128, 128, 3), 4))
    images = np.random.default_rng(0).integers(0, 256, (70, 128, 128, 3), dtype=np.uint8)
    seen = []
    evaluate(target, OnnxOracle(query_target((128, 128, 3), 4)), LabelledImages(images, None, None, "noise"),
             progress=lambda done, total: seen.append(done))
    assert seen == [32, 64, 70]
