"""Quality experiments: what a copycat achieves, not how fast (``python -m benchmarks.research.NAME``)."""
