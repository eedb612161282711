"""Benchmarks: counts and ratios, never wall-clock timings (machines here are noisy)."""
