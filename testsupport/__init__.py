"""What the tests and the benchmarks share and the offline host need not be running for.

- :mod:`testsupport.replay` drives one orchestrator through the Durable SDK's real replay, with
  every answer given by the caller (the orchestrator unit tests and ``make bench``).
- :mod:`testsupport.durable_protocol` is the Durable extension's wire format (history events,
  actions) that the replay driver and the offline host's engine (``devhost.durable``) both speak.

It imports neither the app, the offline host, the benchmarks nor the tests (an import contract in
pyproject.toml): importing it starts and loads no part of the offline host.
"""
