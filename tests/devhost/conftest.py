"""The offline host's own tests: its emulators, started here as the tests that check them need."""

from __future__ import annotations

from tests.fixtures.graph import graph_sim, sim_clock
from tests.fixtures.identity import identity, identity_env
from tests.fixtures.storage import azurite
from tests.fixtures.tls import tls_files

__all__ = [
    "azurite",
    "graph_sim",
    "identity",
    "identity_env",
    "sim_clock",
    "tls_files",
]  # the host fixtures this tier uses
