"""Progress widgets shared by commands: bars on stderr that never glue onto log lines."""

from __future__ import annotations

import contextlib
from dataclasses import replace

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from copycat_tf.execution import Execution

#: ``copycat-tf -q``: no bars at all (else a bar shows on terminals only).
QUIET = False


class LabelProgressBar:
    """A tqdm bar on stderr for labeling, opened at the first report so a resumed run starts
    where it stands. Called with each :class:`~copycat_tf.fakeset.LabelProgress`.

    Use it as a context manager: log lines are then written above the bar instead of being
    glued onto its end, and the bar is closed however the block ends.

    Usage::

        with LabelProgressBar() as bar:
            label(oracle, sources, budget, out, execution=Execution(label_progress=bar))
    """

    def __init__(self, desc: str = "labeling"):
        self.desc = desc
        self.bar = None
        self._key = None
        self._logging = contextlib.ExitStack()

    def __enter__(self) -> LabelProgressBar:
        self._logging.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
        self._logging.close()

    def __call__(self, progress):
        bar = self._bar((self.desc, progress.budget), self.desc, progress.labeled, progress.budget, "img")
        if bar is None:
            return
        bar.update(progress.labeled - bar.n)
        extra = {"retries": progress.retries} if progress.retries else {}
        if progress.cost is not None:
            extra["spent"] = f"{progress.cost:,.2f}"
        bar.set_postfix(rejected=progress.rejected, **extra, refresh=False)
        self._close_if_done()

    def _bar(self, key, desc: str, done: int, total: int, unit: str):
        """The bar for ``key``: the open one, or (closing that) a new one starting at ``done``;
        ``None`` for a last report of the step whose bar just closed finished."""
        if self.bar is None and key == self._key and done >= total:
            return None
        if self.bar is None or key != self._key:
            self.close()
            # smoothing=0: the estimate is the average rate since the bar opened; each bar
            # counts one step's work only, so no other step's pauses stretch or shrink it.
            self.bar = tqdm(total=total, initial=done, unit=unit, smoothing=0, desc=desc, dynamic_ncols=True,
                            disable=True if QUIET else None)
            self._key = key
        return self.bar

    def _close_if_done(self):
        # A finished step's bar closes at once, so the lines that follow it print below it.
        if self.bar is not None and self.bar.n >= self.bar.total:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StageBars(LabelProgressBar):
    """One bar per step of a multi-stage run, each closed when the next step or stage starts,
    so the screen reads in order: a stage's line, its bars, the next stage's line.

    Usage::

        with StageBars() as bars:
            steal(target, queries, out, execution=bars.watching(Execution(overwrite=True)))
    """

    def watching(self, execution: Execution) -> Execution:
        """``execution`` reporting its stages, labeling, steps and evaluation to these bars."""
        return replace(execution, on_stage=self.stage, label_progress=self, step_progress=self.step,
                       evaluation_progress=self.evaluation)

    def stage(self, number, total, what):
        self.close()
        self._key = None

    def step(self, progress):
        """Called with a :class:`~copycat_tf.execution.StepProgress`."""
        bar = self._bar(("step", progress.what), progress.what, progress.done, progress.total, progress.unit)
        if bar is None:
            return
        bar.update(progress.done - bar.n)
        self._close_if_done()

    def evaluation(self, done, total):
        bar = self._bar("evaluating", "querying both models", done, total, "img")
        if bar is None:
            return
        bar.update(done - bar.n)
        self._close_if_done()
