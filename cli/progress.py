"""Progress widgets shared by commands: bars on stderr that never glue onto log lines."""

from __future__ import annotations

from tqdm import tqdm


class LabelProgressBar:
    """A tqdm bar on stderr, opened at the first report so a resumed run starts where it stands.

    Called with each :class:`~copycat_tf.fakeset.LabelProgress` of a labeling run.
    """
    def __init__(self, desc: str = "labeling"):
        self.desc = desc
        self.bar = None

    def __call__(self, progress):
        if self.bar is None:
            self.bar = tqdm(total=progress.budget, initial=progress.labeled, unit="img",
                            desc=self.desc, dynamic_ncols=True, disable=None)
        self.bar.update(progress.labeled - self.bar.n)
        self.bar.set_postfix(rejected=progress.rejected, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StageBars(LabelProgressBar):
    """One labeling bar per buying stage of a multi-stage run, closed when the next stage starts."""

    def stage(self, number, total, what):
        self.close()
