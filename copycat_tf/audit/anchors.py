"""What the published Copycat CNN attacks reached: the figures an audit's verdict sets beside its own.

An audit simulates one attacker (its copycat, strategy, query sources and budgets). The
papers' attacker was stronger than the default one: an ImageNet-pretrained VGG16 copycat
trained on 100,000 or more natural images. A "Low" verdict from a weaker simulated
attacker is a lower bound on the risk, never a statement that the model is safe; these
figures say how far a stronger attacker went. The README's audit section quotes them.

Example:

>>> PUBLISHED_ATTACKS[0].reached, PUBLISHED_ATTACKS[0].source
("0.93 of a CIFAR-10-style target's accuracy", 'Correia-Silva et al., Pattern Recognition 2021')
>>> weaker_than_published(pretrained=False, largest_budget=20_000)
['not pretrained', "at most 20,000 queries against the papers' 100,000 and more"]
>>> weaker_than_published(pretrained=True, largest_budget=100_000)
[]
"""

from __future__ import annotations

from dataclasses import dataclass

#: Correia-Silva, Berriel, Badue, De Souza, Oliveira-Santos: "Copycat CNN: Are random
#: non-Labeled data enough to steal knowledge from black-box models?", Pattern Recognition
#: 113 (2021) 107830; figures from the authors' published result files.
CORREIA_SILVA_2021 = "Correia-Silva et al., Pattern Recognition 2021"
#: Correia-Silva, Berriel, Badue, De Souza, Oliveira-Santos: "Copycat CNN: Stealing Knowledge
#: by Persuading Confession with Random Non-Labeled Data", IJCNN 2018.
CORREIA_SILVA_2018 = "Correia-Silva et al., IJCNN 2018"

#: The published attacks' smallest budget: a simulated attacker below it is weaker.
PUBLISHED_QUERIES = 100_000


@dataclass(frozen=True)
class Anchor:
    """One published result: who reached what, with which attacker.

    Attributes:
        source: the paper (one of the citation constants above).
        attacker: the copycat, labels and queries it was trained on.
        reached: what the copy achieved.
    """

    source: str
    attacker: str
    reached: str

    def __str__(self) -> str:
        return f"{self.attacker}: {self.reached} ({self.source})"


#: The published anchors, strongest claim last. Natural images are non-problem-domain (NPD)
#: ones, images of other tasks; problem-domain (PD) images are unlabelled images of the
#: target's own task.
PUBLISHED_ATTACKS = (
    Anchor(CORREIA_SILVA_2021,
           "ImageNet-pretrained VGG16 copycat, hard labels, 100,000 natural (non-problem-domain) queries",
           "0.93 of a CIFAR-10-style target's accuracy"),
    Anchor(CORREIA_SILVA_2021,
           "the same attacker on facial expression",
           "71.5% accuracy (per-class mean 0.67) at 100,000 queries, 90.5% at 500,000"),
    Anchor(CORREIA_SILVA_2021,
           "the same with unlabelled problem-domain images added at 100,000 queries",
           "+0.19 accuracy on facial expression"),
    Anchor(CORREIA_SILVA_2018,
           "ImageNet-pretrained VGG16 copycat, hard labels",
           "at least 93.7% of the target's performance from non-problem-domain images, "
           "at least 98.6% with problem-domain images"),
)


def weaker_than_published(*, pretrained: bool, largest_budget: int | None) -> list[str]:
    """How a simulated attacker falls short of the published ones; empty when it does not.

    Args:
        pretrained: whether the copycat started from pretrained weights.
        largest_budget: the most queries any of its copies was trained on.

    Returns:
        Phrases naming each shortfall, e.g. ``"not pretrained"``.
    """
    shortfalls = []
    if not pretrained:
        shortfalls.append("not pretrained")
    if largest_budget is None or largest_budget < PUBLISHED_QUERIES:
        budget = "an unknown budget" if largest_budget is None else f"at most {largest_budget:,} queries"
        shortfalls.append(f"{budget} against the papers' {PUBLISHED_QUERIES:,} and more")
    return shortfalls
