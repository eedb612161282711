"""Azurite starts on free ports, speaks TLS when asked, and leaves nothing behind."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)
from azure.storage.queue import QueueServiceClient

from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite, AzuriteError
from devhost.tls import TlsFiles

pytestmark = pytest.mark.azurite


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def test_https_endpoints_and_connection_string(azurite: Azurite, tls_files: TlsFiles) -> None:
    assert azurite.blob_endpoint.startswith("https://127.0.0.1:")
    assert azurite.blob_endpoint.endswith(f"/{ACCOUNT_NAME}")
    assert azurite.queue_endpoint != azurite.blob_endpoint
    assert "DefaultEndpointsProtocol=https" in azurite.connection_string
    assert f"AccountKey={ACCOUNT_KEY}" in azurite.connection_string

    blobs = BlobServiceClient.from_connection_string(
        azurite.connection_string, connection_verify=tls_files.ca_bundle
    )
    blobs.create_container("conn-string-works")
    queues = QueueServiceClient.from_connection_string(
        azurite.connection_string, connection_verify=tls_files.ca_bundle
    )
    queues.create_queue("conn-string-works")
    assert "conn-string-works" in [q.name for q in queues.list_queues()]


def test_certificate_is_the_trust_anchor(azurite: Azurite, tls_files: TlsFiles) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(azurite.blob_endpoint, verify=True, timeout=10)
    # Any HTTP answer (even an auth error) proves the TLS handshake verified.
    requests.get(f"{azurite.blob_endpoint}?comp=list", verify=tls_files.ca_bundle, timeout=10)


def test_sas_permissions_are_enforced_and_log_is_redacted(
    azurite: Azurite, tls_files: TlsFiles
) -> None:
    service = BlobServiceClient.from_connection_string(
        azurite.connection_string, connection_verify=tls_files.ca_bundle
    )
    container = service.create_container("https-only")
    now = datetime.now(UTC)
    sas = generate_container_sas(
        ACCOUNT_NAME,
        "https-only",
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(create=True, write=True),
        expiry=now + timedelta(hours=1),
        protocol="https",
    )
    writer = ContainerClient.from_container_url(
        f"{container.url}?{sas}", connection_verify=tls_files.ca_bundle
    )
    writer.upload_blob("a.json", b"{}")
    with pytest.raises(HttpResponseError) as refused:
        next(iter(writer.list_blobs()))
    assert refused.value.status_code == 403

    signature = sas.split("sig=")[1].split("&")[0]
    deadline = time.monotonic() + 10
    log = ""
    while "a.json" not in log and time.monotonic() < deadline:
        log = azurite.log_path.read_text()
        time.sleep(0.02)
    assert "a.json" in log
    assert signature not in log
    assert "sig=" not in log


def test_plain_http_instance_stops_leaving_no_process(tmp_path: Path) -> None:
    azurite = Azurite(location=tmp_path / "azurite").start()
    try:
        pid = azurite.pid
        assert azurite.scheme == "http"
        assert "DefaultEndpointsProtocol=http;" in azurite.connection_string
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container("plain")
        assert _group_members(pid)
    finally:
        azurite.stop()

    assert _group_members(pid) == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert (tmp_path / "azurite" / "azurite.log").exists()  # a given location is kept
    azurite.stop()  # idempotent


def test_temporary_location_is_removed_on_stop() -> None:
    with Azurite() as azurite:
        location = azurite.location
        assert location.is_dir()
    assert not location.exists()


def test_start_failure_reports_and_cleans_up(tmp_path: Path) -> None:
    broken = tmp_path / "azurite"
    broken.write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(AzuriteError, match="cannot start"):
        Azurite(executable=broken, location=tmp_path / "loc").start()
