"""End to end: the real ``function_app.py`` on the offline host, in its own process.

Storage (Azurite), the managed-identity endpoint and Graph (the simulator) live in the test
process, as Azure's services outlive a Functions host; the host runs as ``python -m devhost
serve`` (see host.py) and can be killed and restarted like a worker.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devhost.azurite import Azurite
from devhost.durable import FastClock
from devhost.graph import GraphSimulator
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles
from tests.e2e import host as e2e_host
from tests.e2e.host import (
    API_VERSIONS,
    EXPORT_DURATION,
    GRAPH_ROLES,
    SPEED,
    HostProcess,
    evidence_problems,
    host_env,
    identity_with_roles,
    personal_data_found,
    purged_personal_data_found,
    secrets_in_host_logs,
)
from tests.fixtures.storage import azurite
from tests.fixtures.tls import tls_files

__all__ = ["azurite", "tls_files"]  # the host fixtures this tier uses


def pytest_configure(config: pytest.Config) -> None:
    """Every host of the session runs the GRAPH_API_VERSION asked for (beta by default)."""
    e2e_host.API_VERSION = config.getoption("--graph-api-version")


@pytest.fixture(scope="session")
def other_api_version() -> str:
    """The Graph API version the session does not run by default (v1.0 unless asked)."""
    [other] = [v for v in API_VERSIONS if v != e2e_host.API_VERSION]
    return other


@pytest.fixture(scope="session")
def e2e_clock() -> FastClock:
    return FastClock(SPEED)


@pytest.fixture(scope="session")
def e2e_graph(tls_files: TlsFiles, e2e_clock: FastClock) -> Iterator[GraphSimulator]:
    with GraphSimulator(
        tls_files, clock=e2e_clock.now, export_duration=EXPORT_DURATION, seed=11, tick_interval=0.2
    ) as sim:
        yield sim


@pytest.fixture(scope="session")
def e2e_identity(e2e_graph: GraphSimulator) -> Iterator[ManagedIdentityEndpoint]:
    with identity_with_roles(e2e_graph, GRAPH_ROLES) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory,
    azurite: Azurite,
    e2e_identity: ManagedIdentityEndpoint,
    e2e_graph: GraphSimulator,
    tls_files: TlsFiles,
) -> Iterator[HostProcess]:
    """The module's host, on the session's services. One per module, not per session: the host's
    clock runs at SPEED from its start (a month in about two real minutes), so a DSR received
    "now" meets a deadline warning on a host that has run long enough. With a host per module
    no test depends on which modules ran before its own (in one process or in an xdist worker's
    share of them); a start costs a couple of seconds."""
    process = HostProcess(
        tmp_path_factory.mktemp("host"), host_env(azurite, e2e_identity, e2e_graph, tls_files)
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def other_version_host(
    tmp_path_factory: pytest.TempPathFactory,
    azurite: Azurite,
    e2e_identity: ManagedIdentityEndpoint,
    e2e_graph: GraphSimulator,
    tls_files: TlsFiles,
    other_api_version: str,
) -> Iterator[HostProcess]:
    """A second host of the module, on the other Graph API version (started only if a test
    asks)."""
    env = host_env(azurite, e2e_identity, e2e_graph, tls_files, api_version=other_api_version)
    process = HostProcess(tmp_path_factory.mktemp("host-other-version"), env)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session", autouse=True)
def no_personal_data_outside_the_input() -> Iterator[None]:
    """After the whole e2e session: no UPN it sent came back, anywhere a ticket or an operator
    looks (answers, callbacks, custom status, outputs, the host log)."""
    yield
    found = personal_data_found()
    if found:
        pytest.fail("personal data where only ids belong:\n  " + "\n  ".join(found[:20]))


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_host_log() -> Iterator[None]:
    """After the whole e2e session: no host's log (written by its own process, out of the
    pytest secret scan's sight) holds a SAS signature or a bearer token."""
    yield
    found = secrets_in_host_logs()
    if found:
        pytest.fail("secrets in a host log:\n  " + "\n  ".join(found[:20]))


@pytest.fixture(scope="session", autouse=True)
def every_evidence_chain_verifies(azurite: Azurite, tls_files: TlsFiles) -> Iterator[None]:
    """After the whole e2e session: the evidence log of every DSR that ran verifies, holds no
    UPN the suite sent, and starts with the DSR's receipt; and no task hub holds anything of a
    DSR whose history the retention run purged, nor a UPN in a row of an instance gone."""
    yield
    checked, broken, purged = evidence_problems(azurite, tls_files)
    broken += purged_personal_data_found(purged)
    if broken:
        pytest.fail(f"evidence ({checked} logs): " + "; ".join(broken[:20]))
