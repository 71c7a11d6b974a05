"""``paper``: the Copycat CNN papers' single pass (and ART's ``CopycatCNN``).

The whole budget goes to the query source's images as they come, in stream order, so any
prefix of the fake dataset is itself an attack of that many queries.
"""

from __future__ import annotations

from copycat_tf.execution import Execution
from copycat_tf.fakeset import label
from copycat_tf.strategies.base import Collection, Strategy, register


@register
class PaperStrategy(Strategy):
    """Query the images as they come, once each.

    Usage::

        collection = PaperStrategy().collect(oracle, QuerySpec(("./imagenet",)), 10_000,
                                             "runs/paper", config=TrainConfig())
    """

    name = "paper"
    copycat_balance = "none"

    def collect(self, oracle, queries, budget, out_dir, *, config, execution=None) -> Collection:
        execution = execution or Execution()
        source = queries.open(oracle.contract.image_shape, config.seed)
        # The run's overwrite was the caller's to apply; here the folder is only resumed.
        fakeset = label(oracle, source, budget, out_dir, labels=config.labels, batch_size=queries.batch_size,
                        execution=Execution(engine=execution.engine, label_progress=execution.label_progress))
        return Collection(fakeset)
