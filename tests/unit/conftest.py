"""The unit tests' fakes for the parts of the composition root that need a live host."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devhost.entra import EntraTenant
from devhost.tls import TlsFiles
from dsr_export import settings
from dsr_export.adapters.entra import TokenValidator
from tests.fixtures.tls import tls_files
from tests.unit.intake_fakes import MemoryEvidence, QueueTrimmings

__all__ = ["tls_files"]  # the host fixtures this tier uses


@pytest.fixture(autouse=True)
def _fake_task_hub(swap: Callable[..., None]) -> None:
    """The routes' client binding is the fake task hub itself (it implements the adapter's
    interface; tests/unit/test_durable_client.py tests the adapter over the SDK)."""
    swap(task_hub=lambda client: client)


@pytest.fixture(autouse=True)
def queue_trimmer(swap: Callable[..., None]) -> QueueTrimmings:
    """The retention run's queue clearing, recorded (tests/integration clears real queues)."""
    trimmer = QueueTrimmings()
    swap(queue_trimmer=trimmer)
    return trimmer


@pytest.fixture(autouse=True)
def evidence_log(swap: Callable[..., None]) -> MemoryEvidence:
    """Each unit test's evidence, in memory (tests/integration covers the real log)."""
    log = MemoryEvidence()
    swap(evidence_log=log)
    return log


@pytest.fixture(scope="session")
def entra_tenant(tls_files: TlsFiles) -> Iterator[EntraTenant]:
    """The offline host's Entra tenant, serving its OpenID configuration and keys over TLS."""
    with EntraTenant(tls_files) as tenant:
        yield tenant


@pytest.fixture
def entra_tokens(
    entra_tenant: EntraTenant,
    tls_files: TlsFiles,
    swap: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[EntraTenant]:
    """The app configured for the local tenant (its AUTH_* settings) with a fresh validator,
    which fetches the tenant's keys over TLS with the app's own code."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)
    for name, value in entra_tenant.app_settings().items():
        monkeypatch.setenv(name, value)
    settings.clear_cache()
    entra = settings.EntraSettings.from_env()
    assert entra is not None
    swap(token_validator=TokenValidator(entra))
    yield entra_tenant
    settings.clear_cache()
