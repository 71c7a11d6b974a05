"""Progress widgets shared by commands: bars on stderr that never glue onto log lines."""

from __future__ import annotations

import contextlib

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

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
        self._logging = contextlib.ExitStack()

    def __enter__(self) -> LabelProgressBar:
        self._logging.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
        self._logging.close()

    def __call__(self, progress):
        if self.bar is None:
            # smoothing=0: the rate (and so the ETA) is the average over the whole stage, pauses
            # included: the balanced strategy trains a scout between rounds of buying, which a
            # recent-rate estimate would leave out (it showed 21 s for 4 minutes of work).
            self.bar = tqdm(total=progress.budget, initial=progress.labeled, unit="img", smoothing=0,
                            desc=self.desc, dynamic_ncols=True, disable=True if QUIET else None)
        self.bar.update(progress.labeled - self.bar.n)
        extra = {"retries": progress.retries} if progress.retries else {}
        if progress.cost is not None:
            extra["spent"] = f"{progress.cost:,.2f}"
        self.bar.set_postfix(rejected=progress.rejected, **extra, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StageBars(LabelProgressBar):
    """One labeling bar per buying stage of a multi-stage run, closed when the next stage starts."""

    def stage(self, number, total, what):
        self.close()
