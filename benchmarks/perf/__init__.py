"""Speed and memory measurements, each figure beside a reference measured in the same run.

Every module here is one benchmark with a ``main(argv)``; run one with
``python -m benchmarks.perf NAME [args]`` or ``python -m benchmarks.perf.NAME [args]``, list
them with ``python -m benchmarks.perf --list``. Each prints a table and, with ``--json FILE``,
writes its figures as :class:`benchmarks.row.Row` lines.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path


def benchmarks() -> dict[str, str]:
    """``{name: first line of its docstring}`` of every benchmark here, read without importing
    them (some import TensorFlow).

    Example:
        >>> names = benchmarks()
        >>> "labeling" in names and "memory" in names
        True
    """
    folder = Path(__file__).parent
    found = {}
    for module in pkgutil.iter_modules([str(folder)]):
        if module.name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse((folder / f"{module.name}.py").read_text())) or ""
        found[module.name] = doc.splitlines()[0] if doc else ""
    return dict(sorted(found.items()))
