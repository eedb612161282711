"""After the export, on the offline host: delivery link, extension, retry after a fix, erasure,
and the unattended retention run with the fast clock.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import ContainerClient

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
from dsr_export.domain import evidence
from dsr_export.domain.request import container_name
from tests.e2e.host import (
    FUNCTION_KEY,
    TERMINAL,
    HostProcess,
    export_container,
    host_env,
    task_hub_rows,
)

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


def _rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def _user(graph: GraphSimulator, prefix: str) -> str:
    user = str(uuid.uuid4())
    graph.add_user(f"{prefix}-{user[:8]}@contoso.example", user)
    return user


def _completed(
    host: HostProcess, graph: GraphSimulator, prefix: str, **extra: Any
) -> dict[str, Any]:
    request_id = _rid(prefix)
    answer = host.post("/exports", {"requestId": request_id, "user": _user(graph, prefix), **extra})
    assert answer.status_code == 202, answer.text
    doc = host.wait_for(request_id, TERMINAL)
    assert doc["phase"] == "completed", doc
    return doc


def _records(azurite: Azurite, tls_files, request_id: str) -> list[evidence.EvidenceRecord]:
    logs = export_container(azurite, tls_files, EVIDENCE_CONTAINER)
    text = logs.download_blob(evidence.blob_name(request_id)).readall().decode()
    verification = evidence.verify(text.splitlines(), request_id=request_id)
    assert verification.ok, verification.summary()
    return list(verification.records)


def _delete(host: HostProcess, path: str, body: object) -> requests.Response:
    return requests.delete(
        f"{host.api}{path}",
        json=body,
        headers={"x-functions-key": FUNCTION_KEY},
        timeout=30,
    )


def test_a_completed_dsr_is_delivered_by_a_link_that_reads_that_container_only(
    host: HostProcess, e2e_graph: GraphSimulator, azurite: Azurite, tls_files
):
    doc = _completed(host, e2e_graph, "DELIVER")
    request_id = doc["requestId"]
    answer = host.post(f"/exports/{request_id}/download", None)
    assert answer.status_code == 201, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    link = answer.json()
    assert link["container"] == doc["container"]
    assert link["permissions"] == ["read", "list"]
    assert "sig=" in link["url"]
    assert "skoid=" in link["url"], "a user delegation SAS"
    assert "spr=https" in link["url"]

    delivered = ContainerClient.from_container_url(
        link["url"], connection_verify=tls_files.ca_bundle
    )
    names = {blob.name for blob in delivered.list_blobs()}
    manifest = json.loads(delivered.download_blob("manifest.json").readall())
    assert names == {b["name"] for b in manifest["blobs"]} | {"manifest.json"}
    with pytest.raises(HttpResponseError) as write:
        delivered.upload_blob("planted.txt", b"x")
    assert write.value.status_code == 403
    with pytest.raises(HttpResponseError) as delete:
        delivered.delete_blob("manifest.json")
    assert delete.value.status_code == 403
    other = link["url"].replace(doc["container"], container_name("SOMEONE-ELSE"))
    with pytest.raises(HttpResponseError) as elsewhere:
        list(
            ContainerClient.from_container_url(
                other, connection_verify=tls_files.ca_bundle
            ).list_blobs()
        )
    assert elsewhere.value.status_code == 403

    [record] = [
        r for r in _records(azurite, tls_files, request_id) if r.kind.value == "export_delivered"
    ]
    assert record.data["expiresAt"] == link["expiresAt"]
    assert record.data["permissions"] == "read,list"
    assert "sig=" not in json.dumps(record.to_dict())
    assert host.get(f"/exports/{request_id}").json()["data"]["deliveries"] == 1


def test_erasure_deletes_the_data_answers_a_receipt_and_delivery_is_refused_after(
    host: HostProcess, e2e_graph: GraphSimulator, azurite: Azurite, tls_files
):
    doc = _completed(host, e2e_graph, "ERASE")
    request_id = doc["requestId"]
    manifest = export_container(azurite, tls_files, doc["container"]).download_blob("manifest.json")
    digest = hashlib.sha256(manifest.readall()).hexdigest()

    answer = _delete(host, f"/exports/{request_id}/data", {"reason": "the subject asked"})
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["reason"] == "erasure_request"
    assert receipt["containers"] == [doc["container"]]
    assert receipt["blobCount"] == doc["manifest"]["blobCount"]
    assert receipt["totalBytes"] == doc["manifest"]["totalBytes"]
    assert receipt["manifestSha256"] == digest
    assert not export_container(azurite, tls_files, doc["container"]).exists()

    refused = host.post(f"/exports/{request_id}/download", None)
    assert refused.status_code == 409
    assert receipt["receiptId"] in refused.json()["detail"]
    again = _delete(host, f"/exports/{request_id}/data", {"reason": "again"})
    assert again.status_code == 409
    status = host.get(f"/exports/{request_id}").json()
    assert status["data"]["state"] == "deleted"
    assert status["data"]["receiptId"] == receipt["receiptId"]
    kinds = [r.kind.value for r in _records(azurite, tls_files, request_id)]
    assert kinds.count("erased") == 1
    completed = next(
        r for r in _records(azurite, tls_files, request_id) if r.kind.value == "completed"
    )
    assert completed.data["manifestSha256"] == digest, "the receipt names the manifest exported"


def _applied(host: HostProcess, request_id: str, count: int) -> dict[str, Any]:
    """Poll the status until ``count`` extensions are applied (or refused)."""
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = host.get(f"/exports/{request_id}").json()
        if (
            len(status.get("extensions") or []) + len(status.get("refusedExtensions") or [])
            >= count
        ):
            return status
        time.sleep(0.1)
    raise AssertionError(f"{count} asks never applied: {status}")


def test_a_running_dsr_is_extended_once_under_ccpa_and_the_status_keeps_both_deadlines(
    host: HostProcess, e2e_graph: GraphSimulator, azurite: Azurite, tls_files
):
    # Slow Graph's polls a little (real seconds), so the DSR is still running when extended.
    e2e_graph.set_faults(slow_next=3, slow_seconds=1.5, routes={"poll"})
    try:
        request_id = _rid("EXTEND")
        body = {"requestId": request_id, "user": _user(e2e_graph, "extend"), "regulation": "ccpa"}
        assert host.post("/exports", body).status_code == 202
        running = host.wait_for(request_id, {"exporting"})
        answer = host.post(
            f"/exports/{request_id}/extend",
            {"reason": "a complex request", "days": 30, "reasonCode": "complexity"},
        )
        assert answer.status_code == 202, answer.text
        asked = answer.json()
        assert (asked["state"], asked["asked"]) == ("pending", {"days": 30})
        assert "deadline" not in asked, "accepted, pending: not a deadline it cannot know"
        status = _applied(host, request_id, 1)
        assert status["extensions"][0]["askId"] == asked["askId"]
        assert status["originalDeadline"] == running["deadline"]
        assert status["deadline"] > running["deadline"]
        assert not status["terminal"], "Graph's slowed polls keep the DSR running"
        twice = host.post(f"/exports/{request_id}/extend", {"reason": "more", "days": 5})
        assert twice.status_code == 400
        assert "one extension" in twice.json()["errors"][0]["detail"]
    finally:
        e2e_graph.reset_faults()
    done = host.wait_for(request_id, TERMINAL)
    assert done["phase"] == "completed"
    assert done["originalDeadline"] == running["deadline"]
    assert [e["days"] for e in done["extensions"]] == [30]
    [record] = [r for r in _records(azurite, tls_files, request_id) if r.kind.value == "extended"]
    assert record.data["deadline"] == status["deadline"]
    assert record.data["askId"] == asked["askId"]
    assert record.data["reasonCode"] == "complexity"
    assert record.data["reasonSha256"] == hashlib.sha256(b"a complex request").hexdigest()


def _plus_days(moment: str, days: int) -> str:
    return (datetime.fromisoformat(moment) + timedelta(days=days)).isoformat()


def test_an_extension_storm_moves_the_deadline_by_exactly_what_was_asked_and_the_dsr_completes(
    host: HostProcess, e2e_graph: GraphSimulator, azurite: Azurite, tls_files
):
    """Issue 17, F-1: six one-day asks sent at once to an exporting GDPR DSR, and one sent
    right after a submit. Each ask is applied once, the DSR completes and revokes its SAS."""
    e2e_graph.set_faults(slow_next=4, slow_seconds=1.5, routes={"poll"})
    try:
        storm = _rid("STORM")
        body = {"requestId": storm, "user": _user(e2e_graph, "storm")}
        assert host.post("/exports", body).status_code == 202
        running = host.wait_for(storm, {"exporting"})
        ask = {"reason": "many systems", "days": 1, "reasonCode": "number_of_requests"}
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: host.post(f"/exports/{storm}/extend", ask), range(6)))
        assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
        ask_ids = {a.json()["askId"] for a in answers}
        assert len(ask_ids) == 6

        early = _rid("EARLY")
        body = {"requestId": early, "user": _user(e2e_graph, "early")}
        assert host.post("/exports", body).status_code == 202
        right_after = host.post(f"/exports/{early}/extend", {"reason": "at once", "days": 1})
        assert right_after.status_code == 202, right_after.text
        status = _applied(host, storm, 6)
    finally:
        e2e_graph.reset_faults()
    assert status["deadline"] == _plus_days(running["deadline"], 6), status
    assert status.get("refusedExtensions") is None
    assert {e["askId"] for e in status["extensions"]} == ask_ids

    for request_id, asks, days in ((storm, ask_ids, 6), (early, {right_after.json()["askId"]}, 1)):
        done = host.wait_for(request_id, TERMINAL)
        assert done["phase"] == "completed", done
        assert done["sas"]["revoked"] is True
        assert done["deadline"] == _plus_days(done["originalDeadline"], days)
        records = _records(azurite, tls_files, request_id)
        extended = [r for r in records if r.kind.value == "extended"]
        assert sorted(str(r.data["askId"]) for r in extended) == sorted(asks), "one per ask"
        assert [r.data["deadline"] for r in extended] == [
            _plus_days(done["originalDeadline"], n) for n in range(1, days + 1)
        ]
        kinds = [r.kind.value for r in records]
        assert kinds.count("extension_asked") == days
        assert {"completed", "sas_revoked"} <= set(kinds)


def test_a_dsr_failed_on_a_misconfiguration_is_retried_after_the_fix_with_one_more_export(
    tmp_path: Path, azurite: Azurite, e2e_identity, e2e_graph: GraphSimulator, tls_files
):
    user = _user(e2e_graph, "retry")
    request_id = _rid("RETRY")
    broken = host_env(azurite, e2e_identity, e2e_graph, tls_files)
    broken["EXPORT_SAS_MODE"] = "user-delegation"  # a SAS this Graph refuses: the setting at fault
    del broken["EXPORT_STORAGE_ACCOUNT_KEY"]
    e2e_graph.set_faults(refuse_user_delegation_sas=True)
    process = HostProcess(tmp_path / "host", broken).start()
    try:
        process.post("/exports", {"requestId": request_id, "user": user})
        failed = process.wait_for(request_id, TERMINAL)
    finally:
        process.stop()
        e2e_graph.set_faults(refuse_user_delegation_sas=False)
    assert failed["phase"] == "failed"
    assert failed["error"]["code"] == "StorageLocationInvalid"
    before = sum(1 for op in e2e_graph.operations() if op.user_id == user)

    fixed = HostProcess(tmp_path / "host", host_env(azurite, e2e_identity, e2e_graph, tls_files))
    fixed.start()
    try:
        first = fixed.post(f"/exports/{request_id}/retry", {"reason": "SAS mode fixed"})
        second = fixed.post(f"/exports/{request_id}/retry", {"reason": "SAS mode fixed"})
        assert first.status_code == 202, first.text
        assert second.status_code == 202, second.text
        assert first.json()["attempt"] == second.json()["attempt"] == 2
        done = fixed.wait_for(request_id, TERMINAL)
    finally:
        fixed.stop()
    assert done["phase"] == "completed", done.get("error")
    assert done["attempt"] == 2
    assert done["container"] != failed["container"], "a fresh container"
    assert done["deadline"] == failed["deadline"], "the same legal deadline"
    [earlier] = done["attempts"]
    assert (earlier["attempt"], earlier["phase"], earlier["errorCode"]) == (
        1,
        "failed",
        "StorageLocationInvalid",
    )
    after = sum(1 for op in e2e_graph.operations() if op.user_id == user)
    assert after == before + 1, "exactly one more export at Graph"
    kinds = [r.kind.value for r in _records(azurite, tls_files, request_id)]
    assert kinds.count("retried") == 1, kinds
    assert kinds.index("retried") < kinds.index("completed")


def _sweep(process: HostProcess) -> None:
    """Run the retention function now (the admin API, master key) and wait for its summary."""
    log = process.log_path
    runs = log.read_text(errors="replace").count("retention_run")
    answer = requests.post(
        f"{process.api.removesuffix('/api')}/admin/functions/retention_sweep",
        headers={"x-functions-key": str(process.endpoints["masterKey"])},
        json={"input": ""},
        timeout=30,
    )
    assert answer.status_code == 202, answer.status_code
    deadline = time.monotonic() + 60
    while log.read_text(errors="replace").count("retention_run") <= runs:
        assert time.monotonic() < deadline, "the retention run never finished"
        time.sleep(0.1)


def test_retention_deletes_on_time_purges_the_history_and_the_status_still_answers(
    tmp_path: Path, azurite: Azurite, e2e_identity, e2e_graph: GraphSimulator, tls_files
):
    env = host_env(azurite, e2e_identity, e2e_graph, tls_files)
    env.update(
        {
            "EXPORT_RETENTION_DAYS": "1",
            "HISTORY_RETENTION_DAYS": "2",
            # The evidence in its own account, reached with the identity (as in Azure).
            "EVIDENCE_STORAGE_BLOB_ENDPOINT": azurite.blob_endpoint,
        }
    )
    process = HostProcess(tmp_path / "host", env).start()
    try:
        # F-3: a UPN that does not resolve fails the DSR before it has a container.
        nobody = _rid("NOBODY")
        upn = f"nobody-{uuid.uuid4().hex[:8]}@contoso.example"
        assert process.post("/exports", {"requestId": nobody, "user": upn}).status_code == 202
        failed = process.wait_for(nobody, TERMINAL)
        assert failed["phase"] == "failed", failed
        [finished] = [r for r in _records(azurite, tls_files, nobody) if r.kind.value == "finished"]
        assert finished.data["errorCode"] == failed["error"]["code"]
        doc = _completed(process, e2e_graph, "RETAIN")
        request_id = doc["requestId"]
        _sweep(process)
        assert export_container(azurite, tls_files, doc["container"]).exists(), "not early"
        assert "retention_deleted" not in [
            r.kind.value for r in _records(azurite, tls_files, request_id)
        ]

        deadline = time.monotonic() + 120
        while export_container(azurite, tls_files, doc["container"]).exists():
            assert time.monotonic() < deadline, "the data was never deleted"
            _sweep(process)
        records = _records(azurite, tls_files, request_id)
        [receipt] = [r for r in records if r.kind.value == "retention_deleted"]
        assert receipt.data["blobCount"] == doc["manifest"]["blobCount"]
        assert receipt.data["retentionDays"] == 1
        ended = receipt.data["endedAt"]
        assert isinstance(ended, str)
        assert receipt.at > ended
        status = process.get(f"/exports/{request_id}").json()
        assert status["phase"] == "completed"
        assert status["data"]["state"] == "deleted"

        while process.get(f"/exports/{request_id}").json().get("historyPurged") is not True:
            assert time.monotonic() < deadline, "the history was never purged"
            _sweep(process)
        purged = process.get(f"/exports/{request_id}").json()
        assert purged["phase"] == "completed"
        assert purged["operationId"] == doc["operationId"]
        assert purged["data"]["receiptId"] == receipt.data["receiptId"]
        assert purged["deadline"] == doc["deadline"]
        kinds = [r.kind.value for r in _records(azurite, tls_files, request_id)]
        assert kinds[-1] == "history_purged"
        assert process.get(f"/exports/{request_id}/evidence").json()["verification"]["ok"]

        while process.get(f"/exports/{nobody}").json().get("historyPurged") is not True:
            assert time.monotonic() < deadline, "the failed DSR's history was never purged"
            _sweep(process)
        gone = process.get(f"/exports/{nobody}").json()
        assert (gone["phase"], gone["error"]["code"]) == ("failed", failed["error"]["code"])
        hub = task_hub_rows()
        assert not [row[:2] for row in hub if upn in row[2].lower()], "the UPN went with it"
        assert not [row[:2] for row in hub if row[1] in {nobody, request_id}]

        # F-4: the ids are not accepted again, whatever the task hub forgot.
        refused = {}
        for again, user in ((request_id, _user(e2e_graph, "again")), (nobody, upn)):
            before = _records(azurite, tls_files, again)
            answer = process.post("/exports", {"requestId": again, "user": user})
            assert answer.status_code == 409, answer.text
            refused[again] = answer.json()["detail"]
            assert "earlier DSR" in refused[again]
            assert _records(azurite, tls_files, again) == before, "nothing recorded"
        assert receipt.data["receiptId"] in refused[request_id]
        assert "ended completed" in refused[request_id]
        assert "ended failed" in refused[nobody]
    finally:
        process.stop()
