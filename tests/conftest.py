"""Shared fixtures: the app's functions (listed once per process) and the replay driver's way to
them, the offline host's building blocks (TLS, Azurite, identity, Graph) and the one seam of the
composition root (``swap``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from devhost.azurite import Azurite
from devhost.durable.replay import user_functions
from devhost.graph import GraphSimulator
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles, make_tls_files
from dsr_export import composition
from tests import replay
from tests.clock import ManualClock

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--graph-api-version",
        choices=("beta", "v1.0"),
        default="beta",
        help="GRAPH_API_VERSION of every end-to-end host (default beta, the app's default); "
        "tests/e2e/test_pipeline.py runs its Graph-facing tests under the other one as well",
    )


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


@pytest.fixture(scope="session")
def app_functions() -> tuple[Any, ...]:
    """Every function ``function_app`` registers, as the worker lists them.

    ``app.get_functions()`` may run once per process (a second call raises in azure-functions
    1.26): this fixture is that one call, and every test takes the app's functions from it.
    """
    from function_app import app

    return tuple(app.get_functions())


@pytest.fixture(scope="session")
def user_function(app_functions: tuple[Any, ...]) -> Callable[[str], Any]:
    """The worker's entry point of the app's function called ``name``:
    ``user_function("get_dsr").client_function(req=..., client=...)``."""
    entries = user_functions(app_functions)

    def lookup(name: str) -> Any:
        if name not in entries:
            raise LookupError(f"function_app registers no {name!r}; it has {sorted(entries)}")
        return entries[name]

    return lookup


@pytest.fixture(autouse=True)
def _drivers_find_the_app(request: pytest.FixtureRequest) -> Iterator[None]:
    """``tests.replay.Driver(name, input)`` takes its orchestrator from ``user_function``,
    requested only when the test builds a Driver (a test that builds none imports no app)."""
    with replay.entry_points(lambda: request.getfixturevalue("user_function")):
        yield


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
