"""``python -m benchmarks.perf NAME [args]``: run one performance benchmark; ``--list`` names them."""

from __future__ import annotations

import importlib
import sys

from benchmarks.perf import benchmarks

USAGE = "usage: python -m benchmarks.perf NAME [args]   (NAME --help: its options; --list: the benchmarks)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    known = benchmarks()
    if not argv or argv[0] in ("-h", "--help", "--list"):
        stream = sys.stdout if argv else sys.stderr  # asked for: stdout; no NAME at all: an error
        print(USAGE, file=stream)
        for name, summary in known.items():
            print(f"  {name:14s} {summary}", file=stream)
        return 0 if argv else 2
    name, *rest = argv
    if name not in known:
        print(f"NAME: no benchmark {name!r} in benchmarks/perf; choose one of: {', '.join(known)}", file=sys.stderr)
        return 2
    importlib.import_module(f"benchmarks.perf.{name}").main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
