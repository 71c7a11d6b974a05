"""One figure of a performance benchmark as one JSON line: the row every ``benchmarks.perf`` script writes.

Each script prints its human table (the project's figure beside a reference measured in
the same run, as ratios) and, with ``--json FILE``, writes the same figures as rows, one
JSON object per line, so runs on different machines and days can be collected and compared.

Example:
    >>> row = Row("labeling", "label, batch 64", "throughput", 1429.0, "img/s",
    ...           reference=1901.0, machine="2 cores (AMD EPYC)")
    >>> round(row.ratio, 3)
    0.752
    >>> Row.from_json(row.to_json()) == row
    True
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """A measured ``value`` of ``metric`` for one ``case`` of a ``benchmark``.

    Args:
        benchmark: the module's name under ``benchmarks.perf`` (``labeling``).
        case: what was measured (``label, intra-op all, batch 64``).
        metric: the quantity (``throughput``, ``peak_rss``, ``wall``).
        value: the figure, in ``unit``.
        unit: ``img/s``, ``s``, ``MiB``...
        reference: the reference's figure in the same unit and run, or ``None`` where the
            figure stands alone.
        ratio: ``value / reference``; computed from them when left out. A benchmark whose
            ratio is defined otherwise (the memory growth of 100k over 10k queries) passes it.
        machine: :func:`benchmarks.measure.machine` of the run.
    """

    benchmark: str
    case: str
    metric: str
    value: float
    unit: str
    reference: float | None = None
    ratio: float | None = None
    machine: str = ""

    def __post_init__(self):
        if self.ratio is None and self.reference:
            object.__setattr__(self, "ratio", self.value / self.reference)

    def to_json(self) -> str:
        """This row as one line of JSON."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Row:
        """The row written by :meth:`to_json`."""
        return cls(**json.loads(line))


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json FILE``: where the script writes its rows (one JSON object per line)."""
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write every figure as one JSON row per line (benchmarks.row.Row)")


def write_rows(path: Path | None, rows: list[Row]) -> None:
    """Write ``rows`` to ``path`` (replacing it), one per line; nothing when ``path`` is ``None``."""
    if path is not None:
        path.write_text("".join(row.to_json() + "\n" for row in rows))
