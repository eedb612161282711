"""The integration tier: the app's adapters against Azurite, the managed-identity endpoint and
the Graph simulator."""

from __future__ import annotations

from tests.fixtures.graph import graph_sim, sim_clock
from tests.fixtures.identity import identity, identity_env
from tests.fixtures.storage import azurite
from tests.fixtures.tls import tls_files

__all__ = [  # the host fixtures this tier uses
    "azurite",
    "graph_sim",
    "identity",
    "identity_env",
    "sim_clock",
    "tls_files",
]
