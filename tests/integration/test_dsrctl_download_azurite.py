"""dsrctl download against Azurite: the real storage SDK with a real read+list SAS.

Moved from tests/unit (issue 18): it needs the storage emulator, which the unit tier never starts.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from dsrctl.commands import cli
from tests.unit.test_dsrctl_download import EXPORT, manifest


@pytest.mark.azurite
def test_download_from_azurite_through_a_container_sas(
    azurite, tls_files, httpserver: HTTPServer, tmp_path: Path
):
    from azure.storage.blob import (
        BlobServiceClient,
        ContainerSasPermissions,
        ContentSettings,
        generate_container_sas,
    )

    from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME

    service = BlobServiceClient(
        azurite.blob_endpoint,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
        connection_verify=tls_files.ca_bundle,
    )
    name = f"dsr-cli-{uuid.uuid4().hex[:10]}"
    container = service.create_container(name)
    for blob, data in EXPORT.items():
        container.upload_blob(
            blob,
            data,
            content_settings=ContentSettings(
                content_md5=bytearray(hashlib.md5(data, usedforsecurity=False).digest())
            ),
        )
    container.upload_blob("manifest.json", manifest(EXPORT))
    sas = generate_container_sas(
        ACCOUNT_NAME,
        name,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(minutes=10),
    )
    grant = {"url": f"{azurite.blob_endpoint}/{name}?{sas}", "expiresAt": "x", "container": name}
    httpserver.expect_request("/api/exports/RITM1/download", method="POST").respond_with_json(
        grant, status=201
    )
    base = ["--url", httpserver.url_for("/"), "--ca-bundle", tls_files.ca_bundle]
    folder = tmp_path / "RITM1"
    result = CliRunner().invoke(cli, [*base, "download", "RITM1", "--to", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "Exchange/mail-1.json").read_bytes() == EXPORT["Exchange/mail-1.json"]
    assert result.stdout.splitlines()[-1].startswith("verified against manifest.json: 4 files")
    assert sas.split("sig=")[1][:10] not in result.output
    # Changed in storage after the manifest was written: caught.
    container.upload_blob("Exchange/mail-1.json", b"tampered", overwrite=True)
    tampered = CliRunner().invoke(cli, [*base, "download", "RITM1", "--to", str(tmp_path / "t")])
    assert tampered.exit_code == 1
    assert "FAILED Exchange/mail-1.json" in tampered.stdout
    container.delete_container()
    gone = CliRunner().invoke(cli, [*base, "download", "RITM1", "--to", str(tmp_path / "g")])
    assert gone.exit_code == 1
    assert "no longer in storage" in gone.stderr
    assert "sig=" not in gone.output
