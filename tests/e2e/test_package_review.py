"""Review before release on the offline host (``PACKAGE_REVIEW=required``): a DSR completes, its
package is built as a preview that cannot go out, a ``DSR.Manage`` caller lists its files,
withholds one with a reason code and approves; the final package leaves that file out and says
"1 file was withheld." with the code, the evidence records the exclusion by hash and code (never a
name), and ``dsrctl verify`` passes on the final package against the host's JWKS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles
from dsr_export.domain import evidence
from dsr_export.domain.evidence import Kind
from dsr_export.domain.package_manifest import PackageManifest
from dsrctl.commands import cli
from tests.e2e.host import HostProcess, export_container, host_env
from tests.e2e.test_package import _completed, _settled
from tests.receipts import read_members

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


@pytest.fixture(scope="module")
def review_host(
    tmp_path_factory: pytest.TempPathFactory,
    azurite: Azurite,
    e2e_identity: ManagedIdentityEndpoint,
    e2e_graph: GraphSimulator,
    tls_files: TlsFiles,
) -> Iterator[HostProcess]:
    env = {**host_env(azurite, e2e_identity, e2e_graph, tls_files), "PACKAGE_REVIEW": "required"}
    process = HostProcess(tmp_path_factory.mktemp("host-review"), env)
    process.start()
    yield process
    process.stop()


def _review(host: HostProcess, request_id: str, token: str) -> dict[str, Any]:
    answer = host.get(
        f"/exports/{request_id}/package/review", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _final(host: HostProcess, request_id: str, timeout: float = 90.0) -> dict[str, Any]:
    """The package once rebuilt without the withheld files (while it builds, the review
    answers 409 and the package 202 or the preview)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = host.get(f"/exports/{request_id}/package")
        if answer.status_code == 200 and answer.json().get("withheld"):
            return dict(answer.json())
        time.sleep(0.5)
    raise AssertionError(f"the final package of {request_id} was still building")


def test_a_reviewer_withholds_a_file_and_the_final_package_says_so(
    review_host: HostProcess,
    e2e_graph: GraphSimulator,
    azurite: Azurite,
    tls_files: TlsFiles,
    tmp_path,
) -> None:
    host = review_host
    request_id = _completed(host, e2e_graph)["requestId"]
    assert host.post(f"/exports/{request_id}/package", None).status_code == 202
    preview = _settled(host, request_id)
    assert preview.status_code == 200, preview.text
    held = host.post(f"/exports/{request_id}/download", None)
    assert held.status_code == 409, "a preview never goes out"
    assert "review" in held.json()["detail"]

    manager = host.token(["DSR.Manage"])
    reader = host.token(["DSR.Read"])
    refused = host.get(
        f"/exports/{request_id}/package/review", headers={"Authorization": f"Bearer {reader}"}
    )
    assert refused.status_code == 403, "the listing names the person's files: Manage only"
    review = _review(host, request_id, manager)
    assert review["state"] == "open"
    files = review["files"]
    assert len(files) > 1
    assert all(f["path"].startswith("data/") and len(f["sha256"]) == 64 for f in files)
    withheld = next(f for f in files if f["path"] != "data/RequestInfo.json")

    decided = host.post(
        f"/exports/{request_id}/package/review",
        {
            "withhold": [{"sha256": withheld["sha256"], "reasonCode": "OTHERS_RIGHTS"}],
            "approve": True,
        },
        headers={"Authorization": f"Bearer {manager}"},
    )
    assert decided.status_code in (200, 202), decided.text
    package = _final(host, request_id)
    assert _review(host, request_id, manager)["state"] == "released"
    assert package["packageSha256"] != preview.json()["packageSha256"]
    [part] = package["parts"]
    delivery = export_container(azurite, tls_files, package["container"])
    path = tmp_path / part["name"]
    path.write_bytes(delivery.download_blob(part["name"]).readall())
    members = read_members(path)
    manifest = PackageManifest.from_bytes(members["manifest.json"])
    assert withheld["path"] not in members
    assert withheld["sha256"] not in {item.sha256 for item in manifest.files}
    assert [w.to_dict() for w in manifest.withheld] == [
        {"sha256": withheld["sha256"], "reasonCode": "OTHERS_RIGHTS"}
    ]
    index, readme = members["index.html"].decode(), members["README.txt"].decode()
    for page in (index, readme):
        assert "1 file was withheld." in page
        assert "OTHERS_RIGHTS" in page

    logs = export_container(azurite, tls_files, "dsr-evidence")
    lines = logs.download_blob(evidence.blob_name(request_id)).readall().decode().splitlines()
    records = evidence.verify(lines).records
    [excluded] = [r for r in records if r.kind is Kind.PACKAGE_FILE_WITHHELD]
    assert excluded.data["sha256"] == withheld["sha256"]
    assert excluded.data["reasonCode"] == "OTHERS_RIGHTS"
    [reviewed] = [r for r in records if r.kind is Kind.PACKAGE_REVIEWED]
    assert reviewed.data["withheldCount"] == 1
    assert withheld["path"].removeprefix("data/") not in "\n".join(lines), "never a name"

    result = CliRunner().invoke(
        cli, ["verify", str(path), "--jwks", f"{host.api}/.well-known/jwks.json"]
    )
    assert result.exit_code == 0, result.output
    assert f"request {request_id}" in result.output
    released = host.post(f"/exports/{request_id}/download", None)
    assert released.status_code == 201, released.text
