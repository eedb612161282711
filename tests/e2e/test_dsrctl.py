"""dsrctl end to end: the operator CLI, run as CI runs it (``python -m dsrctl``, no terminal, no
stdin, ``TERM=dumb``), against the session's offline host.

Import of a CSV with good, duplicate and bad rows, watch until completed, show, ls, cancel, an
Entra token without the role, and the evidence verified by the CLI. And the lifecycle: retry after a
failure, extend while running, download verified against the manifest, erase with its receipt
(and the download refused after it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from devhost.tls import TlsFiles
from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
from dsr_export.domain import evidence as domain_evidence
from tests.e2e.host import FUNCTION_KEY, REPO, HostProcess, export_container, record_seen

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


def dsrctl(host: HostProcess, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m dsrctl ARGS`` against the host, with what CI has: no TTY, no stdin."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSRCTL_")}
    env.update(
        DSRCTL_URL=host.api.removesuffix("/api"),
        DSRCTL_FUNCTION_KEY=FUNCTION_KEY,
        # The export links point at Azurite, whose certificate the test run made.
        DSRCTL_CA_BUNDLE=host.env["REQUESTS_CA_BUNDLE"],
        TERM="dumb",
        CI="1",
        PYTHONUNBUFFERED="1",
    )
    run = subprocess.run(
        [sys.executable, "-m", "dsrctl", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    record_seen(run.stdout + run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    assert "\x1b[" not in run.stdout + run.stderr  # plain text, no terminal codes
    return run


def _user(graph: GraphSimulator) -> str:
    user = str(uuid.uuid4())
    graph.add_user(f"u{user[:8]}@contoso.example", user)
    return user


def _rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture(scope="module")
def imported(host: HostProcess, e2e_graph: GraphSimulator, tmp_path_factory) -> dict[str, str]:
    """One CSV import: two new DSRs, one submitted before (duplicate), one twice in the file,
    a user the API refuses, an id of another user's DSR, and a row too short to send."""
    first, second, earlier, other = (_user(e2e_graph) for _ in range(4))
    ids = {"first": _rid("CLI"), "second": _rid("CLI"), "earlier": _rid("CLI")}
    submitted = host.post("/exports", {"requestId": ids["earlier"], "user": earlier})
    assert submitted.status_code == 202
    rows = [
        "requestId,user,regulation,receivedAt,callbackUrl,requestedBy",
        f"{ids['first']},{first},gdpr,,,",  # line 2: accepted
        f"{ids['second']},{second},30,,,Privacy desk",  # line 3: accepted
        f"{ids['earlier']},{earlier},,,,",  # line 4: duplicate (submitted before)
        f"{ids['first'].lower()},{first},gdpr,,,",  # line 5: duplicate (line 2 again)
        f"{_rid('CLI')},not-a-user,,,,",  # line 6: refused, user
        f"{ids['second']},{other},,,,",  # line 7: refused, conflict
        f"{_rid('CLI')},{first}",  # line 8: refused here, too few fields
    ]
    path = tmp_path_factory.mktemp("csv") / "dsrs.csv"
    path.write_text("\n".join(rows) + "\n")
    run = dsrctl(host, "import", str(path))
    return {**ids, "stdout": run.stdout, "stderr": run.stderr, "code": str(run.returncode)}


def test_import_sorts_good_duplicate_and_bad_rows(imported: dict[str, str]):
    assert imported["code"] == "1", imported["stderr"]  # rows were refused
    lines = imported["stdout"].splitlines()
    first, second, earlier = imported["first"], imported["second"], imported["earlier"]
    assert lines[:3] == [
        f"line 2 ({first}): accepted",
        f"line 3 ({second}): accepted",
        f"line 4 ({earlier}): duplicate",
    ]
    assert lines[3] == f"line 5 ({first.lower()}): duplicate"
    assert lines[4].endswith(
        "refused: user: must be an Entra object id (GUID) or a user principal name"
    )
    assert lines[5] == (
        f"line 7 ({second}): refused: requestId: conflict: already used for a DSR of another user"
    )
    assert lines[6].startswith("line 8 (")
    assert "refused: regulation: missing: the row has 2 field(s), the header 6" in lines[6]
    assert lines[-1] == "7 rows: 2 accepted, 2 duplicate, 3 refused"


def test_watch_without_a_terminal_until_completed(host: HostProcess, imported: dict[str, str]):
    first, second = imported["first"], imported["second"]
    run = dsrctl(host, "watch", first, second, "--interval", "0.2", "--timeout", "100")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1] == "2 DSRs: 2 completed"
    for request_id in (first, second):
        mine = [line for line in lines if line.startswith(f"{request_id}: ")]
        assert len(mine) == len(set(mine)), "one line per change"
        assert mine[-1].startswith(f"{request_id}: completed")


def test_show_ls_and_evidence_of_a_completed_dsr(host: HostProcess, imported: dict[str, str]):
    first = imported["first"]
    host.wait_for(first, {"completed"})
    shown = dsrctl(host, "show", first)
    assert shown.returncode == 0, shown.stderr
    pairs = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert pairs["requestId"].strip() == first
    assert pairs["phase"].strip() == "completed"
    assert "blobs" in pairs["manifest"]
    as_json = json.loads(dsrctl(host, "--json", "show", first).stdout)
    assert as_json["terminal"] is True

    listed = dsrctl(host, "ls", "--phase", "completed", "--top", "2", "--all")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert first in {row[0] for row in rows}
    assert all(row[1] == "completed" for row in rows)
    assert "more" not in listed.stderr
    page = json.loads(dsrctl(host, "--json", "ls", "--top", "1").stdout)
    assert len(page["items"]) == 1

    evidence = dsrctl(host, "evidence", first, "--out", str(Path(host.state) / "ev.json"))
    assert evidence.returncode == 0, evidence.stdout + evidence.stderr
    assert "verified here: OK:" in evidence.stdout
    assert "service says: OK:" in evidence.stdout
    kinds = [line.split()[2] for line in evidence.stdout.splitlines()[1:] if line[:1].isdigit()]
    assert kinds[0] == "received"
    assert "completed" in kinds
    saved = json.loads((Path(host.state) / "ev.json").read_text())
    assert saved["requestId"] == first


def test_cancel_then_watch_reports_it_and_fails(host: HostProcess, e2e_graph: GraphSimulator):
    request_id = _rid("CLIX")
    submitted = dsrctl(host, "submit", "--request-id", request_id, "--user", _user(e2e_graph))
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.startswith(f"{request_id}: accepted")
    cancelled = dsrctl(host, "cancel", request_id, "--reason", "withdrawn by the data subject")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"{request_id}: cancel requested")
    run = dsrctl(host, "watch", request_id, "--interval", "0.2", "--timeout", "60")
    assert run.returncode == 1
    assert run.stdout.splitlines()[-2].startswith(f"{request_id}: cancelled")
    assert run.stdout.splitlines()[-1] == "1 DSR: 1 cancelled"
    again = dsrctl(host, "cancel", request_id, "--reason", "again")
    assert again.returncode == 1
    assert again.stderr.startswith("error: 409 DSR already finished")


def test_refusals_name_the_field_and_the_missing_role(host: HostProcess):
    unknown = dsrctl(host, "show", "NO-SUCH-DSR-1")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: 404 Unknown DSR: no DSR with requestId NO-SUCH-DSR-1"
    bad = dsrctl(host, "submit", "--request-id", "bad id", "--user", "x")
    assert bad.returncode == 1
    assert (
        bad.stderr.splitlines()[0] == "error: 400 Invalid request: one or more fields are invalid"
    )
    assert {line.split(":")[0].strip() for line in bad.stderr.splitlines()[1:]} == {
        "requestId",
        "user",
    }
    reader = host.token(["DSR.Read"])
    refused = dsrctl(host, "--token", reader, "cancel", "NO-SUCH-DSR-1", "--reason", "x")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: 403 ")
    assert "DSR.Manage" in refused.stderr
    assert reader not in refused.stdout + refused.stderr
    wrong_key = dsrctl(host, "--function-key", "not-the-key", "show", "NO-SUCH-DSR-1")
    assert wrong_key.returncode == 1
    assert "error: 401 Unauthorized: no valid function key or token" in wrong_key.stderr


def _failed(host: HostProcess, graph: GraphSimulator) -> tuple[str, str]:
    """A DSR whose export Graph failed (a fault in the simulator), and its user."""
    user, request_id = _user(graph), _rid("CLIR")
    graph.set_faults(failing_users={user})
    try:
        assert host.post("/exports", {"requestId": request_id, "user": user}).status_code == 202
        assert host.wait_for(request_id, {"completed", "failed"})["phase"] == "failed"
    finally:
        graph.reset_faults()
    return request_id, user


def test_retry_of_a_failed_dsr_runs_it_again_to_completion(
    host: HostProcess, e2e_graph: GraphSimulator
):
    request_id, _ = _failed(host, e2e_graph)
    retried = dsrctl(host, "retry", request_id, "--reason", "Graph fixed")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(f"{request_id}: retry accepted (attempt 2)")
    run = dsrctl(host, "watch", request_id, "--interval", "0.2", "--timeout", "100")
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(dsrctl(host, "--json", "show", request_id).stdout)
    assert doc["attempt"] == 2
    assert doc["attempts"][0]["phase"] == "failed"
    again = dsrctl(host, "retry", request_id, "--reason", "again")
    assert again.returncode == 1
    assert again.stderr.startswith("error: 409 ")


def test_extend_is_accepted_pending_and_the_dsr_moves_its_deadline(
    host: HostProcess, e2e_graph: GraphSimulator
):
    # Slow Graph's polls (real seconds) so the DSR is still running when extended.
    e2e_graph.set_faults(slow_next=3, slow_seconds=1.5, routes={"poll"})
    try:
        request_id = _rid("CLIE")
        submitted = dsrctl(host, "submit", "--request-id", request_id, "--user", _user(e2e_graph))
        assert submitted.returncode == 0, submitted.stderr
        before = host.wait_for(request_id, {"exporting"})
        run = dsrctl(
            host,
            "extend",
            request_id,
            "--reason",
            "complex",
            "--months",
            "1",
            "--reason-code",
            "complexity",
        )
        # Still running (Graph is slowed): three months is beyond GDPR's cap, whatever came first.
        beyond = dsrctl(host, "extend", request_id, "--reason", "more", "--months", "3")
    finally:
        e2e_graph.reset_faults()
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{request_id}: extension ask_")
    assert "(1 month) accepted, pending" in run.stdout
    assert beyond.returncode == 1
    assert beyond.stderr.startswith("error: 400 Extension not allowed"), beyond.stderr
    done = host.wait_for(request_id, {"completed"})
    assert done["originalDeadline"] == before["deadline"]
    assert done["deadline"] > before["deadline"]


def test_download_verifies_every_blob_against_the_manifest_and_erase_prints_the_receipt(
    host: HostProcess, e2e_graph: GraphSimulator, tmp_path: Path
):
    request_id = _rid("CLID")
    submitted = dsrctl(host, "submit", "--request-id", request_id, "--user", _user(e2e_graph))
    assert submitted.returncode == 0, submitted.stderr
    doc = host.wait_for(request_id, {"completed"})
    folder = tmp_path / "export"
    run = dsrctl(host, "download", request_id, "--to", str(folder))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "verified against manifest.json" in run.stdout.splitlines()[-1]
    manifest = json.loads((folder / "manifest.json").read_text())
    for blob in manifest["blobs"]:
        assert (folder / blob["name"]).stat().st_size == blob["size"]
    assert "sig=" not in run.stdout + run.stderr, "the link is never shown"
    assert len(manifest["blobs"]) == doc["manifest"]["blobCount"]

    refused = dsrctl(host, "erase", request_id, "--reason", "handed to the data subject")
    assert refused.returncode == 2, "no terminal: --yes is required"
    erased = dsrctl(host, "erase", request_id, "--reason", "handed to the data subject", "--yes")
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"{request_id}: erased {doc['manifest']['blobCount']} blob(s)")
    assert "rcpt_" in erased.stdout
    gone = dsrctl(host, "download", request_id, "--to", str(tmp_path / "again"))
    assert gone.returncode == 1
    assert "409" in gone.stderr
    evidence = dsrctl(host, "evidence", request_id)
    assert evidence.returncode == 0, evidence.stdout + evidence.stderr
    assert "verified here: OK:" in evidence.stdout
    kinds = [line.split()[2] for line in evidence.stdout.splitlines()[1:] if line[:1].isdigit()]
    assert kinds[-2:] == ["export_delivered", "erased"]


def test_evidence_names_a_malformed_line_and_no_reader_of_the_service_crashes(
    host: HostProcess, azurite: Azurite, tls_files: TlsFiles
):
    """F-8 against the host: a stored log whose second line holds NaN and third 100,000 nested
    arrays (someone with more rights than the app wrote them). The evidence route, the status
    route and the CLI raised on such lines before; now the CLI names the line, exit 1."""
    request_id = _rid("CLIV")
    opening = domain_evidence.chain(
        None, "received", datetime.now(UTC), request_id, {"source": "http"}
    )
    logs = export_container(azurite, tls_files, EVIDENCE_CONTAINER)
    if not logs.exists():
        logs.create_container()
    blob = logs.get_blob_client(domain_evidence.blob_name(request_id))
    blob.upload_blob(
        opening.to_line() + b'{"seq": 1, "x": NaN}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    )
    try:
        run = dsrctl(host, "evidence", request_id)
        assert run.returncode == 1, run.stdout + run.stderr
        said = "BROKEN at record 1 (line 2): not JSON: NaN is not a number JSON allows"
        assert f"verified here: {said}" in run.stdout
        assert f"service says: {said}" in run.stdout
        shown = dsrctl(host, "show", request_id)  # reads the evidence too (a purged DSR?)
        assert shown.returncode == 1
        assert shown.stderr.startswith("error: 404 "), shown.stderr
    finally:
        blob.delete_blob()  # the session's check of every chain is for the DSRs that ran


def test_download_refuses_names_one_by_one_and_the_rest_downloads(
    host: HostProcess, e2e_graph: GraphSimulator, azurite: Azurite, tls_files: TlsFiles, tmp_path
):
    """F-9 and F-10 against the host and Azurite: blobs added to a finished export's container
    whose names collide with a listed blob's file, are too long for the file system, or carry
    terminal codes; each is refused by name (escaped), the rest is downloaded and verified."""
    request_id = _rid("CLIN")
    submitted = dsrctl(host, "submit", "--request-id", request_id, "--user", _user(e2e_graph))
    assert submitted.returncode == 0, submitted.stderr
    doc = host.wait_for(request_id, {"completed"})
    container = export_container(azurite, tls_files, doc["container"])
    listed = json.loads(container.download_blob("manifest.json").readall())["blobs"]
    first = str(listed[0]["name"])
    added = {
        first.replace("/", "//", 1) if "/" in first else first + "/": b"forged",
        "x" * 300: b"long",
        # Azurite cannot list a name with C0 controls (XML 1.0 has no ESC): a bidi override
        # and DEL here; the unit tests feed ESC, OSC and CR.
        "Teams/\u202enosj.exe\x7f": b"{}",
    }
    for name, data in added.items():
        container.upload_blob(name, data, overwrite=True)
    run = dsrctl(host, "download", request_id, "--to", str(tmp_path / "export"))
    assert run.returncode == 1, run.stdout + run.stderr
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == len(added), run.stdout + run.stderr
    assert any(line.startswith("FAILED " + "x" * 300 + ": not written: ") for line in failed)
    assert "FAILED Teams/\\u202enosj.exe\\x7f: not listed in manifest.json (unverified)" in failed
    assert not any(char in run.stdout for char in "\u202e\x7f")
    for blob in listed:  # every listed blob has its own bytes
        path = tmp_path / "export" / blob["name"]
        assert path.stat().st_size == blob["size"], blob["name"]
    ok = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("ok ")]
    assert set(ok) >= {str(blob["name"]) for blob in listed}
