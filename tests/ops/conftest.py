"""The end-to-end host for tests/ops/test_trace.py: the e2e suite's own fixtures, reused.

Only the fixtures that start the host are taken (not the e2e session's autouse checks, which
belong to that suite); in a run of both folders each starts a host of its own.
"""

from __future__ import annotations

from tests.e2e.conftest import e2e_clock, e2e_graph, e2e_identity, host
from tests.fixtures.storage import azurite
from tests.fixtures.tls import tls_files

__all__ = ["azurite", "e2e_clock", "e2e_graph", "e2e_identity", "host", "tls_files"]
