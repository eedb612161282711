"""Benchmarks: counts and ratios. The one timing (cold start) is a ratio of medians, printed
and never asserted: machines here are noisy, so nothing in bench/ is a test."""
