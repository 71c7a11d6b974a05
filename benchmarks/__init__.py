"""copycat-tf's benchmarks, kept out of the wheel; run from the repository root with ``python -m``.

- ``benchmarks.perf``: speed and memory measurements, each beside a reference measured in
  the same run (``python -m benchmarks.perf NAME [args]``; ``--json FILE`` writes
  :class:`benchmarks.row.Row` lines).
- ``benchmarks.research``: quality experiments (copycat agreement and accuracy against a
  target, ART side by side, training levers, a Keras finding).
- ``benchmarks.data``: builders of what the research runs on (vendor targets, held-out images).

Shared modules: ``measure`` (timing, machine, child processes), ``inputs`` (generated targets
and JPEGs), ``row`` (the JSON row), ``art_thief`` (ART's reference thief) and ``serving`` (a
KServe model server in a loopback-only namespace, also used by the HTTP oracle's tests).
"""
