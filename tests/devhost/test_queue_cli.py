"""``python -m devhost queue send FILE``: a message on the running host's queue, as a producer
puts it there (the storage connection from the host's endpoints.json, base64 as host.json says).
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from devhost.__main__ import main
from devhost.azurite import Azurite
from devhost.stack import ENDPOINTS_FILE
from devhost.tls import TlsFiles

pytestmark = pytest.mark.azurite

BODY = b'{"requestId": "Q-1", "user": "6e7b768e-07e2-4810-8459-485f84f8f204"}\n'


def _running_host(state: Path, azurite: Azurite, tls: TlsFiles, encoding: str = "base64") -> None:
    """The part of a running host's endpoints.json the queue tool reads."""
    state.mkdir(parents=True, exist_ok=True)
    endpoints = {
        "storageConnection": azurite.connection_string,
        "caBundle": tls.ca_bundle,
        "queueMessageEncoding": encoding,
        "pid": 1,
    }
    (state / ENDPOINTS_FILE).write_text(json.dumps(endpoints))


@pytest.fixture
def queue(tmp_path: Path, azurite: Azurite, tls_files: TlsFiles) -> str:
    """A fresh queue's name, and a host "running" on tmp_path (base64, as host.json says)."""
    _running_host(tmp_path, azurite, tls_files)
    return f"q-{uuid.uuid4().hex[:8]}"


def _send(state: Path, body: bytes, *options: str) -> int:
    """``python -m devhost queue send FILE --state STATE [options]`` with ``body`` in FILE."""
    file = state / "message.json"
    file.write_bytes(body)
    return main(["queue", "send", str(file), "--state", str(state), *options])


def _raw(azurite: Azurite, tls: TlsFiles, queue: str) -> list[Any]:
    client = QueueClient.from_connection_string(
        azurite.connection_string, queue, connection_verify=tls.ca_bundle
    )
    return list(client.peek_messages(max_messages=32))


def test_send_puts_the_file_on_dsr_requests_base64_encoded(
    tmp_path: Path,
    azurite: Azurite,
    tls_files: TlsFiles,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default queue is the app's; a queue of that name may already hold messages from
    other tests, so the message is found by its id."""
    _running_host(tmp_path, azurite, tls_files)
    monkeypatch.chdir(tmp_path)
    assert _send(tmp_path, BODY) == 0
    out = capsys.readouterr().out
    message_id = out.split()[2]
    assert out.startswith(f"sent message {message_id} to queue dsr-requests")
    sent = [m for m in _raw(azurite, tls_files, "dsr-requests") if m.id == message_id]
    assert [m.content for m in sent] == [base64.b64encode(BODY).decode()]  # exactly, as sent


def test_send_takes_another_queue_stdin_and_encoding_none(
    tmp_path: Path,
    azurite: Azurite,
    tls_files: TlsFiles,
    queue: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _running_host(tmp_path, azurite, tls_files, encoding="none")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"not json at all")))
    assert main(["queue", "send", "-", "--queue", queue, "--state", str(tmp_path)]) == 0
    assert [m.content for m in _raw(azurite, tls_files, queue)] == ["not json at all"]
    capsys.readouterr()


def test_raw_skips_the_encoding_as_a_misconfigured_producer_does(
    tmp_path: Path,
    azurite: Azurite,
    tls_files: TlsFiles,
    queue: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _send(tmp_path, b'{"requestId": "RAW-1"}', "--raw", "--queue", queue) == 0
    assert [m.content for m in _raw(azurite, tls_files, queue)] == ['{"requestId": "RAW-1"}']
    capsys.readouterr()


def test_peek_shows_the_bodies_decoded_and_leaves_them(
    tmp_path: Path,
    azurite: Azurite,
    tls_files: TlsFiles,
    queue: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _send(tmp_path, b'{"a": 1}', "--queue", queue)
    QueueClient.from_connection_string(
        azurite.connection_string, queue, connection_verify=tls_files.ca_bundle
    ).send_message("not base64 !")  # a poisoned message lies there as it came
    capsys.readouterr()
    assert main(["queue", "peek", "--queue", queue, "--state", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == ['{"a": 1}', "not base64 !"]
    assert len(_raw(azurite, tls_files, queue)) == 2
    assert main(["queue", "peek", "--queue", "no-such-queue", "--state", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""


def test_without_a_running_host_it_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _send(tmp_path, b"{}") == 1
    error = capsys.readouterr().err
    assert f"no host is running on {tmp_path}" in error
    assert "make serve" in error


def test_a_host_that_is_gone_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], azurite: Azurite, tls_files: TlsFiles
) -> None:
    """endpoints.json outlives a killed host: the tool says the host may not be running."""
    _running_host(tmp_path, azurite, tls_files)
    endpoints = json.loads((tmp_path / ENDPOINTS_FILE).read_text())
    endpoints["storageConnection"] = endpoints["storageConnection"].replace(
        str(azurite.ports["queue"]), "1"
    )
    (tmp_path / ENDPOINTS_FILE).write_text(json.dumps(endpoints))
    assert _send(tmp_path, b"{}") == 1
    assert "still running?" in capsys.readouterr().err
