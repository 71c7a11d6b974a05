"""A copycat run's folder and its resumable state (``training.json``)::

    DIR/training.json     config, fake dataset identities, per-epoch history, finished flag
    DIR/checkpoints/      head.keras (pretrained), main.keras, finetune.keras, semi.keras: the
                          last good epoch of each stage; semi-pseudo-labels.npz: the
                          semi-supervised stage's labels
    DIR/logs/             TensorBoard curves (when tensorboard is installed)
    DIR/copycat.keras     the final Keras model
    DIR/copycat.onnx      the exported copycat

The state file is rewritten atomically after every good epoch, after the checkpoint it
describes is on disk, so it never claims an epoch that was not saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from copycat_tf._version import __version__
from copycat_tf.errors import CopycatError
from copycat_tf.files import OutputFolder, file_sha256, read_state, write_json
from copycat_tf.training.config import TrainConfig

TRAINING_JSON = "training.json"
STATE_FORMAT = "copycat-tf.training"
STATE_VERSION = 1


# What a rerun must share with the run it resumes; epochs and learning rates may change
# (more epochs, or a lower rate after a divergence).
_RESUME_KEYS = ("arch", "batch_size", "optimizer", "labels", "balance", "augment",
                "validation_fraction", "seed", "weights", "fine_tune")



def copycat_folder(out_dir: Path) -> OutputFolder:
    """A copycat run's folder and what it owns there (the final files, checkpoints and logs)."""
    return OutputFolder(Path(out_dir), "copycat run",
                        files=(TRAINING_JSON, "copycat.keras", "copycat.onnx", "copycat.partial.keras"),
                        folders=("checkpoints", "logs"))


@dataclass(frozen=True)
class CopycatResult:
    """A trained, exported copycat.

    Attributes:
        out_dir: the run's folder.
        onnx_path: ``out_dir/copycat.onnx``.
        keras_path: ``out_dir/copycat.keras``.
        history: stage (``"main"``, ``"finetune"``) -> metric -> value per epoch.
        validation_agreement: share of held-out fake-dataset records (of the last stage)
            where the copycat agrees with the oracle; ``None`` without validation.
        max_abs_diff: largest |keras - onnx| probability difference on fake-dataset images.
        already_trained: the folder held a finished run and nothing was trained.
        model: the Keras model (read from ``keras_path`` on first use when the run was
            already finished, so a skipped run never loads TensorFlow).
    """

    out_dir: Path
    onnx_path: Path
    keras_path: Path
    history: dict[str, dict[str, list[float]]]
    validation_agreement: float | None
    max_abs_diff: float | None
    already_trained: bool = False
    _model: object = field(default=None, repr=False, compare=False)

    @property
    def model(self):
        if self._model is None:
            object.__setattr__(self, "_model", load_keras_model(self.keras_path))
        return self._model


@dataclass(frozen=True)
class TrainingStage:
    """One stage of a copycat run (``head`` for a pretrained backbone, ``main``, then
    ``finetune`` and ``semi`` when asked): the fake dataset it learns from, its epochs and
    learning rate, and the model it starts from: the stage ``after``'s last checkpoint, else
    ``initial_model``, else a new one. ``trainable`` is the part of a pretrained copycat it
    trains (:data:`~copycat_tf.models.pretrained.TRAINABLE_PARTS`; ``None``: all of a
    from-scratch one). ``unlabelled`` (an
    :class:`~copycat_tf.training.semi_supervised.Unlabelled`) makes it the semi-supervised stage."""

    name: str
    fakeset: object
    epochs: int
    learning_rate: float
    what: str  # how log lines call it
    initial_model: Path | None = None
    after: str | None = None
    trainable: str | None = None
    unlabelled: object | None = None


def load_keras_model(path: Path):
    """A saved Keras model (a checkpoint, a starting model, the final one), loaded in safe mode
    so that a file cannot run code; a missing one is a one-line error."""
    import keras

    if not path.is_file():
        raise CopycatError(
            f"{path} is missing, so the run cannot resume; rerun with --overwrite to start again"
        )
    return keras.models.load_model(path, safe_mode=True)


class TrainingRun:
    """A copycat run's folder: ``training.json`` and where checkpoints and logs go.

    The state file is rewritten (atomically) after every good epoch, after the checkpoint
    it describes is on disk, so it never claims an epoch that was not saved.
    """

    def __init__(self, out_dir: Path, state: dict):
        self.out_dir = out_dir
        self.state = state

    @classmethod
    def open(cls, out_dir: Path, config: TrainConfig, stages: list[TrainingStage], overwrite: bool) -> TrainingRun:
        folder = copycat_folder(out_dir)
        folder.check_not_file()
        if overwrite:
            folder.remove_own()
        wanted = {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "tool_version": __version__,
            "config": config.to_dict(),
            "stages": {s.name: _new_stage_state(s) for s in stages},
            "finished": False,
            "validation_agreement": None,
            "export_max_abs_diff": None,
        }
        stored = read_state(out_dir / TRAINING_JSON, STATE_FORMAT, STATE_VERSION,
                            fix="choose another output folder or rerun with --overwrite")
        if stored is None:
            folder.claim(overwrite=overwrite)
        state = wanted if stored is None else _resumed_state(out_dir, stored, wanted)
        if state["finished"] and not all((out_dir / name).is_file() for name in ("copycat.keras", "copycat.onnx")):
            state = {**state, "finished": False}  # trained, but the final files are gone: export again
        run = cls(out_dir, state)
        if not run.finished:
            (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            run.save()
        return run

    @property
    def finished(self) -> bool:
        return bool(self.state["finished"])

    @property
    def config(self) -> dict:
        return self.state["config"]

    def stage(self, name: str) -> dict:
        return self.state["stages"][name]

    def checkpoint(self, name: str) -> Path:
        return self.out_dir / "checkpoints" / f"{name}.keras"

    def begin_stage(self, name: str) -> None:
        stage = self.stage(name)
        stage["starts"].append(stage["epochs_done"])
        self.save()

    def record_epoch(self, name: str, epoch: int, logs: dict) -> None:
        stage = self.stage(name)
        stage["epochs_done"] = epoch
        for metric, value in logs.items():
            # A kill between the checkpoint and this file replays an epoch: overwrite it.
            stage["history"][metric] = stage["history"].get(metric, [])[: epoch - 1] + [value]
        self.save()

    def record_pseudo_labels(self, name: str, summary: dict) -> None:
        """Note that stage ``name``'s pseudo-labels are on disk (``summary``: their counts), so a
        resumed run reads them back instead of labelling again."""
        self.stage(name)["pseudo_labels"] = summary
        self.save()

    def finish_stage(self, name: str) -> None:
        self.stage(name)["finished"] = True
        self.save()

    def finish(self, max_abs_diff: float | None) -> None:
        last = self.state["stages"][list(self.state["stages"])[-1]]
        agreement = last["history"].get("val_agreement")
        self.state.update(
            finished=True,
            validation_agreement=agreement[-1] if agreement else None,
            export_max_abs_diff=max_abs_diff,
        )
        self.save()

    def result(self, *, model=None, already_trained: bool = False) -> CopycatResult:
        return CopycatResult(
            out_dir=self.out_dir,
            onnx_path=self.out_dir / "copycat.onnx",
            keras_path=self.out_dir / "copycat.keras",
            history={name: s["history"] for name, s in self.state["stages"].items()},
            validation_agreement=self.state["validation_agreement"],
            max_abs_diff=self.state["export_max_abs_diff"],
            already_trained=already_trained,
            _model=model,
        )

    def save(self) -> None:
        write_json(self.out_dir / TRAINING_JSON, self.state)


def _new_stage_state(stage: TrainingStage) -> dict:
    fakeset = stage.fakeset
    semi = {} if stage.unlabelled is None else {"unlabelled": stage.unlabelled.record(), "pseudo_labels": None}
    return {
        **semi,
        "fakeset": {
            "directory": str(fakeset.directory),
            "oracle_sha256": fakeset.oracle_sha256,
            "count": fakeset.count,
            "queries_spent": fakeset.queries_spent,
            "label_histogram": fakeset.label_histogram,
        },
        "initial_model": None if stage.initial_model is None else _initial_model_sha256(stage.initial_model),
        "epochs": stage.epochs,
        "learning_rate": stage.learning_rate,
        "epochs_done": 0,
        "starts": [],
        "history": {},
        "finished": False,
    }


def _initial_model_sha256(path: Path) -> str:

    if not path.is_file():
        raise CopycatError(f"initial model {path} does not exist")
    return file_sha256(path)


def _same_fakeset(a: dict, b: dict) -> bool:
    # The folder may have moved; the records may not have changed.
    return {k: v for k, v in a.items() if k != "directory"} == {k: v for k, v in b.items() if k != "directory"}


def _resumed_state(out_dir: Path, stored: dict, wanted: dict) -> dict:
    """The stored state, checked against what is asked for and updated with new targets."""
    fix = "rerun with the same options to resume, or pass --overwrite to start again"
    old, new = stored["config"], wanted["config"]
    differences = [f"{key} {old.get(key)!r} vs now {new[key]!r}" for key in _RESUME_KEYS if old.get(key) != new[key]]
    for name, what in (("main", "the fake dataset"), ("finetune", "a fine-tuning fake dataset"),
                       ("semi", "semi-supervised training")):
        before, after = stored["stages"].get(name), wanted["stages"].get(name)
        if before is None and after is not None and name != "main":
            continue  # adding a fine-tuning or semi-supervised stage to a trained copycat is allowed
        if (before is None) != (after is None):
            differences.append(f"{'with' if before else 'without'} {what} vs now {'with' if after else 'without'}")
        elif before is not None and not _same_fakeset(before["fakeset"], after["fakeset"]):
            differences.append(f"{name} fake dataset {before['fakeset']['directory']} vs now "
                               f"{after['fakeset']['directory']} (other records)")
        elif before is not None and before.get("initial_model") != after.get("initial_model"):
            differences.append(f"{name} stage starting from another initial model")
        elif before is not None and before.get("unlabelled") != after.get("unlabelled"):
            differences.append("semi-supervised stage with other unlabelled images, count or threshold")
    if differences:
        raise CopycatError(f"output folder {out_dir} holds a copycat run with other settings "
                           f"({'; '.join(differences)}); {fix}")
    if stored["finished"] and set(stored["stages"]) == set(wanted["stages"]):
        return stored
    state = {**stored, "config": new, "finished": False}
    state["stages"] = {}
    for name, target in wanted["stages"].items():
        stage = stored["stages"].get(name, target)
        if not stage["finished"]:
            stage = {**stage, "epochs": target["epochs"], "learning_rate": target["learning_rate"],
                     "fakeset": target["fakeset"]}
        state["stages"][name] = stage
    return state
