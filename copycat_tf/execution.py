"""How a run executes, never what it computes: a run started one way resumes another.

Example:

>>> Execution().engine, Execution(overwrite=True).overwrite
('local', True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


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
    """

    overwrite: bool = False
    # A RayEngine, unnamed here: this module sits below the fake dataset that defines it.
    engine: object = "local"
    devices: int | str | None = None
    fit_verbose: int = 0
    label_progress: Callable[[object], None] | None = None
    evaluation_progress: Callable[[int, int], None] | None = None
    on_stage: Callable[[int, int, str], None] | None = None
