"""The oracle interface every stage talks to: uint8 images in, answers out, every query counted.

Subclasses implement :meth:`Oracle._infer` (model-input tensor in, raw class rows out) and
set ``contract`` and ``identity``; :class:`Oracle` converts images, checks answers, counts
queries (when sent, as a paid API charges them) and enforces the budget.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from copycat_tf.contract import (
    Contract,
    to_probabilities,
)
from copycat_tf.errors import BudgetExceeded, CopycatError
from copycat_tf.oracle.info import TargetInfo

#: Largest image (height x width) an input may declare; bigger is treated as hostile.
MAX_INPUT_PIXELS = 4096 * 4096
#: Largest fixed batch an input may declare (the probe sends one whole batch); and the most
#: pixels one fixed batch may hold in all.
MAX_FIXED_BATCH = 4096
MAX_BATCH_PIXELS = 4 * MAX_INPUT_PIXELS


@dataclass(frozen=True)
class Answers:
    """The oracle's answers to one batch of queries.

    Attributes:
        labels: int64 ``(N,)`` predicted classes (argmax).
        probabilities: float32 ``(N, K)`` class probabilities when asked for (softmax of
            logits; normalised scores for ``scores`` outputs), else ``None``.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None = None


class Oracle(ABC):
    """A black-box classifier: uint8 images ``(N, H, W, C)`` in, classes out.

    Subclasses implement :meth:`_infer` (model-input tensor in, raw class rows out) and set
    ``contract`` and ``identity``; this class converts images, counts queries and enforces
    the budget, so every implementation (ONNX today, HTTP later) charges the same way.

    Attributes:
        contract: the :class:`~copycat_tf.contract.Contract` images are sent under.
        identity: a stable identifier of the target (the ONNX file's sha256).
        budget: the most images that may be sent, or ``None`` for no limit.
        queries_spent: images sent so far.
    """

    contract: Contract
    identity: str

    def __init__(self, budget: int | None = None):
        if budget is not None and budget < 0:
            raise CopycatError(f"budget must be >= 0; received {budget}")
        self.budget = budget
        self.queries_spent = 0
        self._cap: int | None = None  # a total set by capped(), below the budget
        self._on_charge: Callable[[int], None] | None = None  # set by charging_to()
        self._setup_spend = 0  # images charged while opening (a probe), not yet claimed

    def take_setup_spend(self) -> int:
        """Images charged to set the oracle up (an API's probe) that no purchase has counted
        yet; the first fake dataset written with this oracle claims them (then 0).

        >>> class Free(Oracle):
        ...     def info(self): ...
        ...     def _infer(self, x): ...
        >>> Free().take_setup_spend()
        0
        """
        taken, self._setup_spend = self._setup_spend, 0
        return taken


    @property
    def queries_left(self) -> int | None:
        return None if self.budget is None else self.budget - self.queries_spent

    #: Price of 1,000 queries, to state what the queries cost (``None``: not given).
    price_per_1k: float | None = None

    @property
    def retries(self) -> int:
        """Requests sent again after a failure (a remote API's; a local model has none)."""
        return 0

    @property
    def cost(self) -> float | None:
        """What ``queries_spent`` cost at ``price_per_1k``, or ``None`` without a price."""
        return None if self.price_per_1k is None else self.queries_spent * self.price_per_1k / 1000

    #: Every query costs money or quota (a remote API). A labeling run then never spends past
    #: its budget, even over interruptions, though that may leave it fewer records than asked.
    metered = False

    @contextmanager
    def charging_to(self, record: Callable[[int], None]) -> Iterator[Oracle]:
        """Within the block, call ``record(n)`` just before ``n`` images are charged (sent),
        and ``record(-n)`` if a charge is withdrawn (the server said it did not run them):
        a write-ahead log of spending that survives a kill while answers are on their way.

        Usage::

            with oracle.charging_to(queries_log.append):
                oracle.query(images)
        """
        saved, self._on_charge = self._on_charge, record
        try:
            yield self
        finally:
            self._on_charge = saved

    def _charge(self, n: int) -> None:
        """Count ``n`` images as sent (an implementation that charges per request, retries
        included, overrides this and reports through :meth:`_announce`)."""
        self._announce(n)
        self.queries_spent += n

    def _announce(self, n: int) -> None:
        if self._on_charge is not None:
            self._on_charge(n)

    @contextmanager
    def capped(self, limit: int) -> Iterator[Oracle]:
        """Within the block, refuse to send more than ``limit`` further images.

        A stage that must not overspend (the labeling loop) caps the oracle without touching
        the caller's ``budget``; caps nest, the tighter one wins.

        Usage::

            with oracle.capped(1_000):
                oracle.query(images)     # BudgetExceeded past 1,000 more images
        """
        saved = self._cap
        cap = self.queries_spent + limit
        self._cap = cap if saved is None else min(saved, cap)
        try:
            yield self
        finally:
            self._cap = saved

    def query(self, images: np.ndarray, *, soft: bool = False) -> Answers:
        """Send ``images`` to the model and return its answers.

        Args:
            images: uint8 ``(N, H, W, C)`` at the contract's image shape.
            soft: also return float32 probabilities.

        Raises:
            BudgetExceeded: the batch would exceed the budget (nothing is sent).
        """
        images = self.contract.check_images(images)
        n = len(images)
        for limit in (self.budget, self._cap):
            if limit is not None and self.queries_spent + n > limit:
                raise BudgetExceeded(
                    f"query budget exhausted: {self.queries_spent} of {limit} images spent, "
                    f"{n} more asked for"
                )
        if n == 0:
            return Answers(np.zeros(0, np.int64), np.zeros((0, self.contract.num_classes), np.float32) if soft else None)
        model_input = self.contract.to_model_input(images)
        # Counted when sent, not when answered: a paid API charges a request that then fails.
        self._charge(n)
        raw = self._infer(model_input)
        if raw.shape != (n, self.contract.num_classes):
            raise CopycatError(
                f"model output {self.contract.output.name!r} has shape {raw.shape}; "
                f"expected ({n}, {self.contract.num_classes})"
            )
        if not np.all(np.isfinite(raw)):
            raise CopycatError(f"model output {self.contract.output.name!r} holds NaN or inf values")
        labels = raw.argmax(axis=1).astype(np.int64)
        probs = to_probabilities(raw, self.contract.output.kind) if soft else None
        return Answers(labels, probs)

    @abstractmethod
    def info(self) -> TargetInfo:
        """What the oracle knows about its target (identity, provenance, contract)."""

    @abstractmethod
    def _infer(self, model_input: np.ndarray) -> np.ndarray:
        """Run the model on a model-input tensor; return raw class rows ``(N, K)``."""
