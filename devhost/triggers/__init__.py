"""Trigger listeners of the offline Functions host (HTTP, queue, timer)."""
