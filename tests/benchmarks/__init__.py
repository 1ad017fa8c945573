"""Benchmarks: run as python -m tests.benchmarks.bench_x (not collected by pytest)."""
