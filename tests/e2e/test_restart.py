"""A restart as the README tells it: stop ``python -m devhost serve``, start the same command.

Here the host runs as a person runs it, with no service from the test process: the stack starts
its own Azurite, identity endpoint and Graph simulator. Graph outlives the host in real life,
so exports accepted before the stop must still be Graph's after it, on the same URL, with their
progress and the files already written, and the DSRs in flight must complete, each with
exactly one export. Then the same after a kill, which leaves no chance to clean up.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.graph import DEMO_DIRECTORY
from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
from dsr_export.domain import evidence
from tests.e2e.host import FUNCTION_KEY, PERSONAL, REPO, TERMINAL, ServeProcess, user_env

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

#: Two Graph days at 10,000x: about 17 real seconds per export, time enough to stop mid-way.
SPEED = 10_000
EXPORT_DAYS = 2
#: By object id, and one by UPN (resolved by an activity before the restart or after it).
USERS = [
    DEMO_DIRECTORY["adele.vance@contoso.example"],
    "alex.wilber@contoso.example",
    DEMO_DIRECTORY["megan.bowen@contoso.example"],
]


@pytest.fixture(autouse=True)
def every_evidence_chain_verifies() -> None:
    """This module's host keeps its own storage, not the session's Azurite that the fixture of
    this name in conftest.py reads: the evidence of these DSRs is checked by the test itself, by
    the same rules (see ``_evidence_verifies``)."""


def _serve_args(state: Path) -> list[str]:
    # No local.settings.json: a developer's own (pointing at a real tenant) must never be read.
    settings = state.parent / "no-local-settings.json"
    args = ["--port", "0", "--state", str(state), "--speed", str(SPEED)]
    args += ["--export-days", str(EXPORT_DAYS), "--function-key", FUNCTION_KEY]
    return [*args, "--settings", str(settings)]


def _phases(host: ServeProcess, ids: list[str]) -> dict[str, dict[str, Any]]:
    docs = {}
    for request_id in ids:
        answer = host.get(f"/exports/{request_id}")
        if answer.status_code == 200:
            docs[request_id] = answer.json()
    return docs


def _until(host: ServeProcess, ids: list[str], phases: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    docs: dict[str, Any] = {}
    while time.monotonic() < deadline:
        docs = _phases(host, ids)
        if len(docs) == len(ids) and all(d["phase"] in phases for d in docs.values()):
            return docs
        time.sleep(0.2)
    raise AssertionError(f"not all of {ids} reached {phases}: {docs}")


def _queue_send(state: Path, body: dict[str, Any], env: dict[str, str]) -> None:
    """What the README says for a queue message: ``python -m devhost queue send FILE``."""
    file = state.parent / f"{body['requestId']}.json"
    file.write_text(json.dumps(body), encoding="utf-8")
    command = [sys.executable, "-m", "devhost", "queue", "send", str(file), "--state", str(state)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "sent message" in done.stdout


def test_dsrs_in_flight_complete_once_across_a_stop_and_start_of_serve(tmp_path: Path):
    state = tmp_path / "state"
    env = user_env()
    host = ServeProcess(state, env, _serve_args(state))
    ids = [f"RESTART-{n}" for n in range(len(USERS) + 1)]
    host.start()
    try:
        for request_id, user in zip(ids, USERS, strict=False):
            answer = host.post("/exports", {"requestId": request_id, "user": user})
            assert answer.status_code == 202, answer.text
        _queue_send(state, {"requestId": ids[-1], "user": USERS[0]}, env)

        _until(host, ids, {"exporting"}, timeout=60)
        deadline = time.monotonic() + 30
        while not any(op["filesWritten"] for op in host.sim("operations")):
            assert time.monotonic() < deadline, "no export wrote a file"
            time.sleep(0.1)
        before = {op["id"]: op for op in host.sim("operations")}
        first = dict(host.endpoints)
        host.stop()
        assert host.process is not None
        assert host.process.returncode == 0  # a clean stop, not a kill
        assert not any(d["phase"] in TERMINAL for d in _docs_in_task_hub(first))

        host.start()  # the same command
        assert host.endpoints["graphSimulator"] == first["graphSimulator"]
        assert host.endpoints["blob"] == first["blob"]
        after = {op["id"]: op for op in host.sim("operations")}
        assert set(after) == set(before)  # Graph kept every accepted export...
        for op_id, op in before.items():  # ...with its progress and the files it wrote
            assert after[op_id]["filesWritten"] >= op["filesWritten"]
            assert after[op_id]["progress"] >= op["progress"]

        docs = _until(host, ids, TERMINAL, timeout=120)
        assert {d["phase"] for d in docs.values()} == {"completed"}, docs
        stats = host.sim("stats")
        assert stats["operations"] == len(ids)  # one export per DSR, no second submit
        assert sorted(stats["submissionsByContainer"].values()) == [1] * len(ids)
        assert {d["operationId"] for d in docs.values()} == set(before)
        for doc in docs.values():
            files = host.sim(f"operations/{doc['operationId']}/files")
            assert doc["manifest"]["blobCount"] == len(files) + 1  # + RequestInfo.json

        # Killed this time (the README: "a host that was killed resumes too"): Azurite, which runs
        # in a session of its own, outlives the host and is ended by the next start; the id
        # generator goes on where it stopped, so the new export gets an id of its own.
        answer = host.post("/exports", {"requestId": "RESTART-NEW", "user": USERS[1]})
        assert answer.status_code == 202
        host.wait_for("RESTART-NEW", {"exporting"}, timeout=60)
        host.kill()
        host.start()
        new = host.wait_for("RESTART-NEW", TERMINAL, timeout=120)
        assert new["phase"] == "completed"
        assert new["operationId"] not in before
        assert host.sim("stats")["operations"] == len(ids) + 1
        _evidence_verifies(host, [*ids, "RESTART-NEW"])
    finally:
        host.stop()


def _docs_in_task_hub(endpoints: dict[str, Any]) -> list[dict[str, Any]]:
    """The custom status of every instance, read from the stopped host's task hub."""
    with sqlite3.connect(endpoints["taskHub"]) as connection:
        rows = connection.execute("SELECT custom_status FROM instances").fetchall()
    return [json.loads(row[0]) for row in rows if row[0]]


def _evidence_verifies(host: ServeProcess, ids: list[str]) -> None:
    """Each DSR's evidence log, written across the restarts, is one whole chain that starts
    with its receipt and holds no UPN."""
    service = BlobServiceClient.from_connection_string(
        host.endpoints["storageConnection"], connection_verify=host.endpoints["caBundle"]
    )
    logs = service.get_container_client(EVIDENCE_CONTAINER)
    for request_id in ids:
        text = logs.download_blob(evidence.blob_name(request_id)).readall().decode()
        verification = evidence.verify(text.splitlines(), request_id=request_id)
        assert verification.ok, f"{request_id}: {verification.summary()}"
        assert verification.records[0].kind is evidence.Kind.RECEIVED
        assert not [upn for upn in PERSONAL if upn in text.lower()]
