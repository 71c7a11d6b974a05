"""The interface every query strategy implements, and the registry that names them.

A strategy decides which images the budget is spent on and in what order. It fills a fake
dataset (:mod:`copycat_tf.fakeset`) and may leave a model the copycat should start from
(an adaptive strategy's last scout). Adding a strategy is one file with a subclass of
:class:`Strategy` registered under its name, plus a test.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from copycat_tf.errors import CopycatError
from copycat_tf.execution import Execution
from copycat_tf.fakeset import FakeSet
from copycat_tf.oracle import Oracle
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.training import TrainConfig

#: Strategy classes by name (:func:`register` fills it).
REGISTRY: dict[str, type[Strategy]] = {}
DEFAULT_STRATEGY = "balanced"


@dataclass(frozen=True)
class Collection:
    """What a strategy bought.

    Attributes:
        fakeset: the :class:`~copycat_tf.fakeset.FakeSet` of the oracle's answers.
        start_model: a ``.keras`` model the copycat should start from (an adaptive
            strategy's last scout), or ``None`` for fresh weights.
    """

    fakeset: FakeSet
    start_model: Path | None = None


class Strategy(ABC):
    """How a query budget is spent.

    Subclasses set :attr:`name` and :attr:`copycat_balance`, check their own parameters in
    ``__init__`` and implement :meth:`collect`.
    """

    #: The registry name (``--strategy``).
    name: ClassVar[str]
    #: The copycat's class balancing that suits this strategy's fake datasets.
    copycat_balance: ClassVar[str] = "none"

    @abstractmethod
    def collect(self, oracle: Oracle, queries: QuerySpec, budget: int, out_dir: str | os.PathLike, *,
                config: TrainConfig, execution: Execution | None = None) -> Collection:
        """Spend ``budget`` queries on ``oracle``; return what was bought.

        Args:
            oracle: the target.
            queries: the query images (:class:`~copycat_tf.queries.QuerySpec`).
            budget: records wanted.
            out_dir: the fake dataset's folder; rerun with the same arguments to resume.
            config: the run's :class:`~copycat_tf.training.TrainConfig`: its ``labels``
                are what the fake dataset keeps, its ``seed`` seeds every choice, and any
                model the strategy trains trains under it.
            execution: :class:`~copycat_tf.execution.Execution`: where labeling runs
                (``engine``), the devices models train on, and whom to tell how buying goes
                (``label_progress``, and ``step_progress`` for any other work, such as
                training a scout, so that each step is measured on its own).
        """

    def to_record(self) -> dict:
        """What a run records about its strategy (its name and any parameter given)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` reachable by its :attr:`~Strategy.name`."""
    REGISTRY[cls.name] = cls
    return cls


def strategy_named(name: str | Strategy) -> Strategy:
    """The strategy called ``name`` with its default parameters (a :class:`Strategy` is returned as is).

    Raises:
        CopycatError: no strategy has that name.
    """
    if isinstance(name, Strategy):
        return name
    if name not in REGISTRY:
        raise CopycatError(f"strategy must be one of {', '.join(sorted(REGISTRY))}; received {name!r}")
    return REGISTRY[name]()
