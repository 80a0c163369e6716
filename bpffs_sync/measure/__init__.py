"""Benchmarks and the comparative report: every figure next to a baseline from the same run."""
