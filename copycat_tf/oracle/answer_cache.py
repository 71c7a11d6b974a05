"""The target's answers to a fixed set of images, bought once per run and kept on disk.

Evaluation asks the target about the same test images every time a run is measured; for a
paid API that would be a new bill on every rerun. :class:`AnswerCache` stands in for the
target: a batch of images it has seen is answered from ``answers.npz`` (keyed by the
images' sha256), a new one is bought once, with full probabilities, and stored at once.
The file holds arrays only (no pickle). An answer lost to an interruption before it was
stored is bought again on the rerun.

Usage::

    target = AnswerCache(OnnxOracle("target.onnx"), "runs/steal/report/target-answers.npz")
    evaluate(target, copycat, test)   # a second evaluation sends nothing to the target
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from copycat_tf.files import atomic_write
from copycat_tf.npz import read_npz
from copycat_tf.oracle.base import Answers, Oracle
from copycat_tf.oracle.info import TargetInfo


class AnswerCache(Oracle):
    """An oracle that answers images it has already bought from ``path``, and buys the rest once.

    Args:
        oracle: the target.
        path: the ``.npz`` file of stored answers (created on the first purchase).

    Attributes:
        bought: images bought from the target through this cache, in every run together.
    """

    def __init__(self, oracle: Oracle, path: str | os.PathLike):
        super().__init__()
        self.oracle, self.path = oracle, Path(path)
        self.contract, self.identity = oracle.contract, oracle.identity
        self.price_per_1k = oracle.price_per_1k
        self._stored: dict[str, np.ndarray] = read_npz(self.path, what="stored answers") if self.path.is_file() else {}

    @property
    def bought(self) -> int:
        return sum(len(v) for k, v in self._stored.items() if k.startswith("labels-"))

    def info(self) -> TargetInfo:
        return self.oracle.info()

    def query(self, images: np.ndarray, *, soft: bool = False) -> Answers:
        images = self.contract.check_images(images)
        key = hashlib.sha256(repr(images.shape).encode() + images.tobytes()).hexdigest()
        if f"labels-{key}" not in self._stored:
            answers = self.oracle.query(images, soft=True)
            self._stored[f"labels-{key}"] = answers.labels
            self._stored[f"probabilities-{key}"] = answers.probabilities
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, lambda handle: np.savez(handle, **self._stored))
        labels = self._stored[f"labels-{key}"]
        return Answers(labels, self._stored[f"probabilities-{key}"] if soft else None)

    def _infer(self, model_input: np.ndarray) -> np.ndarray:
        raise NotImplementedError("AnswerCache answers through query()")
