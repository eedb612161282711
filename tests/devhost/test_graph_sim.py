"""The Graph simulator keeps the exportPersonalData contract, including the hostile parts."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import (
    AccessPolicy,
    AccountSasPermissions,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_blob_sas,
    generate_container_sas,
)

from devhost._state import PortInUseError, StateFileError
from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from devhost.graph import DEMO_DIRECTORY, GRAPH_RESOURCE, GraphSimulator
from devhost.tls import TlsFiles
from tests.clock import ManualClock

ADELE = DEMO_DIRECTORY["adele.vance@contoso.example"]
ALEX = DEMO_DIRECTORY["alex.wilber@contoso.example"]
ALL_ROLES = ("User.Export.All", "User.Read.All")
DAY = timedelta(days=1)


def make_token(
    roles: tuple[str, ...] = ALL_ROLES, aud: str = GRAPH_RESOURCE, lifetime: int = 3600
) -> str:
    now = int(time.time())
    claims = {
        "aud": aud,
        "iss": "https://sts.windows.net/00000000-0000-4000-8000-000000000001/",
        "iat": now,
        "nbf": now - 60,
        "exp": now + lifetime,
        "roles": list(roles),
    }
    return jwt.encode(claims, "test-key-of-at-least-32-bytes-long", algorithm="HS256")


class Graph:
    """A bare HTTP client, as the app's own Graph client will be."""

    def __init__(self, sim: GraphSimulator, ca_bundle: str, token: str) -> None:
        self.sim = sim
        self.session = requests.Session()
        self.session.trust_env = False  # else REQUESTS_CA_BUNDLE from the env beats .verify
        self.session.verify = ca_bundle
        self.token = token

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}", **extra}

    def submit(
        self, user: str, location: str | None, *, version: str = "beta", token: str | None = None
    ) -> requests.Response:
        body = {} if location is None else {"storageLocation": location}
        return self.session.post(
            f"{self.sim.base_url}/{version}/users/{user}/exportPersonalData",
            json=body,
            headers=self.headers(token),
            timeout=30,
        )

    def poll(self, op_id: str, *, token: str | None = None) -> requests.Response:
        return self.session.get(
            f"{self.sim.base_url}/beta/dataPolicyOperations/{op_id}",
            headers=self.headers(token),
            timeout=30,
        )

    def resolve(self, upn: str, *, token: str | None = None) -> requests.Response:
        return self.session.get(
            f"{self.sim.base_url}/v1.0/users/{upn}?$select=id",
            headers=self.headers(token),
            timeout=30,
        )


@pytest.fixture
def graph(graph_sim: GraphSimulator, tls_files: TlsFiles) -> Iterator[Graph]:
    client = Graph(graph_sim, tls_files.ca_bundle, make_token())
    yield client
    client.session.close()


@pytest.fixture
def blob_service(azurite: Azurite, tls_files: TlsFiles) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(
        azurite.connection_string, connection_verify=tls_files.ca_bundle
    )


@pytest.fixture
def container(blob_service: BlobServiceClient) -> ContainerClient:
    return blob_service.create_container(f"dsr-{uuid.uuid4().hex[:12]}")


def policy_sas(container: ContainerClient, permission: str = "acw") -> str:
    """The production shape: container service SAS bound to a stored access policy, https."""
    now = datetime.now(UTC)
    policy = AccessPolicy(
        ContainerSasPermissions.from_string(permission),
        expiry=now + timedelta(days=60),
        start=now - timedelta(minutes=15),
    )
    container.set_container_access_policy({"dsr-export": policy})
    sas = generate_container_sas(
        ACCOUNT_NAME,
        container.container_name,
        account_key=ACCOUNT_KEY,
        policy_id="dsr-export",
        protocol="https",
    )
    return f"{container.url}?{sas}"


def error_code(response: requests.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def op_id_of(response: requests.Response) -> str:
    return response.headers["Location"].rsplit("/", 1)[1]


def blobs(container: ContainerClient) -> dict[str, int]:
    return {b.name: b.size for b in container.list_blobs()}


# -- authentication and authorisation ----------------------------------------------------------


def test_missing_or_bad_token_is_401_with_graph_error_body(graph: Graph) -> None:
    url = f"{graph.sim.base_url}/beta/dataPolicyOperations/{uuid.uuid4()}"
    cases = {
        "no token": {},
        "not a jwt": {"Authorization": "Bearer nonsense"},
        "wrong audience": graph.headers(make_token(aud="https://storage.azure.com")),
        "expired": graph.headers(make_token(lifetime=-10)),
    }
    for name, headers in cases.items():
        response = graph.session.get(url, headers={**headers, "client-request-id": name})
        assert response.status_code == 401, name
        error = response.json()["error"]
        assert error["code"] == "InvalidAuthenticationToken"
        assert error["innerError"]["client-request-id"] == name
        assert error["innerError"]["request-id"] == response.headers["request-id"]
        assert response.headers["client-request-id"] == name


def test_token_for_the_simulators_own_url_is_accepted(graph: Graph) -> None:
    """The app asks for ``{GRAPH_BASE_URL}/.default``, as it would in a national cloud."""
    response = graph.poll(str(uuid.uuid4()), token=make_token(aud=graph.sim.base_url + "/"))
    assert error_code(response) == "OperationNotFound"


def test_submit_without_export_role_is_403_naming_the_permission(graph: Graph) -> None:
    response = graph.submit(ADELE, "https://x", token=make_token(roles=("User.Read.All",)))
    assert response.status_code == 403
    assert error_code(response) == "Forbidden"
    assert "User.Export.All" in response.json()["error"]["message"]


def test_poll_and_resolve_need_user_read_all(graph: Graph) -> None:
    token = make_token(roles=("User.Export.All",))
    for response in (graph.poll(str(uuid.uuid4()), token=token), graph.resolve("x", token=token)):
        assert response.status_code == 403
        assert "User.Read.All" in response.json()["error"]["message"]


# -- users --------------------------------------------------------------------------------------


def test_submit_with_upn_instead_of_guid_is_invalid_input(graph: Graph) -> None:
    response = graph.submit("adele.vance@contoso.example", "https://x")
    assert response.status_code == 400
    assert error_code(response) == "InvalidInput"
    assert "invalid Guid" in response.json()["error"]["message"]


def test_submit_for_unknown_user_is_404(graph: Graph) -> None:
    response = graph.submit(str(uuid.uuid4()), "https://x")
    assert response.status_code == 404
    assert error_code(response) == "ResourceNotFound"


def test_resolve_upn_to_object_id(graph: Graph) -> None:
    response = graph.resolve("Adele.Vance@contoso.example")
    assert response.status_code == 200
    assert response.json()["id"] == ADELE
    assert "userPrincipalName" not in response.json()  # $select=id

    assert graph.resolve("nobody@contoso.example").status_code == 404
    added = graph.sim.add_user("new.hire@contoso.example")
    assert graph.resolve("new.hire@contoso.example").json()["id"] == added


def test_missing_users_fault_hides_a_directory_user(graph: Graph) -> None:
    graph.sim.faults.missing_users = {"adele.vance@contoso.example"}
    response = graph.resolve("adele.vance@contoso.example")
    assert response.status_code == 404
    assert error_code(response) == "ResourceNotFound"
    assert graph.submit(ADELE, "https://x").status_code == 404


# -- body and SAS shape checks that need no storage ---------------------------------------------


def test_storage_location_missing_or_relative(graph: Graph) -> None:
    for location in (None, "container?sig=abc", "not a url"):
        response = graph.submit(ADELE, location)
        assert response.status_code == 400
        assert error_code(response) == "StorageLocationInvalid"


def test_url_without_signature_is_an_invalid_sas(graph: Graph) -> None:
    response = graph.submit(ADELE, "https://acct.blob.core.windows.net/exports")
    assert response.status_code == 400
    assert error_code(response) == "SharedAccessSignatureTokenInvalid"


def test_unknown_operation_is_400_operation_not_found(graph: Graph) -> None:
    response = graph.poll(str(uuid.uuid4()))
    assert response.status_code == 400
    assert error_code(response) == "OperationNotFound"
    assert "Retry-After" not in response.headers


# -- faults -------------------------------------------------------------------------------------


def test_throttle_fault_answers_429_with_retry_after_then_recovers(graph: Graph) -> None:
    graph.sim.faults.throttle_next = 2
    graph.sim.faults.throttle_retry_after = 7
    for _ in range(2):
        response = graph.poll("x")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert error_code(response) == "TooManyRequests"
    assert error_code(graph.poll("x")) == "OperationNotFound"


def test_error_faults(graph: Graph) -> None:
    graph.sim.set_faults(error_next=1, error_status=503, error_retry_after=3)
    response = graph.poll("x")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "3")
    graph.sim.set_faults(error_next=1, error_status=504)
    response = graph.poll("x")
    assert response.status_code == 504
    assert error_code(response) == "PartnerTimeout"
    assert "Retry-After" not in response.headers
    assert graph.poll("x").status_code == 400


def test_faults_apply_only_to_chosen_routes(graph: Graph) -> None:
    graph.sim.set_faults(throttle_next=1, routes=["submit"])
    assert graph.poll("x").status_code == 400
    assert graph.submit("not-a-guid", None).status_code == 429


def test_dropped_connection_then_recovery(graph: Graph) -> None:
    graph.sim.faults.drop_next = 1
    with pytest.raises(requests.ConnectionError):
        graph.poll("x")
    assert graph.poll("x").status_code == 400
    assert [r.status for r in graph.sim.requests()] == [0, 400]


def test_slow_fault_delays_the_answer(graph: Graph) -> None:
    graph.sim.set_faults(slow_next=1, slow_seconds=0.3)
    started = time.monotonic()
    assert graph.poll("x").status_code == 400
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    graph.poll("x")
    assert time.monotonic() - started < 0.3


def test_the_submit_throttle_fault_answers_with_retry_after(graph: Graph) -> None:
    """A fault, not Graph's quota: a sliding real-time minute, 429 with Retry-After."""
    graph.sim.set_faults(throttle_submits_per_minute=2)
    assert [graph.submit("not-a-guid", None).status_code for _ in range(2)] == [400, 400]
    response = graph.submit("not-a-guid", None)
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_admin_route_flips_faults_from_another_process(graph: Graph) -> None:
    admin = f"{graph.sim.base_url}/_sim/faults"
    response = graph.session.post(admin, json={"throttle_next": 1, "throttle_retry_after": 9})
    assert response.status_code == 200
    assert response.json()["throttle_next"] == 1
    assert graph.poll("x").headers["Retry-After"] == "9"

    graph.session.post(admin, json={"error_next": 5})
    assert graph.session.delete(admin).json()["error_next"] == 0
    assert graph.poll("x").status_code == 400
    assert graph.session.post(admin, json={"no_such_knob": 1}).status_code == 400

    assert graph.session.post(admin, json={"throttle_next": "many"}).status_code == 400
    assert graph.session.post(admin, json={"routes": ["everything"]}).status_code == 400
    graph.session.post(admin, json={"missing_users": ["Adele.Vance@Contoso.example"]})
    assert graph.resolve("adele.vance@contoso.example").status_code == 404

    stats = graph.session.get(f"{graph.sim.base_url}/_sim/stats").json()
    assert stats == {"submissionsByUser": {}, "submissionsByContainer": {}, "operations": 0}
    added = graph.session.post(
        f"{graph.sim.base_url}/_sim/users", json={"upn": "n@contoso.example"}
    )
    assert graph.resolve("n@contoso.example").json()["id"] == added.json()["id"]


# -- the SAS checks, run against Azurite through the SAS ----------------------------------------


@pytest.mark.azurite
def test_accepts_policy_bound_acw_sas_with_identity_token(
    graph: Graph, container: ContainerClient, identity_env: dict[str, str]
) -> None:
    token = ManagedIdentityCredential().get_token(f"{GRAPH_RESOURCE}/.default").token
    location = policy_sas(container)
    assert "sp=" not in location  # permissions live in the stored access policy

    response = graph.submit(ADELE, location, version="v1.0", token=token)

    assert response.status_code == 202, response.text
    assert response.content == b""
    op_id = op_id_of(response)
    expected_url = f"{graph.sim.base_url}/v1.0/dataPolicyOperations/{op_id}"
    assert response.headers["Location"] == response.headers["Operation-Location"] == expected_url
    assert response.headers["Retry-After"] == "60"
    info = container.get_blob_client("RequestInfo.json")
    assert info.get_blob_properties().blob_type == "AppendBlob"
    # As in the service's source: the operation id is the CommandId of the receipt.
    receipt = json.loads(info.download_blob().readall())
    assert receipt["CommandId"] == op_id
    assert receipt["Subject"] == ADELE
    assert graph.sim.submissions_by_user() == {ADELE: 1}
    assert graph.sim.submissions_by_container() == {container.url: 1}
    [op] = graph.sim.operations()
    assert (op.id, op.user_id, op.storage_location) == (op_id, ADELE, container.url)


@pytest.mark.azurite
@pytest.mark.parametrize(
    ("permission", "code"),
    [
        ("racw", "StorageLocationShouldNotAllowReadAccess"),
        ("lacw", "StorageLocationShouldNotAllowListAccess"),
        ("c", "StorageLocationNeedsWriteAddPermissions"),
        ("r", "StorageLocationNeedsWriteAddPermissions"),
    ],
)
def test_refuses_sas_with_wrong_permissions(
    graph: Graph, container: ContainerClient, permission: str, code: str
) -> None:
    response = graph.submit(ADELE, policy_sas(container, permission))
    assert response.status_code == 400
    assert error_code(response) == code
    assert graph.sim.submissions_by_user() == {}


@pytest.mark.azurite
def test_read_access_refusal_deletes_request_info_when_it_can(
    graph: Graph, container: ContainerClient
) -> None:
    response = graph.submit(ADELE, policy_sas(container, "racwd"))
    assert error_code(response) == "StorageLocationShouldNotAllowReadAccess"
    assert "RequestInfo.json" not in blobs(container)


@pytest.mark.azurite
def test_user_delegation_sas_is_accepted_unless_the_knob_says_otherwise(
    graph: Graph, blob_service: BlobServiceClient, tls_files: TlsFiles, identity_env: dict[str, str]
) -> None:
    service = BlobServiceClient(
        blob_service.url,
        credential=ManagedIdentityCredential(),
        connection_verify=tls_files.ca_bundle,
    )
    now = datetime.now(UTC)
    key = service.get_user_delegation_key(now - timedelta(minutes=15), now + timedelta(days=7))

    def delegation_sas() -> str:
        container = blob_service.create_container(f"dsr-{uuid.uuid4().hex[:12]}")
        sas = generate_container_sas(
            ACCOUNT_NAME,
            container.container_name,
            user_delegation_key=key,
            permission=ContainerSasPermissions(add=True, create=True, write=True),
            expiry=now + timedelta(days=7),
            start=now - timedelta(minutes=15),
            protocol="https",
        )
        return f"{container.url}?{sas}"

    assert graph.submit(ADELE, delegation_sas()).status_code == 202
    graph.sim.faults.refuse_user_delegation_sas = True
    assert error_code(graph.submit(ADELE, delegation_sas())) == "StorageLocationInvalid"


@pytest.mark.azurite
def test_refuses_account_sas(graph: Graph, container: ContainerClient) -> None:
    sas = generate_account_sas(
        ACCOUNT_NAME,
        ACCOUNT_KEY,
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions(add=True, create=True, write=True),
        expiry=datetime.now(UTC) + timedelta(days=60),
        protocol="https",
    )
    response = graph.submit(ADELE, f"{container.url}?{sas}")
    assert response.status_code == 400
    assert error_code(response) == "StorageLocationNotServiceSAS"


@pytest.mark.azurite
def test_refuses_blob_level_sas(graph: Graph, container: ContainerClient) -> None:
    sas = generate_blob_sas(
        ACCOUNT_NAME,
        container.container_name,
        "RequestInfo.json",
        account_key=ACCOUNT_KEY,
        permission=BlobSasPermissions(add=True, create=True, write=True),
        expiry=datetime.now(UTC) + timedelta(days=60),
        protocol="https",
    )
    response = graph.submit(ADELE, f"{container.url}/RequestInfo.json?{sas}")
    assert response.status_code == 400
    assert error_code(response) == "StorageLocationNotAzureBlob"


@pytest.mark.azurite
def test_refuses_a_reused_container(graph: Graph, container: ContainerClient) -> None:
    location = policy_sas(container)
    assert graph.submit(ADELE, location).status_code == 202
    response = graph.submit(ADELE, location)
    assert response.status_code == 400
    assert error_code(response) == "StorageLocationAlreadyUsed"
    assert "RequestInfo.json" in response.json()["error"]["message"]
    assert graph.sim.submissions_by_user() == {ADELE: 1}


@pytest.mark.azurite
def test_answer_lost_after_submit_still_started_the_export(
    graph: Graph, container: ContainerClient
) -> None:
    """Submitting is not idempotent: a retry after a lost answer finds the container used."""
    graph.sim.set_faults(drop_next=1, drop_after_processing=True)
    location = policy_sas(container)
    with pytest.raises(requests.ConnectionError):
        graph.submit(ADELE, location)
    assert graph.sim.submissions_by_user() == {ADELE: 1}
    assert error_code(graph.submit(ADELE, location)) == "StorageLocationAlreadyUsed"


@pytest.mark.azurite
def test_a_submit_can_fail_after_its_receipt_and_before_its_command(
    graph: Graph, container: ContainerClient
) -> None:
    """The service writes RequestInfo.json while validating, then posts the command; when
    posting fails the container looks used, but Graph knows no such operation."""
    graph.sim.set_faults(fail_before_posting_next=1)
    location = policy_sas(container)
    assert graph.submit(ADELE, location).status_code == 500
    receipt = json.loads(container.get_blob_client("RequestInfo.json").download_blob().readall())
    assert graph.sim.operations() == []
    lookup = graph.poll(receipt["CommandId"])
    assert lookup.status_code == 400
    assert error_code(lookup) == "OperationNotFound"
    assert error_code(graph.submit(ADELE, location)) == "StorageLocationAlreadyUsed"


@pytest.mark.azurite
def test_unreachable_storage_is_storage_location_invalid(graph: Graph) -> None:
    location = "https://127.0.0.1:9/devstoreaccount1/exports?sv=2024-08-04&sr=c&si=p&sig=abc"
    response = graph.submit(ADELE, location)
    assert response.status_code == 400
    assert error_code(response) == "StorageLocationInvalid"


# -- the operation over (virtual) time ----------------------------------------------------------


@pytest.mark.azurite
def test_export_progresses_on_the_injected_clock_and_writes_every_file(
    graph: Graph, container: ContainerClient, sim_clock: ManualClock
) -> None:
    submitted = sim_clock()
    op_id = op_id_of(graph.submit(ADELE, policy_sas(container)))
    expected = graph.sim.expected_files(op_id)
    assert any(name.startswith("Teams/Chats/") for name in expected)

    first = graph.poll(op_id)
    assert first.status_code == 200
    assert "Retry-After" not in first.headers
    body = first.json()
    assert (body["status"], body["progress"], body["completedDateTime"]) == ("notStarted", 0, None)
    assert body["storageLocation"] == container.url
    assert body["userId"] == ADELE
    assert blobs(container).keys() == {"RequestInfo.json"}

    sim_clock.advance(DAY)
    body = graph.poll(op_id).json()
    assert body["status"] == "running"
    assert 0 < body["progress"] < 100
    partial = blobs(container)
    assert 1 < len(partial) < len(expected) + 1

    sim_clock.advance(2 * DAY)
    body = graph.poll(op_id).json()
    assert body["status"] == "complete"
    assert body["progress"] == 100
    assert body["completedDateTime"] == _iso(submitted + 3 * DAY)
    assert body["submittedDateTime"] == _iso(submitted)
    written = blobs(container)
    assert written.pop("RequestInfo.json") > 0
    assert written == expected


@pytest.mark.azurite
def test_background_ticker_writes_without_polling(
    tls_files: TlsFiles, container: ContainerClient, azurite: Azurite
) -> None:
    clock = ManualClock()
    with GraphSimulator(tls_files, clock=clock, tick_interval=0.05) as sim:
        graph = Graph(sim, tls_files.ca_bundle, make_token())
        op_id = op_id_of(graph.submit(ADELE, policy_sas(container)))
        clock.advance(4 * DAY)
        deadline = time.monotonic() + 10
        while sim.operation(op_id).status != "complete" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.operation(op_id).status == "complete"
        assert sim.operation(op_id).files_written == len(sim.expected_files(op_id))


@pytest.mark.azurite
def test_failing_user_ends_failed_with_partial_output(
    graph: Graph, container: ContainerClient, sim_clock: ManualClock
) -> None:
    graph.sim.faults.failing_users = {ALEX}
    op_id = op_id_of(graph.submit(ALEX, policy_sas(container)))
    sim_clock.advance(10 * DAY)
    body = graph.poll(op_id).json()
    assert body["status"] == "failed"
    assert body["completedDateTime"] is not None
    assert 0 < graph.sim.operation(op_id).files_written < len(graph.sim.expected_files(op_id))


@pytest.mark.azurite
def test_revoking_the_policy_fails_the_running_export(
    graph: Graph, container: ContainerClient, sim_clock: ManualClock
) -> None:
    op_id = op_id_of(graph.submit(ADELE, policy_sas(container)))
    container.set_container_access_policy({})  # revoke: the SAS stops working at once
    sim_clock.advance(DAY)
    assert graph.poll(op_id).json()["status"] == "failed"


@pytest.mark.azurite
def test_same_seed_same_files(
    tls_files: TlsFiles, blob_service: BlobServiceClient, sim_clock: ManualClock
) -> None:
    def manifest(seed: int) -> dict[str, int]:
        with GraphSimulator(tls_files, clock=sim_clock, seed=seed, tick_interval=None) as sim:
            graph = Graph(sim, tls_files.ca_bundle, make_token())
            new = blob_service.create_container(f"dsr-{uuid.uuid4().hex[:12]}")
            return sim.expected_files(op_id_of(graph.submit(ADELE, policy_sas(new))))

    assert manifest(1) == manifest(1)
    assert manifest(1) != manifest(2)


@pytest.mark.azurite
def test_no_signature_in_logs_or_inspection(
    graph: Graph, container: ContainerClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    location = policy_sas(container)
    signature = location.split("sig=")[1]
    op_id = op_id_of(graph.submit(ADELE, location))
    graph.poll(op_id)
    graph.submit(ADELE, location)  # an error path too

    for record in caplog.records:
        assert "sig=" not in record.getMessage(), record.name
    inspection = [
        repr(graph.sim.operations()),
        repr(graph.sim.requests()),
        repr(graph.sim.submissions_by_container()),
        graph.session.get(f"{graph.sim.base_url}/_sim/operations").text,
        graph.session.get(f"{graph.sim.base_url}/_sim/requests").text,
    ]
    assert not any(signature in text or "sig=" in text for text in inspection)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- restarts: Graph outlives the host -----------------------------------------------------------


def _restartable(
    tls_files: TlsFiles, clock: ManualClock, state: Path, port: int = 0
) -> GraphSimulator:
    return GraphSimulator(tls_files, clock=clock, tick_interval=None, port=port, state_file=state)


@pytest.mark.azurite
def test_a_restarted_simulator_keeps_its_port_operations_directory_and_ids(
    tls_files: TlsFiles, blob_service: BlobServiceClient, tmp_path: Path
) -> None:
    clock = ManualClock()
    state = tmp_path / "graph-simulator.json"
    first_container = blob_service.create_container(f"dsr-{uuid.uuid4().hex[:12]}")
    with _restartable(tls_files, clock, state) as sim:
        port = sim.port
        graph = Graph(sim, tls_files.ca_bundle, make_token())
        carol = sim.add_user("carol@contoso.example")
        op_id = op_id_of(graph.submit(carol, policy_sas(first_container)))
        clock.advance(DAY)
        before = graph.poll(op_id).json()
        written = sim.operation(op_id).files_written
    assert before["status"] == "running"
    assert 0 < written < len(sim.expected_files(op_id))
    assert state.stat().st_mode & 0o777 == 0o600  # it holds the SAS of a running export

    with _restartable(tls_files, clock, state, port=port) as again:
        assert again.base_url == f"https://127.0.0.1:{port}"
        graph = Graph(again, tls_files.ca_bundle, make_token())
        assert graph.poll(op_id).json() == before  # the same URL answers the same
        assert again.operation(op_id).files_written == written
        assert graph.resolve("carol@contoso.example").json()["id"] == carol
        clock.advance(2 * DAY)
        assert graph.poll(op_id).json()["status"] == "complete"  # through the SAS it kept
        assert blobs(first_container).keys() == {"RequestInfo.json", *again.expected_files(op_id)}
        second = blob_service.create_container(f"dsr-{uuid.uuid4().hex[:12]}")
        next_id = op_id_of(graph.submit(ADELE, policy_sas(second)))
        assert again.submissions_by_user() == {carol: 1, ADELE: 1}
    kept = {op["id"]: op for op in json.loads(state.read_text())["operations"]}
    assert kept[op_id]["sasUrl"] == ""  # a finished export's SAS is forgotten
    assert "sig=" in kept[next_id]["sasUrl"]  # a running one's is needed to go on writing

    # The id generator went on where it stopped: the ids an uninterrupted simulator hands out.
    with GraphSimulator(tls_files, clock=clock, tick_interval=None) as straight:
        graph = Graph(straight, tls_files.ca_bundle, make_token())
        assert straight.add_user("carol@contoso.example") == carol
        ids = [
            op_id_of(graph.submit(ADELE, policy_sas(blob_service.create_container(name))))
            for name in (f"dsr-{uuid.uuid4().hex[:12]}", f"dsr-{uuid.uuid4().hex[:12]}")
        ]
    assert ids == [op_id, next_id]


def test_a_restarted_simulator_refuses_a_taken_port(tls_files: TlsFiles, tmp_path: Path) -> None:
    with GraphSimulator(tls_files, tick_interval=None) as holder:
        again = _restartable(tls_files, ManualClock(), tmp_path / "s.json", port=holder.port)
        with pytest.raises(PortInUseError, match=f"port {holder.port} is in use"):
            again.start()


@pytest.mark.parametrize("content", ["", "{", "[]", '{"version": 1}', '{"version": 2, "seed": 0}'])
def test_an_unreadable_state_file_stops_the_start(
    tls_files: TlsFiles, tmp_path: Path, content: str
) -> None:
    state = tmp_path / "graph-simulator.json"
    state.write_text(content)
    with pytest.raises(StateFileError, match="Graph simulator's operations"):
        _restartable(tls_files, ManualClock(), state).start()
    assert state.read_text() == content


def test_a_state_file_of_another_seed_stops_the_start(tls_files: TlsFiles, tmp_path: Path) -> None:
    state = tmp_path / "graph-simulator.json"
    with _restartable(tls_files, ManualClock(), state):
        pass
    with pytest.raises(StateFileError, match="seed"):
        GraphSimulator(tls_files, tick_interval=None, seed=7, state_file=state).start()
