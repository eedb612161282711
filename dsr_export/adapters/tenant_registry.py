"""The tenant registry in storage: one JSON blob per tenant, and an append-only change log.

Why blobs and not Azure Table storage: the registry is small (an app registration holds at most
20 federated credentials, but serves any number of tenants: tens to hundreds of documents),
read whole, and written by an operator now and then. A blob per tenant with its ETag gives the
one thing concurrency needs, a conditional write (``If-Match`` on change, ``If-None-Match: *`` on
create), with the storage SDK the app already ships; ``azure-data-tables`` would add a
dependency (and a second client stack on the cold-start path) for queries the registry never
makes. The documents live in the host storage account (``AzureWebJobsStorage``, container
``dsr-tenants``), which the app's identity already owns; not in the export account, whose
lifecycle rule deletes everything, and not in the evidence account, which is immutable.

Every change appends one hash-chained line to ``registry/tenants.jsonl`` in the evidence
container (:func:`dsr_export.domain.tenants.change_record`): who, when, which fields, hashes of
the old and new values; never a value. The append discipline is the evidence's: created only if
missing, appended only at the position last read (a stale writer gets 412 and reads again). A
change is written first and logged second; if the log refuses, the document is put back as it
was (conditionally on the version just written) and the change fails: no change stands that
the log does not show.

Retiring a tenant (:meth:`TenantRegistry.retire`) is a change like any other (action
``retired``), then one binding change per binding that named it (:meth:`BindingStore.drop_tenant`,
logged with ``cause: retired``). The tenant is written first, so a binding made at the same
moment either sees it retired (:meth:`BindingStore.put`'s ``guard``) or is written before the
bindings are swept and swept with them; a retirement cut short is completed by retiring again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from dsr_export.adapters.credentials import host_storage_identity
from dsr_export.domain import bindings, tenants
from dsr_export.domain.bindings import Binding, Bound
from dsr_export.domain.logs import log_event
from dsr_export.domain.tenants import (
    Registered,
    Tenant,
    TenantExists,
    TenantUnknown,
    VersionMismatch,
)

#: Bookkeeping a change record carries beside its fields (``forced``, ``inFlight``, ``cause``).
Extra = Mapping[str, Any] | None

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

REGISTRY_CONTAINER: Final = "dsr-tenants"
#: The change log's blob in the evidence container (evidence logs are ``{ID}.jsonl``: no slash).
CHANGE_LOG_BLOB: Final = "registry/tenants.jsonl"
#: Every caller's tenant bindings, one document (:class:`BindingStore`).
BINDINGS_BLOB: Final = "bindings.json"
_JSON: Final = ContentSettings(content_type="application/json")
_ATTEMPTS: Final = 5


class ChangeLogError(RuntimeError):
    """The change log cannot be appended to: the change was not made."""


class ChangeLog:
    """The registry's append-only change log (one append blob, hash-chained lines)."""

    def __init__(self, container: ContainerClient, blob: str = CHANGE_LOG_BLOB) -> None:
        self._blob = container.get_blob_client(blob)
        self._container = container

    def records(self) -> list[dict[str, Any]]:
        content, _ = self._read()
        return [json.loads(line) for line in content.split(b"\n") if line.strip()]

    def append(self, build: Callable[[str | None], dict[str, Any]]) -> dict[str, Any]:
        """Append the record ``build(previous hash)`` makes, at the log's end as read."""
        for _ in range(_ATTEMPTS):
            content, length = self._read()
            lines = [line for line in content.split(b"\n") if line.strip()]
            previous = json.loads(lines[-1]).get("hash") if lines else None
            record = build(previous)
            line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
            if self._append_at(length, line):
                return record
        raise ChangeLogError("other writers kept moving the change log's end")

    def _read(self) -> tuple[bytes, int]:
        try:
            content = bytes(self._blob.download_blob().readall())
        except ResourceNotFoundError:
            return b"", 0
        return content, len(content)

    def _append_at(self, position: int, line: bytes) -> bool:
        if position == 0:
            _ignore_exists(self._container.create_container)
            _ignore_exists(
                lambda: self._blob.create_append_blob(
                    content_settings=ContentSettings(content_type="application/jsonl"),
                    match_condition=MatchConditions.IfMissing,
                )
            )
        try:
            self._blob.append_block(line, appendpos_condition=position)
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            raise
        return True


class TenantRegistry:
    """Read and change the registered tenants; every change is logged in :class:`ChangeLog`."""

    def __init__(self, container: ContainerClient, changes: ChangeLog) -> None:
        self._container = container
        self._changes = changes
        self._ready = False

    @classmethod
    def in_host_storage(
        cls,
        changes: ChangeLog,
        env: Mapping[str, str] = os.environ,
        identity: Callable[[str | None], TokenCredential] = host_storage_identity,
    ) -> TenantRegistry:
        """The registry in the host storage account, reached as the host reaches it."""
        connection = env.get("AzureWebJobsStorage", "").strip()
        if connection:
            service = BlobServiceClient.from_connection_string(connection)
        else:
            endpoint = env.get("AzureWebJobsStorage__blobServiceUri", "").strip()
            if not endpoint:
                raise RuntimeError(
                    "neither AzureWebJobsStorage nor AzureWebJobsStorage__blobServiceUri is set"
                )
            client_id = env.get("AzureWebJobsStorage__clientId", "").strip() or None
            service = BlobServiceClient(endpoint, credential=identity(client_id))
        return cls(service.get_container_client(REGISTRY_CONTAINER), changes)

    @property
    def changes(self) -> ChangeLog:
        return self._changes

    @property
    def bindings(self) -> BindingStore:
        """The callers' tenant bindings, beside the tenants (the same container and log)."""
        return BindingStore(self._container, self._changes)

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[Registered]:
        """Every registered tenant, by tenant id, retired ones included: a DSR's evidence names
        its tenant for years after (the routes, the list and the health check filter on
        :attr:`~dsr_export.domain.tenants.Tenant.accepts_dsrs`)."""
        found = []
        try:
            for blob in self._container.list_blobs(name_starts_with="tenants/"):
                got = self.get(blob.name.removeprefix("tenants/").removesuffix(".json"))
                if got is not None:
                    found.append(got)
        except ResourceNotFoundError:
            return []
        return sorted(found, key=lambda registered: registered.tenant.tenant_id)

    def get(self, tenant_id: str) -> Registered | None:
        try:
            download = self._blob(tenant_id).download_blob()
            content = download.readall()
        except ResourceNotFoundError:
            return None
        document = json.loads(content)
        return Registered(
            tenant=tenants.from_stored(document["tenant"]),
            etag=str(download.properties.etag),
            created_at=str(document["createdAt"]),
            updated_at=str(document["updatedAt"]),
            updated_by=dict(document["updatedBy"]),
        )

    # -- changing --------------------------------------------------------------------------

    def add(self, tenant: Tenant, by: Mapping[str, Any], at: datetime) -> Registered:
        """Register a new tenant; :class:`TenantExists` if it is registered already."""
        self._ensure_container()
        document = _document(tenant, created_at=at.isoformat(), at=at, by=by)
        blob = self._blob(tenant.tenant_id)
        try:
            written = blob.upload_blob(
                document, content_settings=_JSON, match_condition=MatchConditions.IfMissing
            )
        except (ResourceExistsError, ResourceModifiedError):
            raise TenantExists(tenant.tenant_id) from None
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise TenantExists(tenant.tenant_id) from None
            raise
        self._record_change(
            "created",
            None,
            tenant,
            by,
            at,
            undo=lambda: blob.delete_blob(
                etag=written["etag"], match_condition=MatchConditions.IfNotModified
            ),
        )
        return Registered(tenant, str(written["etag"]), at.isoformat(), at.isoformat(), dict(by))

    def update(
        self,
        tenant_id: str,
        change: Callable[[Tenant], Tenant],
        by: Mapping[str, Any],
        at: datetime,
        *,
        if_match: str | None = None,
        action: str = "updated",
        extra: Extra = None,
    ) -> Registered:
        """Apply ``change`` to the tenant as stored, conditionally on its version.

        With ``if_match`` the caller's version must still be the stored one
        (:class:`VersionMismatch`); without, a change that races another is applied again to
        the newer version. Nothing changed (the same document): nothing written or logged.
        ``action`` and ``extra`` go into the change log's line.
        """
        for _ in range(_ATTEMPTS):
            current = self.get(tenant_id)
            if current is None:
                raise TenantUnknown(tenant_id)
            if if_match is not None and if_match != current.etag:
                raise VersionMismatch(tenant_id)
            after = change(current.tenant)
            if after == current.tenant:
                return current
            written = self._replace(current, after, by, at, (action, extra))
            if written is not None:
                return written
            if if_match is not None:
                raise VersionMismatch(tenant_id)
        raise VersionMismatch(tenant_id)

    def retire(
        self,
        tenant_id: str,
        by: Mapping[str, Any],
        at: datetime,
        *,
        if_match: str | None = None,
        extra: Extra = None,
    ) -> Registered:
        """Retire the tenant (a retired one stays as it is: nothing written or logged)."""
        return self.update(
            tenant_id,
            lambda tenant: tenants.retire(tenant, at, by),
            by,
            at,
            if_match=if_match,
            action="retired",
            extra=extra,
        )

    def reinstate(
        self, tenant_id: str, by: Mapping[str, Any], at: datetime, *, if_match: str | None = None
    ) -> Registered:
        """Make a retired tenant active again (an active one: nothing written or logged)."""
        return self.update(
            tenant_id, tenants.reinstate, by, at, if_match=if_match, action="reinstated"
        )

    def _replace(
        self,
        current: Registered,
        after: Tenant,
        by: Mapping[str, Any],
        at: datetime,
        logged: tuple[str, Extra],
    ) -> Registered | None:
        blob = self._blob(after.tenant_id)
        previous = _document(
            current.tenant,
            created_at=current.created_at,
            at=datetime.fromisoformat(current.updated_at),
            by=current.updated_by,
        )
        try:
            written = blob.upload_blob(
                _document(after, created_at=current.created_at, at=at, by=by),
                overwrite=True,
                content_settings=_JSON,
                etag=current.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return None
        self._record_change(
            logged[0],
            current.tenant,
            after,
            by,
            at,
            extra=logged[1],
            undo=lambda: blob.upload_blob(
                previous,
                overwrite=True,
                content_settings=_JSON,
                etag=written["etag"],
                match_condition=MatchConditions.IfNotModified,
            ),
        )
        return Registered(after, str(written["etag"]), current.created_at, at.isoformat(), by)

    def _record_change(
        self,
        action: str,
        before: Tenant | None,
        after: Tenant,
        by: Mapping[str, Any],
        at: datetime,
        *,
        undo: Callable[[], object],
        extra: Extra = None,
    ) -> None:
        """Record the change; if the log refuses, undo it and fail."""
        try:
            record = self._changes.append(
                lambda previous: tenants.change_record(
                    previous_hash=previous,
                    at=at,
                    by=by,
                    action=action,
                    before=before,
                    after=after,
                    extra=extra,
                )
            )
        except Exception:
            undo()
            raise
        log_event(
            "tenant_changed",
            tenant_id=after.tenant_id,
            action=action,
            fields=",".join(sorted(record["changed"])),
            caller_kind=by.get("kind"),
            caller_id=by.get("id"),
        )

    def _blob(self, tenant_id: str) -> Any:
        return self._container.get_blob_client(f"tenants/{tenant_id.lower()}.json")

    def _ensure_container(self) -> None:
        if not self._ready:
            _ignore_exists(self._container.create_container)
            self._ready = True


class BindingStore:
    """Every tenant binding in one JSON document (``bindings.json`` beside the tenants), written
    only on its ETag, each change logged in the registry's change log.

    One document, not a blob per binding: every authenticated request of a multi-tenant
    deployment reads the bindings (a caller's scope is the union over its id, its groups and its
    key fingerprint), and one small read answers that however many groups the caller is in.
    """

    def __init__(self, container: ContainerClient, changes: ChangeLog) -> None:
        self._container = container
        self._blob = container.get_blob_client(BINDINGS_BLOB)
        self._changes = changes

    def all(self) -> list[Bound]:
        """Every binding, by principal."""
        found, _ = self._read()
        return [found[principal] for principal in sorted(found)]

    def get(self, principal: str) -> Bound | None:
        found, _ = self._read()
        return found.get(principal)

    def put(
        self,
        binding: Binding,
        by: Mapping[str, Any],
        at: datetime,
        *,
        guard: Callable[[], object] | None = None,
    ) -> tuple[Bound, bool]:
        """Bind ``binding.principal`` as ``binding`` says (replacing its binding); True when it
        was bound nowhere before. The same binding again: nothing written or logged.

        ``guard`` runs after each read of the bindings, before the write on that version, and
        raises to refuse: the use case checks there that every tenant named is still active.
        A tenant retired after the check sweeps the bindings after its retirement is written,
        so it either moves the version (this write fails and the guard runs again) or finds
        and sweeps this binding."""
        for _ in range(_ATTEMPTS):
            found, etag = self._read()
            if guard is not None:
                guard()
            before = found.get(binding.principal)
            if before is not None and before.binding == binding:
                return before, False
            created = before.created_at if before is not None else at.isoformat()
            stored = Bound(binding, created, at.isoformat(), dict(by))
            if self._write(
                {**found, binding.principal: stored}, found, etag, before, stored, by, at
            ):
                return stored, before is None
        raise VersionMismatch("bindings")

    def delete(self, principal: str, by: Mapping[str, Any], at: datetime) -> bool:
        """Remove ``principal``'s binding; False if it had none."""
        for _ in range(_ATTEMPTS):
            found, etag = self._read()
            before = found.get(principal)
            if before is None:
                return False
            rest = {name: bound for name, bound in found.items() if name != principal}
            if self._write(rest, found, etag, before, None, by, at):
                return True
        raise VersionMismatch("bindings")

    def drop_tenant(self, tenant_id: str, by: Mapping[str, Any], at: datetime) -> list[str]:
        """Take ``tenant_id`` (retired) out of every binding naming it, one logged change each
        (a binding left with no tenant is removed); the principals changed, in order."""
        changed: list[str] = []
        conflicts = 0
        while conflicts < _ATTEMPTS:
            found, etag = self._read()
            named = [
                bound
                for _, bound in sorted(found.items())
                if bindings.without_tenant(bound.binding, tenant_id) != bound.binding
            ]
            if not named:
                return changed
            before = named[0]
            after = bindings.without_tenant(before.binding, tenant_id)
            stored = Bound(after, before.created_at, at.isoformat(), dict(by)) if after else None
            rest = {k: v for k, v in found.items() if k != before.binding.principal}
            if stored is not None:
                rest[stored.binding.principal] = stored
            cause = {"cause": "retired", "tenantId": tenant_id}
            if self._write(rest, found, etag, before, stored, by, at, cause):
                changed.append(before.binding.principal)
            else:
                conflicts += 1
        raise VersionMismatch("bindings")

    def _read(self) -> tuple[dict[str, Bound], str | None]:
        try:
            download = self._blob.download_blob()
            content = download.readall()
        except ResourceNotFoundError:
            return {}, None
        document = json.loads(content)
        found = {}
        for item in document.get("bindings", []):
            binding = bindings.from_stored(item["binding"])
            found[binding.principal] = Bound(
                binding, str(item["createdAt"]), str(item["updatedAt"]), dict(item["updatedBy"])
            )
        return found, str(download.properties.etag)

    def _write(
        self,
        after: Mapping[str, Bound],
        before_all: Mapping[str, Bound],
        etag: str | None,
        before: Bound | None,
        changed: Bound | None,
        by: Mapping[str, Any],
        at: datetime,
        extra: Extra = None,
    ) -> bool:
        """Write ``after`` on the version read (False: another writer came first), then log the
        change; if the log refuses, put back what was read and fail."""
        _ignore_exists(self._container.create_container)
        try:
            written = self._upload(after, etag)
        except (ResourceModifiedError, ResourceExistsError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return False
            raise
        try:
            record = self._changes.append(
                lambda previous: bindings.change_record(
                    previous_hash=previous,
                    at=at,
                    by=by,
                    before=before.binding if before is not None else None,
                    after=changed.binding if changed is not None else None,
                    extra=extra,
                )
            )
        except Exception:
            self._upload(before_all, str(written["etag"]))
            raise
        log_event(
            "binding_changed",
            action=record["action"],
            principal_kind=record["kind"],
            caller_kind=by.get("kind"),
            caller_id=by.get("id"),
        )
        return True

    def _upload(self, content: Mapping[str, Bound], etag: str | None) -> Any:
        document = json.dumps(
            {
                "bindings": [
                    {
                        "binding": bound.binding.to_json(),
                        "createdAt": bound.created_at,
                        "updatedAt": bound.updated_at,
                        "updatedBy": dict(bound.updated_by),
                    }
                    for _, bound in sorted(content.items())
                ]
            },
            sort_keys=True,
        ).encode()
        if etag is None:
            return self._blob.upload_blob(
                document, content_settings=_JSON, match_condition=MatchConditions.IfMissing
            )
        return self._blob.upload_blob(
            document,
            overwrite=True,
            content_settings=_JSON,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )


def _document(tenant: Tenant, *, created_at: str, at: datetime, by: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {
            "tenant": tenant.to_json(),
            "createdAt": created_at,
            "updatedAt": at.isoformat(),
            "updatedBy": dict(by),
        },
        sort_keys=True,
    ).encode()


def _ignore_exists(create: Callable[[], object]) -> None:
    """Creating what exists is no error (nor is a 403 from a role that may not create what the
    deployment made): the write that follows says whether it can be written."""
    try:
        create()
    except (ResourceExistsError, ResourceModifiedError):
        return
    except HttpResponseError as exc:
        if exc.status_code != 403:
            raise
