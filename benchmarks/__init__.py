"""Benchmark suites of nst_tf, kept outside the package: ``python scripts/benchmark.py SUITE``.

``core`` (results, machine and background load, timing, FLOPs, conv peak), ``optimize``
(optimization steps), ``controls`` (time to quality, bfloat16, memory), ``fast`` (fast
style networks). BENCHMARKS.md records their output.
"""
