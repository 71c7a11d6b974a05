"""ART's model-extraction attacks as reference rows for ``python -m benchmarks.research.quality --art``.

Each attack gets what copycat-tf's ``paper`` strategy gets: the same ONNX target (queried
through onnxruntime, wrapped in ART's ``BlackBoxClassifier``, hard labels), the first
``budget`` images of the same query stream, and a thief built by ``copycat_tf.models.build``
with the epochs copycat-tf would train it for on that many records (``TrainConfig.resolved``),
the architecture's batch size and learning rate, trained by ART
(``TensorFlowV2Classifier``). The thief is exported with copycat-tf's exporter and scored by
the same :func:`copycat_tf.evaluation.evaluate` on the same images as copycat-tf's row: a
labelled test split, or for a target without labels a folder of held-out images fitted to its
input (agreement only), so rows compare like for like.

- ``art-copycatcnn``: ``art.attacks.extraction.CopycatCNN`` (the paper's algorithm);
- ``art-knockoff-random``: ``KnockoffNets(sampling_strategy="random")``;
- ``art-knockoff-adaptive``: ``KnockoffNets(sampling_strategy="adaptive", reward="all")``, whose
  bandit needs an "action" label per transfer image: the photo (or source) each query came
  from, as Knockoff Nets uses the transfer set's own classes. It queries and trains one image
  at a time, so it runs only up to ``ADAPTIVE_MAX_BUDGET`` queries.

ART is an optional reference, not a dependency: ``pip install adversarial-robustness-toolbox``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.art_thief import art_thief

#: The adaptive bandit fits the thief once per query; beyond this it takes hours on a CPU.
ADAPTIVE_MAX_BUDGET = 10_000


LABELS = {"copycat": "art-copycatcnn", "random": "art-knockoff-random", "adaptive": "art-knockoff-adaptive"}


def art_attacks(target: Path, name: str, budget: int, queries, arch: str, epochs: int | None, *,
                kinds=tuple(LABELS), scored_on: str) -> list:
    """``(label, run)`` pairs for ``kinds`` (keys of :data:`LABELS`); each ``run(seed)`` returns
    a row like ``quality.run_steal``, scored on ``scored_on`` (a ``load_labelled`` spec: a named
    test split, or a folder of unlabelled images, whose rows have agreement only)."""
    unknown = set(kinds) - set(LABELS)
    if unknown:
        raise SystemExit(f"--art: unknown attack(s) {', '.join(sorted(unknown))}; choose from {', '.join(LABELS)}")
    attacks = [(LABELS[kind], kind) for kind in kinds if kind != "adaptive" or budget <= ADAPTIVE_MAX_BUDGET]
    return [(label, lambda seed, kind=kind, label=label: _run(kind, label, target, name, budget, queries,
                                                               arch, epochs, seed, scored_on))
            for label, kind in attacks]


def _run(kind, label, target, name, budget, queries, arch, epochs, seed, scored_on) -> dict:
    import numpy as np
    from art.attacks.extraction import CopycatCNN, KnockoffNets
    from art.estimators.classification import BlackBoxClassifier

    from copycat_tf.datasets import load_labelled
    from copycat_tf.evaluation import evaluate
    from copycat_tf.export import export_onnx
    from copycat_tf.oracle import OnnxOracle
    from copycat_tf.queries import open_query_source
    from copycat_tf.training import TrainConfig

    oracle = OnnxOracle(target)
    shape, classes = oracle.contract.image_shape, oracle.contract.num_classes
    stream = open_query_source(queries, shape, seed=seed).queries()
    taken = [q for q in (next(stream) for _ in range(budget)) if q.image is not None]
    stream.close()
    x = np.stack([q.image for q in taken]).astype(np.float32)
    # Knockoff's "actions": which photo (or which source) each query was cut from.
    origins = [f"{q.source}:{q.key.split('@')[0]}" for q in taken]
    actions = np.unique(origins, return_inverse=True)[1]

    started = time.perf_counter()

    def predict_fn(batch):
        return oracle.query(np.clip(np.rint(batch), 0, 255).astype(np.uint8), soft=True).probabilities

    victim = BlackBoxClassifier(predict_fn, shape, classes, clip_values=(0, 255))
    settings = TrainConfig(arch=arch, epochs=epochs).resolved(records=len(x))
    thief = art_thief(arch, shape, classes, seed)
    common = {"batch_size_fit": settings.batch_size, "batch_size_query": 64, "nb_epochs": settings.epochs,
              "nb_stolen": len(x)}
    np.random.seed(seed)
    if kind == "copycat":
        stolen = CopycatCNN(victim, **common).extract(x, thieved_classifier=thief)
    elif kind == "random":
        stolen = KnockoffNets(victim, sampling_strategy="random", **common).extract(x, thieved_classifier=thief)
    else:
        stolen = KnockoffNets(victim, sampling_strategy="adaptive", reward="all", **common).extract(
            x, y=actions, thieved_classifier=thief)
    wall = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "thief.onnx"
        export_onnx(stolen.model, path, oracle.contract)
        images = load_labelled(scored_on, image_shape=shape)
        ev = evaluate(OnnxOracle(target), OnnxOracle(path), images, queries=len(x))
    return {"target": name, "strategy": label, "labels": "hard", "arch": arch, "queries": budget, "seed": seed,
            "scored_on": ev.test_name, "scored_images": ev.count,
            "target_accuracy": ev.target.accuracy if ev.labelled else None,
            "copycat_accuracy": ev.copycat.accuracy if ev.labelled else None,
            "ratio": ev.performance_ratio, "agreement": ev.agreement,
            "per_class_agreement": ev.per_class_agreement, "kappa": ev.kappa, "wall_s": wall}
