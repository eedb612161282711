"""The export account, as the app itself sees it (never through the Graph SAS).

In ``stored-policy`` mode the app uses the account key it already needs for signing; in
``user-delegation`` mode the managed identity (``Storage Blob Data Contributor`` on that account).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    generate_container_sas,
)

from dsr_export.adapters import sas
from dsr_export.adapters.failures import logged_retry, storage_unanswered
from dsr_export.domain.package_manifest import DELIVERY_SUFFIX as PACKAGE_SUFFIX
from dsr_export.domain.request import CONTAINER_PREFIX, container_name, is_container_of
from dsr_export.settings import ExportStorageSettings, SasMode

#: Written by Graph when it accepts a SAS; its presence means a submit went through.
REQUEST_INFO_BLOB: Final = "RequestInfo.json"
MANIFEST_BLOB: Final = "manifest.json"
#: The audit record containers of earlier versions hold (the evidence log replaced it).
LEGACY_AUDIT_BLOB: Final = "audit.json"
#: Written by the app, not by Graph: never listed in the manifest.
_APP_BLOBS: Final = frozenset({MANIFEST_BLOB, LEGACY_AUDIT_BLOB})


@dataclass(frozen=True)
class ManifestSummary:
    """Totals of an export, small enough for activity results and the status document."""

    blob_count: int
    total_bytes: int
    products: dict[str, int]
    #: SHA-256 of ``manifest.json`` as stored: the evidence and every receipt name it.
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form used in activity results and status documents."""
        body: dict[str, Any] = {
            "blobCount": self.blob_count,
            "totalBytes": self.total_bytes,
            "products": self.products,
            "manifestBlob": MANIFEST_BLOB,
        }
        if self.sha256:
            body["manifestSha256"] = self.sha256
        return body


@dataclass(frozen=True)
class DeletedData:
    """What a deletion removed: every container of one DSR (its attempts), as counted just
    before deleting them. The deletion receipt is made of it."""

    containers: tuple[str, ...]
    blob_count: int
    total_bytes: int
    manifest_sha256: str | None


#: The outage probe asks once, briefly: it must say whether storage answers *now*, when Graph
#: has just failed to reach it, not after the SDK's own minute of retries.
PROBE_TIMEOUT_SECONDS: Final = 10

#: Permissions of a delivery link: read the blobs and list the container; nothing else.
DOWNLOAD_PERMISSIONS: Final = ContainerSasPermissions(read=True, list=True)
#: A delivery link starts this far back (clock skew); short, the link lives an hour or so.
DOWNLOAD_SKEW: Final = timedelta(minutes=5)


class ExportStorage:
    """Container lifecycle, SAS minting and the manifest for one export account."""

    def __init__(self, settings: ExportStorageSettings, credential: TokenCredential) -> None:
        self._settings = settings
        self._credential = credential
        blob_credential: Any
        if settings.sas_mode is SasMode.STORED_POLICY:
            blob_credential = {
                "account_name": settings.account_name,
                "account_key": settings.account_key,
            }
        else:
            blob_credential = credential
        self._blob_credential = blob_credential
        self._service = BlobServiceClient(
            settings.blob_endpoint, credential=blob_credential, retry_policy=logged_retry("export")
        )

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

    @functools.cached_property
    def _probe_service(self) -> BlobServiceClient:
        """The account as :meth:`unanswered` asks it: the app's own credential, no retries,
        short timeouts."""
        return BlobServiceClient(
            self._settings.blob_endpoint,
            credential=self._blob_credential,
            retry_total=0,
            connection_timeout=PROBE_TIMEOUT_SECONDS,
            read_timeout=PROBE_TIMEOUT_SECONDS,
        )

    def unanswered(self, name: str) -> str | None:
        """Ask the export account about container ``name`` once, now, with the app's own access;
        why it did not answer (``connection``, ``timeout``, ``busy``) or None when it answered.

        Tells "Graph could not reach the storage" from "Graph refuses this SAS" after Graph's
        catch-all ``StorageLocationInvalid``: any answer (the container's properties, or a 403
        or 404) means the account is up, so Graph's refusal stands.
        """
        try:
            self._probe_service.get_container_client(name).get_container_properties()
        except Exception as exc:  # noqa: BLE001 - judged below; an answer is not an outage
            return storage_unanswered(exc)
        return None

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

    # -- after the export: delivery and deletion -------------------------------------------------

    @functools.cached_property
    def _identity_service(self) -> BlobServiceClient:
        """The account as the app's identity (OAuth): user delegation keys need it, whatever
        signs the Graph SAS."""
        if self._settings.sas_mode is SasMode.USER_DELEGATION:
            return self._service
        return BlobServiceClient(
            self._settings.blob_endpoint,
            credential=self._credential,
            retry_policy=logged_retry("export"),
        )

    def has_data(self, name: str) -> bool:
        """True when the container exists and holds its manifest (a completed export's data)."""
        return bool(self.container(name).get_blob_client(MANIFEST_BLOB).exists())

    def download_link(self, name: str, now: datetime, lifetime: timedelta) -> tuple[str, datetime]:
        """A read + list SAS URL for one container, HTTPS only, signed with a user delegation
        key (no account key involved), living ``lifetime``. The URL must stay in the caller."""
        start, expiry = now - DOWNLOAD_SKEW, now + lifetime
        key = self._identity_service.get_user_delegation_key(start, expiry)
        container = self.container(name)
        token = generate_container_sas(
            account_name=container.account_name or self._settings.account_name,
            container_name=name,
            user_delegation_key=key,
            permission=DOWNLOAD_PERMISSIONS,
            start=start,
            expiry=expiry,
            protocol="https",
        )
        return f"{container.url}?{token}", expiry

    def blob_download_link(
        self, name: str, blob: str, now: datetime, lifetime: timedelta, disposition: str
    ) -> tuple[str, datetime]:
        """A read-only SAS URL on one blob of container ``name`` (no list, no other blob),
        HTTPS only, signed with a user delegation key, living ``lifetime``; the download is
        saved as ``disposition`` says. The URL must stay in the caller."""
        window = sas.Validity(start=now - DOWNLOAD_SKEW, expiry=now + lifetime)
        key = self._identity_service.get_user_delegation_key(window.start, window.expiry)
        container = self.container(name)
        client = container.get_blob_client(blob)
        # The container's account name: a blob client's is parsed differently for an IP-style
        # endpoint (the emulator's), and a wrong one signs a SAS the service refuses.
        url = sas.blob_read_sas(
            container.account_name or self._settings.account_name,
            name,
            blob,
            client.url,
            key,
            window,
            disposition,
        )
        return url, window.expiry

    def containers_of(self, request_id: str) -> list[str]:
        """Every container of a DSR, matched exactly: its first, each fresh one of a retried
        submit or DSR, and its delivery container (the subject's package). Never a prefix: the
        DSR ``V-<first 16 hex of sha256(V)>-A2`` has a container that starts with ``V``'s."""
        base = container_name(request_id)
        found = self._service.list_containers(name_starts_with=base)
        return sorted(
            item.name
            for item in found
            if item.name == base + PACKAGE_SUFFIX or is_container_of(item.name, request_id)
        )

    def delete_data(self, request_id: str) -> DeletedData:
        """Delete every container of the DSR; what they held is counted first (the receipt).

        Idempotent: a container already gone is not counted, and a second call deletes nothing.
        """
        names, blobs, size, digest = [], 0, 0, None
        for name in self.containers_of(request_id):
            container = self.container(name)
            try:
                for blob in container.list_blobs():
                    if name.endswith(PACKAGE_SUFFIX):
                        continue  # the subject's package: made of the data counted here
                    if blob.name == MANIFEST_BLOB:
                        digest = self._sha256(name, MANIFEST_BLOB) or digest
                    elif blob.name not in _APP_BLOBS:
                        blobs, size = blobs + 1, size + int(blob.size or 0)
                container.delete_container()
            except ResourceNotFoundError:
                continue  # deleted meanwhile (a concurrent run): nothing of ours to count
            names.append(name)
        return DeletedData(tuple(names), blobs, size, digest)

    def _sha256(self, name: str, blob: str) -> str | None:
        try:
            content = self.container(name).get_blob_client(blob).download_blob().readall()
        except ResourceNotFoundError:
            return None
        return hashlib.sha256(content).hexdigest()

    def write_manifest(self, name: str, request_id: str, now: datetime) -> ManifestSummary:
        """List what Graph wrote and store ``manifest.json`` beside it.

        A manifest already there that lists the same blobs is kept as it is (a finalisation
        run twice): the hash the evidence recorded stays the hash of the stored manifest.
        """
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
        blob_count = len(entries)
        total_bytes = sum(int(entry["size"] or 0) for entry in entries)
        document = {
            "requestId": request_id,
            "container": name,
            "generatedAt": now.isoformat(),
            "blobCount": blob_count,
            "totalBytes": total_bytes,
            "blobs": entries,
        }
        content = self._existing_manifest(name, entries) or self._write_json(
            name, MANIFEST_BLOB, document
        )
        return ManifestSummary(
            blob_count=blob_count,
            total_bytes=total_bytes,
            products=dict(sorted(products.items())),
            sha256=hashlib.sha256(content).hexdigest(),
        )

    def _existing_manifest(self, name: str, entries: list[dict[str, Any]]) -> bytes | None:
        try:
            content = bytes(
                self.container(name).get_blob_client(MANIFEST_BLOB).download_blob().readall()
            )
            stored = json.loads(content)
        except (ResourceNotFoundError, ValueError):
            return None
        return content if isinstance(stored, dict) and stored.get("blobs") == entries else None

    def _write_json(self, name: str, blob: str, document: dict[str, Any]) -> bytes:
        content = json.dumps(document, indent=2).encode()
        self.container(name).upload_blob(
            blob,
            content,
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
        return content
