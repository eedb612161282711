"""DSRs through the whole app on the offline host: success, each failure, restart, no secrets.

Every test that reaches Graph runs under both API versions the app supports (GRAPH_API_VERSION
``beta``, the default, and ``v1.0``): the session's own host serves one, a second shared host
the other. This module is where the version shows (the submit, the polls, the lost submit's
lookup, the health check's Graph probe); the rest of the e2e suite runs on the session's
version, ``--graph-api-version`` (beta unless given), which runs all of it on v1.0 at will.
Tests of the intake alone (refused requests) run once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from tests.e2e import host as e2e_host
from tests.e2e.host import (
    API_VERSIONS,
    TERMINAL,
    HostProcess,
    export_container,
    host_env,
    identity_with_roles,
)
from tests.secret_scan import SECRET

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ADELE = "6e7b768e-07e2-4810-8459-485f84f8f204"
MEGAN = "48d31887-5fad-4d73-a9f5-3c356e68a038"


def _rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture(params=API_VERSIONS)
def api_version(request: pytest.FixtureRequest) -> str:
    """GRAPH_API_VERSION of the test's host: each Graph-facing test runs under both."""
    return str(request.param)


@pytest.fixture
def app(request: pytest.FixtureRequest, api_version: str) -> HostProcess:
    """The shared host of ``api_version`` (the other version's starts on first use)."""
    name = "host" if api_version == e2e_host.API_VERSION else "other_version_host"
    process: HostProcess = request.getfixturevalue(name)
    return process


def _graph_paths(graph: GraphSimulator, operation_id: str) -> set[str]:
    """The API versions of every request Graph saw for this operation (its polls)."""
    return {r.path.split("/")[1] for r in graph.requests() if operation_id in r.path}


def test_dsr_over_http_completes_with_a_manifest_of_what_graph_wrote(
    app: HostProcess, api_version: str, e2e_graph: GraphSimulator, azurite: Azurite, tls_files
):
    host = app
    request_id = _rid("E2E")
    response = host.post("/exports", {"requestId": request_id, "user": ADELE})
    assert response.status_code == 202
    assert response.headers["Location"] == f"/api/exports/{request_id}"

    doc = host.wait_for(request_id, TERMINAL)
    assert doc["phase"] == "completed", doc
    assert doc["graphStatus"] == "complete"
    assert doc["sas"]["revoked"] is True

    expected = e2e_graph.expected_files(doc["operationId"])
    blobs = export_container(azurite, tls_files, doc["container"])
    manifest = json.loads(blobs.download_blob("manifest.json").readall())
    listed = {b["name"]: b["size"] for b in manifest["blobs"]}
    assert listed.pop("RequestInfo.json") > 0
    assert listed == expected
    assert doc["manifest"]["blobCount"] == len(expected) + 1
    assert doc["manifest"]["totalBytes"] == manifest["totalBytes"]
    assert e2e_graph.submissions_by_user()[ADELE] >= 1
    names = {blob.name for blob in blobs.list_blobs()}
    assert "audit.json" not in names, "the evidence log is the record, outside the container"
    digest = hashlib.sha256(blobs.download_blob("manifest.json").readall()).hexdigest()
    assert doc["manifest"]["manifestSha256"] == digest
    assert _graph_paths(e2e_graph, doc["operationId"]) == {api_version}, "the version asked for"


def test_the_health_check_passes_on_a_working_deployment(app: HostProcess):
    response = app.get("/health?deep=true")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {
        "settings": "ok",
        "graphRoles": "ok",
        "exportStorage": "ok",
        "entraKeys": "ok",
        # The offline host's own Key Vault, through the identity's read role on the key.
        "receiptKey": "ok",
    }


def test_the_same_request_twice_is_one_export(app: HostProcess, e2e_graph: GraphSimulator):
    host = app
    request_id = _rid("DUP")
    before = e2e_graph.submissions_by_user().get(MEGAN, 0)
    first = host.post("/exports", {"requestId": request_id, "user": MEGAN})
    second = host.post("/exports", {"requestId": request_id, "user": MEGAN})
    assert (first.status_code, second.status_code) == (202, 202)
    conflict = host.post("/exports", {"requestId": request_id, "user": ADELE})
    assert conflict.status_code == 409
    assert conflict.headers["Content-Type"].startswith("application/problem+json")
    assert host.wait_for(request_id, TERMINAL)["phase"] == "completed"
    assert e2e_graph.submissions_by_user()[MEGAN] == before + 1


def test_unknown_user_fails_as_user_not_found(app: HostProcess):
    host = app
    request_id = _rid("NOUSER")
    host.post("/exports", {"requestId": request_id, "user": str(uuid.uuid4())})
    doc = host.wait_for(request_id, TERMINAL)
    assert doc["phase"] == "failed"
    assert doc["error"]["code"] == "ResourceNotFound"
    assert doc["error"]["category"] == "user"


def test_operation_that_graph_fails_ends_failed(app: HostProcess, e2e_graph: GraphSimulator):
    host = app
    user = str(uuid.uuid4())
    e2e_graph.add_user(f"failing-{user[:8]}@contoso.example", user)
    e2e_graph.set_faults(failing_users={user})
    request_id = _rid("OPFAIL")
    host.post("/exports", {"requestId": request_id, "user": user})
    doc = host.wait_for(request_id, TERMINAL)
    assert doc["phase"] == "failed"
    assert doc["error"]["code"] == "ExportFailed"
    assert doc["sas"]["revoked"] is True


def test_invalid_request_is_refused_with_the_fields_at_fault(host: HostProcess):
    response = host.post("/exports", {"requestId": "has space", "user": "nobody"})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert pointers == {"/requestId", "/user"}
    unauthenticated = host.post("/exports", {}, headers={"x-functions-key": "wrong"})
    assert unauthenticated.status_code == 401


def test_permission_missing_fails_naming_the_permission(
    tmp_path: Path, azurite: Azurite, e2e_graph: GraphSimulator, tls_files, api_version: str
):
    with identity_with_roles(e2e_graph, ()) as no_roles:
        env = host_env(azurite, no_roles, e2e_graph, tls_files, api_version=api_version)
        process = HostProcess(tmp_path / "host", env)
        process.start()
        try:
            health = process.get("/health?deep=true")
            assert health.status_code == 503
            assert "User.Export.All" in json.dumps(health.json()["errors"])
            request_id = _rid("NOPERM")
            process.post("/exports", {"requestId": request_id, "user": ADELE})
            doc = process.wait_for(request_id, TERMINAL)
        finally:
            process.stop()
    assert doc["phase"] == "failed"
    assert doc["error"]["status"] == 403
    assert "User.Export.All" in doc["error"]["hint"]


def test_a_host_killed_mid_export_resumes_and_completes(
    tmp_path: Path,
    azurite: Azurite,
    e2e_identity,
    e2e_graph: GraphSimulator,
    tls_files,
    api_version: str,
):
    env = host_env(azurite, e2e_identity, e2e_graph, tls_files, api_version=api_version)
    process = HostProcess(tmp_path / "host", env).start()
    request_id = _rid("RESTART")
    try:
        process.post("/exports", {"requestId": request_id, "user": ADELE})
        process.wait_for(request_id, {"exporting"})
        process.kill()
        process.start()
        doc = process.wait_for(request_id, TERMINAL)
    finally:
        process.stop()
    assert doc["phase"] == "completed", doc
    containers = e2e_graph.submissions_by_container()
    assert [n for url, n in containers.items() if url.endswith(doc["container"])] == [1]
    assert _graph_paths(e2e_graph, doc["operationId"]) == {api_version}, "also after the kill"


def _run_one(process: HostProcess, user: str) -> dict[str, Any]:
    process.start()
    try:
        request_id = _rid("MISCONF")
        process.post("/exports", {"requestId": request_id, "user": user})
        return process.wait_for(request_id, TERMINAL)
    finally:
        process.stop()


def test_a_wrong_account_key_is_refused_at_intake_naming_the_setting(
    tmp_path: Path, azurite: Azurite, e2e_identity, e2e_graph: GraphSimulator, tls_files
):
    # The evidence opens before a DSR starts, in the export account: a key the account
    # refuses is found at the first request, and nothing starts that could not be recorded.
    env = host_env(azurite, e2e_identity, e2e_graph, tls_files)
    env["EXPORT_STORAGE_ACCOUNT_KEY"] = base64.b64encode(b"a rotated key, not this one").decode()
    process = HostProcess(tmp_path / "host", env).start()
    try:
        request_id = _rid("MISCONF")
        answer = process.post("/exports", {"requestId": request_id, "user": ADELE})
        status = process.get(f"/exports/{request_id}").status_code
    finally:
        process.stop()
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "EXPORT_STORAGE_ACCOUNT_KEY" in answer.json()["detail"]
    assert status == 404, "no DSR was started"


def test_a_sas_that_graph_refuses_fails_as_a_configuration_error(
    tmp_path: Path,
    azurite: Azurite,
    e2e_identity,
    e2e_graph: GraphSimulator,
    tls_files,
    api_version: str,
):
    env = host_env(azurite, e2e_identity, e2e_graph, tls_files, api_version=api_version)
    env["EXPORT_SAS_MODE"] = "user-delegation"
    del env["EXPORT_STORAGE_ACCOUNT_KEY"]
    e2e_graph.set_faults(refuse_user_delegation_sas=True)
    try:
        doc = _run_one(HostProcess(tmp_path / "host", env), ADELE)
    finally:
        e2e_graph.set_faults(refuse_user_delegation_sas=False)
    assert doc["phase"] == "failed"
    assert doc["error"]["code"] == "StorageLocationInvalid"
    assert doc["error"]["category"] == "configuration"
    assert "EXPORT_SAS_MODE" in doc["error"]["hint"]
    assert doc["sas"]["revoked"] is False, "a user delegation SAS can only expire"


def test_a_submit_whose_answer_is_lost_is_recovered_with_exactly_one_export(
    app: HostProcess, api_version: str, e2e_graph: GraphSimulator
):
    host = app
    user = str(uuid.uuid4())
    e2e_graph.add_user(f"lost-{user[:8]}@contoso.example", user)
    # Graph accepts the export, then the connection drops before the 202 reaches the app.
    e2e_graph.set_faults(drop_next=1, drop_after_processing=True, routes={"submit"})
    try:
        request_id = _rid("LOST")
        host.post("/exports", {"requestId": request_id, "user": user})
        doc = host.wait_for(request_id, TERMINAL)
    finally:
        e2e_graph.reset_faults()
    assert doc["phase"] == "completed", doc.get("error")
    assert e2e_graph.submissions_by_user()[user] == 1, "exactly one export reached Graph"
    [operation] = [op for op in e2e_graph.operations() if op.user_id == user]
    assert doc["operationId"] == operation.id, "the export found is the one Graph started"
    assert _graph_paths(e2e_graph, operation.id) == {api_version}, "looked up in its version"


def test_a_submit_graph_never_posted_runs_once_more_in_a_fresh_container(
    app: HostProcess, e2e_graph: GraphSimulator
):
    host = app
    user = str(uuid.uuid4())
    e2e_graph.add_user(f"unposted-{user[:8]}@contoso.example", user)
    # The service writes its receipt, then fails to post the command: no export exists.
    e2e_graph.set_faults(fail_before_posting_next=1, routes={"submit"})
    try:
        request_id = _rid("UNPOSTED")
        host.post("/exports", {"requestId": request_id, "user": user})
        doc = host.wait_for(request_id, TERMINAL, timeout=180)
    finally:
        e2e_graph.reset_faults()
    assert doc["phase"] == "completed", doc.get("error")
    assert doc["container"].endswith("-a2"), "the first container holds the unused receipt"
    assert e2e_graph.submissions_by_user()[user] == 1, "exactly one export reached Graph"


def test_no_secret_in_the_task_hub_or_the_host_log(app: HostProcess):
    # Last in this module on purpose: every DSR above that ran on this host left its history.
    host = app
    db = Path(host.endpoints["taskHub"])
    with sqlite3.connect(db) as connection:
        dump = "\n".join(connection.iterdump())
    assert "export_personal_data" in dump, "the task hub holds the runs above"
    assert "sig=" not in dump
    assert not SECRET.search(dump)
    log = host.log_path.read_text(encoding="utf-8", errors="replace")
    assert "export_submitted" in log, "the host log holds the runs above"
    assert not SECRET.search(log)
    assert "sig=" not in log
