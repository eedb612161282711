"""The receipt keys on the e2e host: ``/api/.well-known/jwks.json`` answers anyone (no function
key, no token) with the key of the host's own local Key Vault, reached by the app through the
managed identity and the proxy the offline host sets up; and a package the host built passes
``dsrctl verify`` against it."""

from __future__ import annotations

import time
import uuid

import requests
from click.testing import CliRunner

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from devhost.tls import TlsFiles
from dsr_export.domain import receipt
from dsrctl.commands import cli
from tests.e2e.host import TERMINAL, HostProcess, export_container
from tests.receipts import read_members, write_zip


def test_the_jwks_answers_without_any_credential(host: HostProcess) -> None:
    answer = requests.get(f"{host.api}/.well-known/jwks.json", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    [key] = answer.json()["keys"]
    assert key["kid"].startswith(f"{host.endpoints['receiptKey']}/")
    assert receipt.jwks_document([key]) == answer.json()
    # The same route under a function key or with another route's key: the same answer.
    keyed = requests.get(
        f"{host.api}/.well-known/jwks.json", headers={"x-functions-key": "wrong"}, timeout=30
    )
    assert keyed.status_code == 200


def test_a_package_the_host_built_passes_dsrctl_verify_and_fails_when_altered(
    host: HostProcess, e2e_graph: GraphSimulator, azurite: Azurite, tls_files: TlsFiles, tmp_path
) -> None:
    """The whole chain in the host process: the packaging activity signs through the local
    Key Vault with the managed identity, the JWKS route serves the key anonymously, and the
    package downloaded from the delivery container passes ``dsrctl verify``; one byte changed,
    it fails naming the file."""
    request_id = f"RCPT-{uuid.uuid4().hex[:8].upper()}"
    user = str(uuid.uuid4())
    e2e_graph.add_user(f"rcpt-{user[:8]}@contoso.example", user)
    assert host.post("/exports", {"requestId": request_id, "user": user}).status_code == 202
    assert host.wait_for(request_id, TERMINAL)["phase"] == "completed"
    assert host.post(f"/exports/{request_id}/package", None).status_code == 202
    deadline = time.monotonic() + 90
    while (answer := host.get(f"/exports/{request_id}/package")).status_code == 202:
        assert time.monotonic() < deadline, "the package was still building"
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    [part] = answer.json()["parts"]
    delivery = export_container(azurite, tls_files, answer.json()["container"])
    package = tmp_path / part["name"]
    package.write_bytes(delivery.download_blob(part["name"]).readall())

    jwks = f"{host.api}/.well-known/jwks.json"
    result = CliRunner().invoke(cli, ["verify", str(package), "--jwks", jwks])
    assert result.exit_code == 0, result.output
    assert f"request {request_id}" in result.output
    assert f"signed with {host.endpoints['receiptKey']}/" in result.output

    members = read_members(package)
    name = next(n for n in sorted(members) if n.startswith("data/"))
    changed = bytearray(members[name])
    changed[0] ^= 0x01
    write_zip(package, {**members, name: bytes(changed)})
    result = CliRunner().invoke(cli, ["verify", str(package), "--jwks", jwks])
    assert result.exit_code == 1
    assert f"{name}: its SHA-256 is" in result.output
