"""Benchmarks: each module times or measures something and is run from the repository root as
``python -m bench.NAME`` (bench/README.md holds the figures)."""
