"""A storage outage as the services see it, on a real Azurite stopped and started again.

Graph (the simulator) answers its catch-all ``StorageLocationInvalid`` when it cannot reach the
container, as the service does; the app's own probe says the storage does not answer (at once,
not after the SDK's minute of retries) and, once it is back, that it answers; Azurite comes back
on the same address with the data it had acknowledged.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.core.exceptions import ServiceRequestError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from devhost.azurite import ACCOUNT_KEY, Azurite, outage_ports
from devhost.graph import GraphSimulator
from devhost.tls import TlsFiles
from dsr_export.adapters.storage import ExportStorage
from dsr_export.settings import ExportStorageSettings, SasMode
from tests.devhost.test_graph_sim import ADELE, make_token

pytestmark = pytest.mark.azurite


@pytest.fixture
def own_azurite(tls_files: TlsFiles) -> Iterator[Azurite]:
    """An Azurite of this test's own, to stop: the session's serves everyone else."""
    with Azurite(tls_files, ports=outage_ports()) as instance:
        yield instance


@pytest.fixture
def storage(
    own_azurite: Azurite, identity_env: dict[str, str], tls_files: TlsFiles, monkeypatch
) -> ExportStorage:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)
    settings = ExportStorageSettings(
        blob_endpoint=own_azurite.blob_endpoint,
        sas_mode=SasMode.STORED_POLICY,
        sas_lifetime=timedelta(days=60),
        account_key=ACCOUNT_KEY,
    )
    return ExportStorage(settings, ManagedIdentityCredential())


def _submit(graph: GraphSimulator, tls: TlsFiles, location: str) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    with session:
        return session.post(
            f"{graph.base_url}/beta/users/{ADELE}/exportPersonalData",
            json={"storageLocation": location},
            headers={"Authorization": f"Bearer {make_token()}"},
            verify=tls.ca_bundle,
            timeout=60,
        )


def test_graph_answers_its_catch_all_when_the_storage_is_down_and_the_app_can_tell(
    own_azurite: Azurite, storage: ExportStorage, graph_sim: GraphSimulator, tls_files: TlsFiles
) -> None:
    name = f"dsr-outage-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    assert storage.prepare(name, now) is False
    sas_url, _ = storage.mint_graph_sas(name, now)
    assert storage.unanswered(name) is None, "up: the storage answers"
    endpoint = own_azurite.blob_endpoint

    own_azurite.interrupt()
    try:
        refused = _submit(graph_sim, tls_files, sas_url)
        started = time.monotonic()
        reason = storage.unanswered(name)
        probe_seconds = time.monotonic() - started
        assert own_azurite.blob_endpoint == endpoint, "an outage keeps the account's address"
        with pytest.raises(ServiceRequestError):
            BlobServiceClient(endpoint, retry_total=0).get_container_client(name).exists()
    finally:
        own_azurite.resume()

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "StorageLocationInvalid"
    assert reason == "connection"
    assert probe_seconds < 5, "asked once, now: not after the SDK's own retries"
    # Back, with its data and on its address: the same container takes the same SAS now.
    assert storage.unanswered(name) is None
    assert storage.request_info_exists(name) is False, "Graph left no receipt"
    accepted = _submit(graph_sim, tls_files, sas_url)
    assert accepted.status_code == 202, accepted.text
    assert storage.request_info_exists(name) is True
    assert graph_sim.submissions_by_user() == {ADELE: 1}


def test_an_answer_that_refuses_is_not_an_outage(storage: ExportStorage) -> None:
    assert storage.unanswered("dsr-no-such-container") is None, "404 is an answer"
