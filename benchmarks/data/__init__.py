"""Builders of the research inputs: vendor targets and held-out images (``python -m benchmarks.data.NAME``)."""
