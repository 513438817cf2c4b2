"""Benchmarks: measured, never asserted. ``python -m benchmarks --help``."""
