"""Benchmarks against torch and other peers in the same process: python -m fusekit.bench --help."""
