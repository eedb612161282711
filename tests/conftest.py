"""Shared fixtures for the offline host's building blocks: TLS, Azurite, identity, Graph."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles, make_tls_files
from dsr_export import composition

# Variables that would make DefaultAzureCredential pick something other than managed identity.
_CREDENTIAL_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


class ManualClock:
    """A clock that only moves when told to: exports of days happen between two lines."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def azurite(tls_files: TlsFiles) -> Iterator[Azurite]:
    """Azurite over HTTPS with ``--oauth basic``: production-shaped SAS and bearer tokens work."""
    with Azurite(tls_files) as instance:
        yield instance


@pytest.fixture(scope="session")
def identity() -> Iterator[ManagedIdentityEndpoint]:
    with ManagedIdentityEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def identity_env(
    identity: ManagedIdentityEndpoint, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Point azure-identity's managed-identity credential at the local endpoint."""
    for name in _CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    env = identity.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def sim_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def graph_sim(tls_files: TlsFiles, sim_clock: ManualClock) -> Iterator[GraphSimulator]:
    """A fresh simulator per test, on a manual clock, driven only by requests (no ticker)."""
    with GraphSimulator(
        tls_files, clock=sim_clock, export_duration=timedelta(days=3), tick_interval=None
    ) as sim:
        yield sim


@pytest.fixture
def swap() -> Iterator[Callable[..., None]]:
    """Swap parts of the composition root for one test: ``swap(clock=lambda: T0)``.

    The one seam tests use to replace the clock, the credential or a client (see
    :func:`dsr_export.composition.override`); everything is restored afterwards.
    """
    with contextlib.ExitStack() as stack:

        def use(**parts: Any) -> None:
            stack.enter_context(composition.override(**parts))

        yield use
