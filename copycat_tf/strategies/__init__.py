"""How the query budget is spent: which images go to the oracle, and in what order.

Each strategy is one class behind one interface (:class:`Strategy`, ``base.py``), reachable
by name through the registry (:func:`strategy_named`):

``paper`` (``paper.py``)
    The Copycat CNN papers' single pass over the queries as they come.
``balanced`` (``balanced.py``, the default)
    Rounds of class-balanced, transformed queries chosen by scout copycats.

Both write the same fake dataset format (:mod:`copycat_tf.fakeset`) and return a
:class:`Collection`: the fake dataset, and the model the copycat should start from.

Example:

>>> sorted(STRATEGIES)
['balanced', 'paper']
>>> strategy_named("paper").copycat_balance
'none'

Usage::

    strategy = strategy_named("balanced")
    collection = strategy.collect(OnnxOracle("target.onnx"), QuerySpec(("photos",)), 10_000,
                                  "runs/fake", config=TrainConfig(seed=1))
"""

from copycat_tf.strategies.balanced import ROUNDS_FOLDER, BalancedStrategy, choose_by_class
from copycat_tf.strategies.base import DEFAULT_STRATEGY, REGISTRY, Collection, Strategy, register, strategy_named
from copycat_tf.strategies.paper import PaperStrategy

#: The registered strategy names.
STRATEGIES = tuple(sorted(REGISTRY))

__all__ = ["DEFAULT_STRATEGY", "REGISTRY", "ROUNDS_FOLDER", "STRATEGIES", "BalancedStrategy", "Collection",
           "PaperStrategy", "Strategy", "choose_by_class", "register", "strategy_named"]
