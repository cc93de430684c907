"""Benchmark scripts; each writes JSON to benchmarks/results/ (run as `python -m benchmarks.X`)."""
