"""A sample subject's package, built for real: a small export in both of Microsoft's layouts
(product folders, and ``{assetGroupId}/{agentId}/...`` with a zip), with hostile names and
values among the files, written to a blob container, packaged by the app's own builder and
unpacked to a folder, ready to open in a browser.

Used by ``python -m devhost screenshots`` (the pictures in docs/delivery.md) and by the
package's browser test. The receipt is signed with a key made on the spot (:class:`LocalSigner`,
the ``ReceiptSigner`` protocol): these packages prove nothing to anyone else.
"""

from __future__ import annotations

import functools
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, cast

from azure.core.credentials import TokenCredential
from azure.storage.blob import BlobServiceClient

from dsr_export.adapters.package_builder import PackageBuilder, PackageJob, PackageOptions
from dsr_export.adapters.storage import ExportStorage
from dsr_export.domain.organisation import OrganisationProfile
from dsr_export.domain.package_manifest import delivery_container
from dsr_export.domain.request import container_name
from dsr_export.rendering.render import Facts
from dsr_export.settings import ExportStorageSettings, SasMode
from testsupport.receipt_signer import LocalSigner

REPO: Final = Path(__file__).resolve().parent.parent
SAMPLE_PROFILE: Final = REPO / "docs" / "organisation.sample.json"
#: A name that would run a script if a page printed it as markup.
HOSTILE_NAME: Final = "Exchange/<script>window.__pwned=1;document.title='pwned'</script>.json"
#: A value that would run a script if it became markup or a link.
HOSTILE_VALUE: Final = '<img src=x onerror="window.__pwned=1">'
FIXED: Final = (2026, 1, 1, 0, 0, 0)


def _agent_zip() -> bytes:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr(zipfile.ZipInfo("inner.json", FIXED), '{"a": 1}')
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
        events = [{"at": "2026-11-02T08:15:00Z", "event": "SignIn", "app": "Outlook"}]
        archive.writestr(zipfile.ZipInfo("events.json", FIXED), json.dumps(events))
        archive.writestr(zipfile.ZipInfo("../../escape.txt", FIXED), "x")
        archive.writestr(zipfile.ZipInfo("nested.zip", FIXED), inner.getvalue())
    return outer.getvalue()


@functools.cache
def sample_files() -> dict[str, bytes]:
    """Blob name -> content of the sample export."""
    request_info = {
        "Description": "Export personal data",
        "CorrelationId": "3f6d1c52-9a11-4e1b-8c55-0d2b9f6a1e77",
        "CommandId": "0a1b2c3d-0000-4000-8000-123456789abc",
        "Subject": {"ObjectId": "6e7b768e-07e2-4810-8459-485f84f8f204"},
        "Timestamp": "2026-11-30T09:12:44Z",
        "RequestGuid": "b4c1e2d3-1111-4222-8333-444455556666",
    }
    mailbox = [
        {"Folder": "Inbox", "Items": 1834, "LastAccess": "2026-11-29T17:02:11Z"},
        {"Folder": "Sent Items", "Items": 611, "LastAccess": "2026-11-29T16:40:03Z"},
        {"Folder": "Calendar", "Items": 229, "LastAccess": "2026-11-28T08:00:00Z"},
        {"Folder": "javascript:alert(document.domain)", "Items": 1, "LastAccess": None},
    ]
    sign_ins = {
        "SignIns": [
            {"When": "2026-11-29T08:01:12Z", "App": "Microsoft Teams", "Client": "Windows"},
            {"When": "2026-11-28T07:58:40Z", "App": "Outlook", "Client": "iOS"},
        ],
        "Devices": [{"Name": "LAPTOP-4821", "Os": "Windows 11", "Registered": True}],
    }
    return {
        "RequestInfo.json": json.dumps(request_info, indent=2).encode(),
        "Exchange/Mailbox.json": json.dumps(mailbox, indent=2).encode(),
        HOSTILE_NAME: json.dumps({"note": HOSTILE_VALUE, "rtl": "\u202eexe.txt"}).encode(),
        "AzureAD/SignInActivity.json": json.dumps(sign_ins, indent=2).encode(),
        "Teams/Chats/Chat-001.csv": (
            b"When,Chat,Messages\n2026-11-28,Project X,14\n2026-11-29,Team,3\n"
        ),
        "Teams/notes.txt": b"Meeting notes exported by Teams.\n",
        "Teams/broken.json": b"{not json",
        "OneDrive/thumbnail.bin": bytes(range(256)),
        "8f2c1a8e-0000-4000-8000-000000000001/4b1d7c00-agent/agent-data.zip": _agent_zip(),
        "8f2c1a8e-0000-4000-8000-000000000001/4b1d7c00-agent/status.json": b'{"exported": true}',
    }


def write_export(service: BlobServiceClient, request_id: str, now: datetime) -> str:
    """The sample export in the DSR's container, finalised (``manifest.json``) as the app does."""
    name = container_name(request_id)
    container = service.get_container_client(name)
    if not container.exists():
        container.create_container()
    for blob, content in sample_files().items():
        container.upload_blob(blob, content, overwrite=True)
    account = service.credential.account_name
    settings = ExportStorageSettings(
        blob_endpoint=service.url.rstrip("/"),
        sas_mode=SasMode.STORED_POLICY,
        sas_lifetime=timedelta(days=60),
        account_key=service.credential.account_key,
    )
    assert account
    storage = ExportStorage(settings, cast(TokenCredential, None))
    storage.write_manifest(name, request_id, now)
    return name


def build(
    service: BlobServiceClient,
    out: Path,
    *,
    language: str = "en",
    request_id: str | None = None,
    now: datetime | None = None,
) -> Path:
    """Build the sample package and unpack it into ``out``; returns ``out``."""
    moment = now or datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    request_id = request_id or f"SAMPLE-{uuid.uuid4().hex[:6].upper()}"
    name = write_export(service, request_id, moment)
    profile = OrganisationProfile.parse(json.loads(SAMPLE_PROFILE.read_text(encoding="utf-8")))
    builder = PackageBuilder(service, profile, PackageOptions())
    facts = Facts(
        request_id,
        packaged_at=moment,
        received_at=moment - timedelta(days=9),
        deadline=moment + timedelta(days=21),
        completed_at=moment - timedelta(days=1),
        regulation="GDPR",
    )
    result = builder.build(
        PackageJob(request_id, name, language, facts),
        LocalSigner(),
        now=moment,
        completed_at=(moment - timedelta(days=1)).isoformat(),
        evidence_head=None,
    )
    out.mkdir(parents=True, exist_ok=True)
    delivery = service.get_container_client(delivery_container(request_id))
    for part in result.parts:
        content = delivery.get_blob_client(part["name"]).download_blob().readall()
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            archive.extractall(out)
    return out
