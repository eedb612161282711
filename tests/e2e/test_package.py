"""The subject's package on the offline host: ``POST .../package`` for a completed DSR builds it
in its orchestration; ``GET`` answers it; the zip in the delivery container holds every file of
the export as written, with a manifest of every member; the evidence has ``packaged`` with the
zip's SHA-256; a DSR still running is a 409.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
import zipfile
from typing import Any

import pytest
import requests

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from dsr_export.domain import evidence
from dsr_export.domain.evidence import Kind
from dsr_export.domain.package_manifest import PackageManifest, data_member
from tests.e2e.host import TERMINAL, HostProcess, export_container

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


def _completed(host: HostProcess, graph: GraphSimulator) -> dict[str, Any]:
    request_id = f"PKG-{uuid.uuid4().hex[:8].upper()}"
    user = str(uuid.uuid4())
    graph.add_user(f"pkg-{user[:8]}@contoso.example", user)
    assert host.post("/exports", {"requestId": request_id, "user": user}).status_code == 202
    doc = host.wait_for(request_id, TERMINAL)
    assert doc["phase"] == "completed", doc
    return doc


def _settled(host: HostProcess, request_id: str, timeout: float = 90.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = host.get(f"/exports/{request_id}/package")
        if answer.status_code != 202:
            return answer
        time.sleep(0.5)
    raise AssertionError(f"the package of {request_id} was still building after {timeout}s")


def test_a_completed_dsr_is_packaged_and_recorded(
    host: HostProcess, e2e_graph: GraphSimulator, azurite: Azurite, tls_files
):
    doc = _completed(host, e2e_graph)
    request_id = doc["requestId"]
    started = host.post(f"/exports/{request_id}/package", {"language": "de"})
    assert started.status_code == 202, started.text
    answer = _settled(host, request_id)
    assert answer.status_code == 200, answer.text
    package = answer.json()
    [part] = package["parts"]
    delivery = export_container(azurite, tls_files, package["container"])
    content = delivery.download_blob(part["name"]).readall()
    assert hashlib.sha256(content).hexdigest() == package["packageSha256"]
    archive = zipfile.ZipFile(io.BytesIO(content))
    manifest = PackageManifest.from_bytes(archive.read("manifest.json"))
    export = export_container(azurite, tls_files, doc["container"])
    for blob in export.list_blobs():
        if blob.name != "manifest.json":
            assert archive.read(data_member(blob.name)) == export.download_blob(blob.name).readall()
    assert {item.path for item in manifest.files} == set(archive.namelist()) - {
        "manifest.json",
        "receipt.jws",
    }
    again = host.post(f"/exports/{request_id}/package", None)
    assert again.status_code == 200
    assert again.json()["packageSha256"] == package["packageSha256"]
    logs = export_container(azurite, tls_files, "dsr-evidence")
    lines = logs.download_blob(evidence.blob_name(request_id)).readall().decode().splitlines()
    packaged = [r for r in evidence.verify(lines).records if r.kind is Kind.PACKAGED]
    assert [r.data["packageSha256"] for r in packaged] == [package["packageSha256"]]


def test_packaging_names_why_it_cannot(host: HostProcess, e2e_graph: GraphSimulator):
    doc = _completed(host, e2e_graph)
    request_id = doc["requestId"]
    assert host.post(f"/exports/{request_id}/package", {"language": "fr"}).status_code == 400
    assert host.get(f"/exports/{request_id}/package").status_code == 404
    unknown = host.post("/exports/NO-SUCH-DSR-1/package", None)
    assert unknown.status_code == 404
    running = f"PKG-RUN-{uuid.uuid4().hex[:6].upper()}"
    user = str(uuid.uuid4())
    e2e_graph.add_user(f"run-{user[:8]}@contoso.example", user)
    assert host.post("/exports", {"requestId": running, "user": user}).status_code == 202
    refused = host.post(f"/exports/{running}/package", None)
    assert refused.status_code == 409
    assert "only a completed DSR is packaged" in refused.json()["detail"]


def test_the_download_is_a_read_only_link_to_the_packages_one_blob(
    host: HostProcess, e2e_graph: GraphSimulator, azurite: Azurite, tls_files
):
    doc = _completed(host, e2e_graph)
    request_id = doc["requestId"]
    assert host.post(f"/exports/{request_id}/package", None).status_code == 202
    package = _settled(host, request_id).json()
    answer = host.post(f"/exports/{request_id}/download", None)
    assert answer.status_code == 201, answer.text
    grant = answer.json()
    assert grant["permissions"] == ["read"]
    [link] = grant["links"]
    assert link["part"] == "package.zip"
    fetched = requests.get(link["url"], timeout=30, verify=tls_files.ca_bundle)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == package["packageSha256"]
    assert fetched.headers["Content-Disposition"].startswith(
        f'attachment; filename="{request_id}-package.zip"'
    )
    base, _, query = link["url"].partition("?")
    listing = requests.get(
        f"{base.rsplit('/', 1)[0]}?restype=container&comp=list&{query}",
        timeout=30,
        verify=tls_files.ca_bundle,
    )
    assert listing.status_code == 403, "a link to one blob cannot list its container"
    other = requests.get(
        f"{base.rsplit('/', 1)[0]}/package-state.json?{query}",
        timeout=30,
        verify=tls_files.ca_bundle,
    )
    assert other.status_code == 403, "nor read another blob"
    logs = export_container(azurite, tls_files, "dsr-evidence")
    lines = logs.download_blob(evidence.blob_name(request_id)).readall().decode().splitlines()
    delivered = [r for r in evidence.verify(lines).records if r.kind is Kind.EXPORT_DELIVERED]
    assert [(r.data["packageSha256"], r.data["part"]) for r in delivered] == [
        (package["packageSha256"], "package.zip")
    ]
    assert all("sig=" not in line for line in lines)
