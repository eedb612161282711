"""The integration tier: the app's adapters against Azurite and the managed-identity endpoint."""

from __future__ import annotations

from tests.fixtures.identity import identity, identity_env
from tests.fixtures.storage import azurite
from tests.fixtures.tls import tls_files

__all__ = ["azurite", "identity", "identity_env", "tls_files"]  # the host fixtures this tier uses
