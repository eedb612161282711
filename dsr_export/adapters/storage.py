"""The export account, as the app itself sees it (never through the Graph SAS).

In ``stored-policy`` mode the app uses the account key it already needs for signing; in
``user-delegation`` mode the managed identity (``Storage Blob Data Contributor`` on that account).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from dsr_export.adapters import sas
from dsr_export.domain.request import CONTAINER_PREFIX
from dsr_export.settings import ExportStorageSettings, SasMode

#: Written by Graph when it accepts a SAS; its presence means a submit went through.
REQUEST_INFO_BLOB: Final = "RequestInfo.json"
MANIFEST_BLOB: Final = "manifest.json"
#: The DSR's audit record: what was asked, when, by which ticket, and how it ended.
AUDIT_BLOB: Final = "audit.json"
#: Written by the app, not by Graph: never listed in the manifest.
_APP_BLOBS: Final = frozenset({MANIFEST_BLOB, AUDIT_BLOB})


@dataclass(frozen=True)
class ManifestSummary:
    """Totals of an export, small enough for activity results and the status document."""

    blob_count: int
    total_bytes: int
    products: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON form used in activity results and status documents."""
        return {
            "blobCount": self.blob_count,
            "totalBytes": self.total_bytes,
            "products": self.products,
            "manifestBlob": MANIFEST_BLOB,
        }


class ExportStorage:
    """Container lifecycle, SAS minting and the manifest for one export account."""

    def __init__(self, settings: ExportStorageSettings, credential: TokenCredential) -> None:
        self._settings = settings
        blob_credential: Any
        if settings.sas_mode is SasMode.STORED_POLICY:
            blob_credential = {
                "account_name": settings.account_name,
                "account_key": settings.account_key,
            }
        else:
            blob_credential = credential
        self._service = BlobServiceClient(settings.blob_endpoint, credential=blob_credential)

    @property
    def service(self) -> BlobServiceClient:
        """The account's client, as the app reaches it (the evidence log lives there too)."""
        return self._service

    def probe(self) -> None:
        """A harmless read that needs the same access as the export (for the health check)."""
        listing = self._service.list_containers(
            name_starts_with=CONTAINER_PREFIX, results_per_page=1
        )
        next(iter(listing), None)

    @property
    def policy_settle_seconds(self) -> int:
        """How long a new stored access policy needs before Graph may check a SAS bound to it
        (0 when the SAS is not bound to one)."""
        return sas.POLICY_SETTLE_SECONDS if self._settings.sas_mode is SasMode.STORED_POLICY else 0

    def container(self, name: str) -> ContainerClient:
        """A client for one export container."""
        return self._service.get_container_client(name)

    def prepare(self, name: str, now: datetime) -> bool:
        """Create the container if missing; in stored-policy mode (re)set the Graph policy.

        Returns whether ``RequestInfo.json`` is already there, i.e. an earlier submit for this
        DSR reached Graph. Safe to call again: creating an existing container is a no-op.
        """
        container = self.container(name)
        with contextlib.suppress(ResourceExistsError):
            container.create_container(metadata={"purpose": "dsr-export"})
        if self._settings.sas_mode is SasMode.STORED_POLICY:
            window = sas.validity(now, self._settings.sas_lifetime, user_delegation=False)
            sas.set_graph_policy(container, window)
        return self.request_info_exists(name)

    def request_info_exists(self, name: str) -> bool:
        """True when Graph has accepted a SAS for this container before."""
        return bool(self.container(name).get_blob_client(REQUEST_INFO_BLOB).exists())

    def read_request_info(self, name: str) -> dict[str, Any] | None:
        """Graph's receipt in the container (``RequestInfo.json``), read with the app's own
        access (the Graph SAS cannot read); None when absent or unreadable.

        The service writes it while validating the SAS, before posting the command; its
        ``CommandId`` is the operation id (docs/graph-contract.md).
        """
        blob = self.container(name).get_blob_client(REQUEST_INFO_BLOB)
        try:
            raw = blob.download_blob().readall()
        except ResourceNotFoundError:
            return None
        try:
            info = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def graph_sas_expiry(self, name: str, minted_at: datetime) -> datetime:
        """When the SAS given to Graph for this container expires (stored-policy: the policy's
        expiry; user-delegation: the latest it can, counted from ``minted_at``)."""
        if self._settings.sas_mode is SasMode.STORED_POLICY:
            identifiers = self.container(name).get_container_access_policy()["signed_identifiers"]
            for identifier in identifiers:
                if identifier.id == sas.POLICY_ID and identifier.access_policy is not None:
                    expiry = identifier.access_policy.expiry
                    if isinstance(expiry, datetime):
                        return expiry
                    if isinstance(expiry, str):
                        return datetime.fromisoformat(expiry.replace("Z", "+00:00"))
        window = sas.validity(
            minted_at,
            self._settings.sas_lifetime,
            user_delegation=self._settings.sas_mode is SasMode.USER_DELEGATION,
        )
        return window.expiry

    def mint_graph_sas(self, name: str, now: datetime) -> tuple[str, datetime]:
        """The SAS URL for Graph and when it expires. The URL must stay in the caller."""
        container = self.container(name)
        if self._settings.sas_mode is SasMode.STORED_POLICY:
            assert self._settings.account_key is not None  # enforced by the settings
            window = sas.validity(now, self._settings.sas_lifetime, user_delegation=False)
            return sas.stored_policy_sas(container, self._settings.account_key), window.expiry
        window = sas.validity(now, self._settings.sas_lifetime, user_delegation=True)
        key = self._service.get_user_delegation_key(window.start, window.expiry)
        return sas.user_delegation_sas(container, key, window), window.expiry

    def revoke(self, name: str) -> bool:
        """Revoke the Graph SAS. True when revoked; False when it can only expire (user
        delegation SAS cannot be revoked one by one)."""
        if self._settings.sas_mode is not SasMode.STORED_POLICY:
            return False
        container = self.container(name)
        if container.exists():
            sas.revoke_graph_policy(container)
        return True

    def write_manifest(self, name: str, request_id: str, now: datetime) -> ManifestSummary:
        """List what Graph wrote and store ``manifest.json`` beside it (overwriting)."""
        container = self.container(name)
        entries: list[dict[str, Any]] = []
        for blob in container.list_blobs():
            if blob.name in _APP_BLOBS:
                continue
            md5 = blob.content_settings.content_md5 if blob.content_settings else None
            entries.append(
                {
                    "name": blob.name,
                    "size": blob.size,
                    "md5": base64.b64encode(bytes(md5)).decode() if md5 else None,
                    "lastModified": blob.last_modified.isoformat() if blob.last_modified else None,
                }
            )
        products = Counter(
            entry["name"].split("/", 1)[0] if "/" in entry["name"] else "(root)"
            for entry in entries
        )
        summary = ManifestSummary(
            blob_count=len(entries),
            total_bytes=sum(int(entry["size"] or 0) for entry in entries),
            products=dict(sorted(products.items())),
        )
        document = {
            "requestId": request_id,
            "container": name,
            "generatedAt": now.isoformat(),
            "blobCount": summary.blob_count,
            "totalBytes": summary.total_bytes,
            "blobs": entries,
        }
        self._write_json(name, MANIFEST_BLOB, document)
        return summary

    def write_audit(self, name: str, record: dict[str, Any]) -> None:
        """Store the DSR's audit record beside its data (overwriting: finalize may run twice)."""
        self._write_json(name, AUDIT_BLOB, record)

    def _write_json(self, name: str, blob: str, document: dict[str, Any]) -> None:
        self.container(name).upload_blob(
            blob,
            json.dumps(document, indent=2).encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
