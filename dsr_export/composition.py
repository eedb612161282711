"""The composition root: the one place the app's parts are built and cached.

Activities and intake ask here for the credential, the Graph client, the export storage, the
callback HTTP session, the rejected-message sink and the clock, and nowhere else; tests swap any
of them with :func:`override`. Everything is built on first use, importing the Azure SDKs and
``requests`` only then, which keeps them off the cold-start path of ``import function_app``
(the SDK floor; ``make bench`` measures it).

In Azure the credential is the app's managed identity (``AZURE_CLIENT_ID`` selects the
user-assigned one); locally whatever ``DefaultAzureCredential`` finds.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast

from dsr_export import settings

if TYPE_CHECKING:
    import azure.durable_functions as df
    from azure.core.credentials import TokenCredential

    from dsr_export.adapters.callback_secrets import CallbackSecrets
    from dsr_export.adapters.callback_sender import CallbackSender
    from dsr_export.adapters.credentials import TenantCredentials
    from dsr_export.adapters.durable_client import TaskHub
    from dsr_export.adapters.entra import TokenValidator
    from dsr_export.adapters.evidence_log import EvidenceLog
    from dsr_export.adapters.graph import GraphClient
    from dsr_export.adapters.package_builder import PackageBuilder
    from dsr_export.adapters.package_review import ReviewStore
    from dsr_export.adapters.receipt_signer import KeyVaultReceiptSigner
    from dsr_export.adapters.rejections import RejectionSink
    from dsr_export.adapters.storage import ExportStorage
    from dsr_export.adapters.task_hub import Page
    from dsr_export.adapters.tenant_registry import TenantRegistry
    from dsr_export.domain.tenants import Tenant

#: Reads instances, a page at a time:
#: ``(client, *, created_from, created_to, runtime_status=(), page_size=...) -> pages``.
TaskHubQuery = Callable[..., AsyncGenerator["Page", None]]

#: Deletes a queue's messages inserted before a time: ``(queue, cutoff) -> deleted``.
QueueTrimmer = Callable[[str, datetime], int]

#: The Azure SDK logs every HTTP request at INFO (headers included, redacted): thousands of
#: lines a day of no use to an operator, each one paid for in Application Insights, drowning the
#: app's own events. Kept at WARNING, in Azure as offline.
SDK_HTTP_LOGGER: Final = "azure.core.pipeline.policies.http_logging_policy"
#: azure-identity logs every token it gets at INFO: the same cost, no use to an operator.
SDK_IDENTITY_LOGGER: Final = "azure.identity"
for _sdk_logger in (SDK_HTTP_LOGGER, SDK_IDENTITY_LOGGER):
    logging.getLogger(_sdk_logger).setLevel(logging.WARNING)

_overrides: dict[str, Any] = {}
_clock: Callable[[], datetime] | None = None
_T = TypeVar("_T")


class Part(Generic[_T]):
    """One part of the app, built on first use and cached; :func:`override` replaces it.

    The one accessor of the composition root: ``composition.graph()`` calls the part, which
    answers the override in force or else its built (and cached) object.
    """

    def __init__(self, name: str, build: Callable[[], _T], doc: str) -> None:
        self.name = name
        self._build = functools.cache(build)
        self.__doc__ = doc
        _PARTS[name] = self

    def __call__(self) -> _T:
        if self.name in _overrides:
            return cast(_T, _overrides[self.name])
        return self._build()

    def forget(self) -> None:
        """Drop the built object: the next call builds it anew (settings read again)."""
        self._build.cache_clear()


_PARTS: dict[str, Part[Any]] = {}


def now() -> datetime:
    """The current time (UTC): the one clock of activities and intake."""
    clock: Callable[[], datetime] | None = _overrides.get("clock", _clock)
    return clock() if clock is not None else datetime.now(UTC)


def real_now() -> datetime:
    """The time as other services judge it: SAS validity, webhook signature timestamps.

    The same as :func:`now` in Azure. Under the offline host's fast clock the two differ, and
    a credential or signature must hold in the time storage and ticket systems keep.
    """
    clock: Callable[[], datetime] | None = _overrides.get("clock")
    return clock() if clock is not None else datetime.now(UTC)


def use_clock(clock: Callable[[], datetime] | None) -> None:
    """Run activities and intake on ``clock`` from now on (None: the system clock).

    The offline host's fast clock is installed here (its ``--clock-seam``), so that every
    timestamp in status, callbacks and logs agrees with the orchestration's replay clock under
    ``--speed``. Nothing in Azure calls it.
    """
    global _clock
    _clock = clock


@contextlib.contextmanager
def override(**parts: Any) -> Iterator[None]:
    """Use ``parts`` (by the names in :data:`PARTS`) instead of the built ones, for a while.

    ``clock`` is a callable returning an aware datetime; the rest are the objects themselves.
    """
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise TypeError(f"unknown parts: {', '.join(sorted(unknown))}")
    saved = dict(_overrides)
    _overrides.update(parts)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(saved)


def reset() -> None:
    """Forget every built part and every setting read, so the next use reads them anew."""
    for part in _PARTS.values():
        part.forget()
    _tenant_export_storage.cache_clear()
    _tenant_graph.cache_clear()
    _TENANT_IDS.clear()
    settings.clear_cache()


def _credential() -> TokenCredential:
    from dsr_export.adapters.credentials import app_identity

    return app_identity()


def _tenant_credentials() -> TenantCredentials:
    from dsr_export.adapters.credentials import TenantCredentials

    return TenantCredentials(settings.tenancy_settings(), credential())


def _tenant_registry() -> TenantRegistry:
    from azure.storage.blob import BlobServiceClient

    from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
    from dsr_export.adapters.failures import logged_retry
    from dsr_export.adapters.tenant_registry import ChangeLog, TenantRegistry

    endpoint = settings.lifecycle_settings().evidence_blob_endpoint
    service = (
        export_storage().service
        if endpoint is None
        else BlobServiceClient(endpoint, credential(), retry_policy=logged_retry("evidence"))
    )
    changes = ChangeLog(service.get_container_client(EVIDENCE_CONTAINER))
    return TenantRegistry.in_host_storage(changes)


def _graph() -> GraphClient:
    from dsr_export.adapters.graph import GraphClient

    return GraphClient(settings.graph_settings(), credential())


def _export_storage() -> ExportStorage:
    from dsr_export.adapters.storage import ExportStorage

    return ExportStorage(settings.export_storage_settings(), credential())


def export_storage_for(account: str | None) -> ExportStorage:
    """A tenant's export account (``exportsAccount`` in the tenant registry: an account of its
    own, for data residency), reached with the app's identity; the shared one for None."""
    if account is None or account == settings.export_storage_settings().blob_endpoint:
        return export_storage()
    return _tenant_export_storage(account)


@functools.cache
def _tenant_export_storage(account: str) -> ExportStorage:
    import dataclasses

    from dsr_export.adapters.storage import ExportStorage

    chosen = dataclasses.replace(settings.export_storage_settings(), blob_endpoint=account)
    return ExportStorage(chosen, credential())


def _callback_sender() -> CallbackSender:
    from dsr_export.adapters.callback_sender import CallbackSender

    return CallbackSender(allow_loopback=settings.callback_settings().allow_loopback)


def _callback_secrets() -> CallbackSecrets:
    from dsr_export.adapters.callback_secrets import CallbackSecrets

    return CallbackSecrets(credential())


def _evidence_log() -> EvidenceLog:
    from dsr_export.adapters.evidence_log import EvidenceLog

    prefix_of = evidence_prefix if settings.tenancy_settings().multi else None
    endpoint = settings.lifecycle_settings().evidence_blob_endpoint
    if endpoint is None:
        return EvidenceLog(export_storage().service, prefix_of=prefix_of)
    return EvidenceLog.for_account(endpoint, credential(), prefix_of=prefix_of)


def evidence_prefix(dsr_id: str) -> str:
    """A multi-tenant DSR's evidence prefix, its tenant's ``evidencePrefix``. An id of no
    registered tenant has none to write to: refused, never logged at the root."""
    tenant = tenant_of(dsr_id)
    if tenant is None:
        raise LookupError("the DSR's tenant is not registered: no evidence chain to use")
    return tenant.evidence_prefix


# -- one DSR's tenant and its parts (TENANCY=multi) --------------------------------------------
#: Tenant ids by the key their DSR ids start with (a pure function of the id: never stale).
_TENANT_IDS: dict[str, str] = {}


def tenant_of(dsr_id: str) -> Tenant | None:
    """The registered tenant a DSR belongs to, by its id's tenant key (``TENANCY=multi``);
    None with ``single``, or when no registered tenant has that key. Read from the registry
    every time (one blob): a change an operator makes applies to the next step."""
    from dsr_export.domain.logs import name_tenant

    tenant_id = tenant_id_of(dsr_id)
    found = tenant_registry().get(tenant_id) if tenant_id is not None else None
    if found is None:
        return None
    name_tenant(found.tenant.tenant_id)
    return found.tenant


def tenant_id_of(dsr_id: str) -> str | None:
    """The id of the registered tenant whose key a DSR id starts with (``TENANCY=multi``), the
    registry listed only for a key not seen yet; None with ``single`` or for no such tenant."""
    from dsr_export.domain import dsr_keys

    parts = dsr_keys.split(dsr_id) if settings.tenancy_settings().multi else None
    if parts is None:
        return None
    if parts.key not in _TENANT_IDS:
        for registered in tenant_registry().list():
            _TENANT_IDS[dsr_keys.tenant_key(registered.tenant.tenant_id)] = (
                registered.tenant.tenant_id
            )
    return _TENANT_IDS.get(parts.key)


def graph_of(dsr_id: str) -> GraphClient:
    """The Graph client of a DSR's tenant: the app's own (``single``), else one per tenant,
    signing in there (:meth:`TenantCredentials.for_tenant`) and sending its token only to its
    cloud's Graph (``GRAPH_BASE_URL`` for the global cloud, which the app is configured for)."""
    tenant = tenant_of(dsr_id)
    if tenant is None:
        if settings.tenancy_settings().multi:
            raise LookupError("the DSR's tenant is not registered")
        return graph()
    cloud = tenant.cloud_info
    root = settings.graph_settings().base_url if cloud.name == "global" else cloud.graph_root
    return _tenant_graph(tenant.tenant_id, root)


@functools.cache
def _tenant_graph(tenant_id: str, root: str) -> GraphClient:
    import dataclasses

    from dsr_export.adapters.graph import GraphClient

    chosen = dataclasses.replace(settings.graph_settings(), base_url=root)
    return GraphClient(chosen, _TenantToken(tenant_id))


class _TenantToken:
    """The tenant's Graph tokens, asked of :func:`tenant_credentials` at each use: a credential
    it has forgotten (consent revoked) is never kept alive by a cached client."""

    def __init__(self, tenant_id: str) -> None:
        self._tenant_id = tenant_id

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        from dsr_export.adapters.failures import TenantConsentMissing, consent_missing

        try:
            return tenant_credentials().for_tenant(self._tenant_id).get_token(*scopes, **kwargs)
        except ClientAuthenticationError as exc:
            if consent_missing(exc):  # the DSR fails naming the fix, not after five retries
                tenant_credentials().forget(self._tenant_id)
                raise TenantConsentMissing(self._tenant_id) from None
            raise


def export_storage_of(dsr_id: str) -> ExportStorage:
    """The export account of a DSR's tenant (its ``exportsAccount``, else the shared one)."""
    tenant = tenant_of(dsr_id)
    return export_storage_for(tenant.exports_account if tenant is not None else None)


def _receipt_signer() -> KeyVaultReceiptSigner:
    from dsr_export.adapters.receipt_signer import KeyVaultReceiptSigner

    return KeyVaultReceiptSigner(settings.receipt_settings(), credential(), clock=now)


def _rejections() -> RejectionSink:
    from dsr_export.adapters.rejections import QueueRejections, queue_client

    return QueueRejections(queue_client())


def _package_builder() -> PackageBuilder:
    from dsr_export.adapters.package_builder import PackageBuilder, PackageOptions

    chosen = settings.package_settings()
    if chosen.organisation is None:
        raise settings.SettingsError(
            "ORGANISATION_PROFILE",
            "is required to build packages (docs/delivery.md, docs/organisation.sample.json)",
        )
    options = PackageOptions(part_bytes=chosen.part_max_bytes, issuer=chosen.issuer)
    return PackageBuilder(export_storage().service, chosen.organisation, options)


def _token_validator() -> TokenValidator:
    from dsr_export.adapters.entra import TokenValidator

    entra = settings.auth_settings().entra
    if entra is None:
        raise settings.SettingsError("AUTH_CLIENT_ID", "is not set: no Entra tokens are accepted")
    return TokenValidator(entra)


def _task_hub_query() -> TaskHubQuery:
    from dsr_export.adapters.task_hub import query_pages

    return query_pages


def _queue_trimmer() -> QueueTrimmer:
    return _trim_queue


def _trim_queue(queue: str, cutoff: datetime) -> int:
    from dsr_export.adapters.queue_retention import clear_older
    from dsr_export.adapters.rejections import queue_client

    return clear_older(queue_client(name=queue, encoded=False), cutoff)


def _package_reviews() -> ReviewStore:
    from dsr_export.adapters.package_review import ReviewStore

    return ReviewStore(export_storage().service)


# -- the parts, each one accessor (``composition.graph()``) ------------------------------------
credential: Final = Part(
    "credential",
    _credential,
    "The app's identity: tokens for Graph and, in user-delegation mode, for storage.",
)
tenant_credentials: Final = Part(
    "tenant_credentials",
    _tenant_credentials,
    "Graph credentials per tenant: the managed identity (TENANCY=single), or the multi-tenant "
    "app signing in with the identity's token as its federated credential (multi); one per "
    "tenant, cached.",
)
tenant_registry: Final = Part(
    "tenant_registry",
    _tenant_registry,
    "The registered tenants (host storage, ``dsr-tenants``) and their change log (evidence).",
)
graph: Final = Part(
    "graph",
    _graph,
    "The Graph client, bound to ``GRAPH_BASE_URL`` (the only host that gets the token).",
)
export_storage: Final = Part(
    "export_storage",
    _export_storage,
    "The export account as the app itself sees it (never through the Graph SAS).",
)
callback_sender: Final = Part(
    "callback_sender",
    _callback_sender,
    "What delivers ticket callbacks (judged, resolved and pinned; short retries).",
)
callback_secrets: Final = Part(
    "callback_secrets",
    _callback_secrets,
    "Each tenant's callback signing key, read from its Key Vault secret (``callbackSecretRef``) "
    "with the app's identity and cached (TENANCY=multi).",
)
rejections: Final = Part(
    "rejections",
    _rejections,
    "Where refused queue messages are recorded (``dsr-requests-rejected``).",
)
evidence_log: Final = Part(
    "evidence_log",
    _evidence_log,
    "Where each DSR's hash-chained evidence is appended (``dsr-evidence``).",
)
receipt_signer: Final = Part(
    "receipt_signer",
    _receipt_signer,
    "What signs package receipts and lists their public keys (the Key Vault key). Typed as the "
    "Key Vault signer because the JWKS route needs ``public_keys`` as well; the packaging "
    "activity needs only ``sign_receipt`` (package_builder's ``PackageSigner``).",
)
package_builder: Final = Part(
    "package_builder",
    _package_builder,
    "Builds and finds the subject's packages (delivery containers in the export account). "
    "Raises :class:`~dsr_export.settings.SettingsError` naming ``ORGANISATION_PROFILE`` when "
    "the organisation has not filled in its profile: no package goes out without it.",
)
token_validator: Final = Part(
    "token_validator",
    _token_validator,
    "What judges callers' Entra tokens (its signing keys cached across requests).",
)
task_hub_query: Final = Part(
    "task_hub_query",
    _task_hub_query,
    "How the list endpoint and the retention run read the task hub's instances: the "
    "extension's query, a page at a time (:func:`dsr_export.adapters.task_hub.query_pages`).",
)
queue_trimmer: Final = Part(
    "queue_trimmer",
    _queue_trimmer,
    "How the retention run deletes a queue's old messages: ``(queue, cutoff) -> deleted``.",
)
package_reviews: Final = Part(
    "package_reviews",
    _package_reviews,
    "Where packages' reviews are kept (their delivery containers).",
)

#: The parts :func:`override` can replace (``clock`` is the clock of :func:`now`; ``task_hub``
#: a callable taking the Durable client binding, see :func:`task_hub`).
PARTS: Final = (*_PARTS, "clock", "task_hub")


def task_hub(client: df.DurableOrchestrationClient) -> TaskHub:
    """The task hub behind a Durable client binding, as the intake uses it
    (:class:`dsr_export.adapters.durable_client.DurableTaskHub`)."""
    if "task_hub" in _overrides:
        return _overrides["task_hub"](client)  # type: ignore[no-any-return]
    from dsr_export.adapters.durable_client import DurableTaskHub

    return DurableTaskHub(client, task_hub_query())
