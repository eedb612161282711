"""The pure core: what a DSR is, how its orchestration decides, and every wire shape.

Nothing here does I/O, reads the clock or the environment: the orchestrator imports this layer
and nothing else of ours, so replays stay deterministic. ``make lint`` (import-linter) keeps it
that way: no ``requests``, ``urllib3``, ``azure.*`` SDKs nor the adapters may be imported here.
"""
