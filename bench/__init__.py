"""Benchmarks: what durable enrollments cost to run, each figure beside a Temporal baseline from the same run.

``python -m bench --mode quick|full`` (``make bench-quick`` / ``make bench``); see docs/BENCHMARKS.md.
"""
