"""Benchmark runners behind `python -m fastprune bench ...` (pytest-benchmark versions live in bench/)."""
