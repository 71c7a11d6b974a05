"""What the model's owner sees of an attack, replayed offline on the one purchase.

Would monitoring have flagged it (a PRADA replay of the query stream in the order bought,
beside a benign stream replayed the same way), what do label-acting defences cost honest
callers, and does a watermark identify the copy? Everything here reads stored answers or
asks the target about the owner's own benign images; no attack query is bought.
"""

from __future__ import annotations

import logging

import numpy as np

from copycat_tf.audit.detection import DEFAULT_DELTA, PradaResult, prada_curve_png, replay_prada
from copycat_tf.audit.label_defences import misinformation_sweep
from copycat_tf.queries.batch_memory import query_batch_size

log = logging.getLogger(__name__)

def owner_probabilities(oracle, images: np.ndarray) -> np.ndarray:
    """The target's probabilities for the owner's own (benign) images, float32 ``(n, K)``."""
    # The batches evaluate() sends: the same images in the same batches are one purchase
    # for an AnswerCache, which keys its stored answers by batch.
    chunk = query_batch_size(oracle.contract.image_shape, metered=oracle.metered)
    parts = [oracle.query(images[start:start + chunk], soft=True).probabilities
             for start in range(0, len(images), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, oracle.contract.num_classes), np.float32)


def detection(fakeset, oracle, benign, strategy: str, delta: float = DEFAULT_DELTA) -> tuple[dict, bytes]:
    """Replay PRADA over the attack's stream and over the benign images.

    Args:
        fakeset: the purchase, replayed shard by shard in the order bought.
        oracle: the target (its contract turns stored pixels into model inputs; the benign
            images' labels are asked of it).
        benign: labelled or unlabelled benign images (:class:`~copycat_tf.datasets.LabelledImages`),
            or ``None`` (no control stream).
        strategy: the attack's query strategy, to name its stream.
        delta: the alarm threshold on Shapiro-Wilk ``W``.

    Returns:
        ``(audit.json "prada" block, PNG of W over queries)``.
    """
    to_input = oracle.contract.to_model_input
    attack = replay_prada(((s["images"], s["labels"]) for s in fakeset.iter_shards()), None,
                          delta=delta, transform=to_input)
    streams: dict[str, PradaResult] = {f"attack ({strategy})": attack}
    block = {"delta": delta, "strategy": strategy, "first_alarm": attack.first_alarm,
             "queries_to_alarm": attack.queries_to_alarm, "min_w": attack.to_dict(curve=False)["min_w"],
             "benign_alarm": None, "benign_first_alarm": None, "benign_source": None,
             "streams": {strategy: attack.to_dict()}}
    if benign is not None:
        labels = owner_probabilities(oracle, benign.images).argmax(axis=1)
        control = replay_prada(to_input(benign.images), labels, delta=delta)
        streams["benign"] = control
        block.update(benign_alarm=control.alarmed, benign_first_alarm=control.first_alarm,
                     benign_source=benign.name, streams={**block["streams"], "benign": control.to_dict()})
    log.info("PRADA replay (delta %g): attack %s; benign %s", delta,
             "quiet" if attack.first_alarm is None else f"flagged after {attack.queries_to_alarm:,} queries",
             "not replayed" if benign is None else ("flagged" if block["benign_alarm"] else "quiet"))
    return block, prada_curve_png(streams)


def owner_price(defence, benign, benign_probabilities: np.ndarray | None) -> dict:
    """What a defence costs honest callers on the benign images: the share of their answers
    it changes and the accuracy points lost (when labels are known); ``{}`` for a defence
    that changes no answer, or without benign images."""
    if benign_probabilities is None:
        return {}
    price = defence.owner_cost(benign.images, benign_probabilities, benign.labels)
    return {} if price is None else {"owner_changed": price.changed, "owner_accuracy_cost": price.accuracy_cost}


def sweep(fakeset, benign_probabilities: np.ndarray | None, taus) -> list[dict] | None:
    """Share of attack and honest answers adaptive misinformation would change, per tau
    (no copycat trained: the cheap half of the sweep)."""
    if benign_probabilities is None or not fakeset.has_probabilities:
        return None
    attack = np.concatenate([s["probabilities"] for s in fakeset.iter_shards(with_probabilities=True)])
    return misinformation_sweep(attack, benign_probabilities, taus)
