"""The package in a real browser: the package is written to Azurite first."""

from __future__ import annotations

from tests.fixtures.storage import azurite
from tests.fixtures.tls import tls_files

__all__ = ["azurite", "tls_files"]  # the host fixtures this tier uses
