"""How a run executes, never what it computes: a run started one way resumes another.

Example:

>>> Execution().engine, Execution(overwrite=True).overwrite
('local', True)
>>> stages = Stages(2, lambda number, total, what: print(f"[{number} of {total}] {what}"))
>>> stages("buying queries")
[1 of 2] buying queries
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepProgress:
    """Where one step of a stage stands (a scout training, candidates being scored, a copycat's
    epochs); each step reports its own work, so a progress bar's estimate is that step's alone.

    Attributes:
        what: the step, e.g. ``"training copycat"``; a new ``what`` is a new step.
        done: units done (including those of an earlier, resumed run).
        total: units the step does in all.
        unit: what a unit is (``"epoch"``, ``"img"``).
    """

    what: str
    done: int
    total: int
    unit: str


@dataclass(frozen=True)
class Execution:
    """How a run executes; none of it is part of the run's record, so a run started one way
    resumes another.

    Args:
        overwrite: delete the run's own files in its folder first and start again.
        engine: where labeling runs: ``"local"``, ``"ray"`` or a
            :class:`~copycat_tf.fakeset.ray_engine.RayEngine`.
        devices: GPUs of this machine to train on (``"all"``), see
            :func:`~copycat_tf.training.train_copycat`.
        fit_verbose: Keras ``fit`` verbosity.
        label_progress: called with a :class:`~copycat_tf.fakeset.LabelProgress` while buying.
        evaluation_progress: called as ``(done, total)`` while evaluating.
        on_stage: called as ``on_stage(k, n, what)`` when stage ``k`` of ``n`` starts.
        step_progress: called with a :class:`StepProgress` as a step inside a stage starts
            (``done`` 0, or where a resumed step stands) and as it advances.
    """

    overwrite: bool = False
    # A RayEngine, unnamed here: this module sits below the fake dataset that defines it.
    engine: object = "local"
    devices: int | str | None = None
    fit_verbose: int = 0
    label_progress: Callable[[object], None] | None = None
    evaluation_progress: Callable[[int, int], None] | None = None
    on_stage: Callable[[int, int, str], None] | None = None
    step_progress: Callable[[StepProgress], None] | None = None

    def step(self, what: str, done: int, total: int, unit: str) -> None:
        """Report a step's progress to :attr:`step_progress`, if anyone listens."""
        if self.step_progress is not None:
            self.step_progress(StepProgress(what, done, total, unit))


class Stages:
    """Announce a run's stages in order: ``on_stage(k, n, what)`` (a console closes the last
    stage's progress bar there), then one log line ``stage k/n: what``.

    Args:
        total: stages the run has.
        on_stage: :attr:`Execution.on_stage`, or ``None``.
        prefix: put before each log line (``"audit: "``).
        done: stages already announced by a caller that runs this one inside its own
            (``demo`` trains a target, then steals it).
    """

    def __init__(self, total: int, on_stage: Callable[[int, int, str], None] | None, *, prefix: str = "",
                 done: int = 0):
        self.total, self.on_stage, self.prefix, self.number = total, on_stage, prefix, done

    def __call__(self, what: str) -> None:
        self.number += 1
        # Told first: a console closes the last stage's bar before this stage's line prints.
        if self.on_stage is not None:
            self.on_stage(self.number, self.total, what)
        log.info("%sstage %d/%d: %s", self.prefix, self.number, self.total, what)
