"""The identities the app acts as, built here and only here (through the composition root).

In Azure both are the app's user-assigned managed identity: ``AZURE_CLIENT_ID`` selects it for
Graph and the export account, ``AzureWebJobsStorage__clientId`` for host storage (the same
identity in the Bicep, but the platform reads its own setting, so the app follows suit).

With ``TENANCY=multi`` Graph tokens for a customer tenant come from the multi-tenant app
registration instead (:class:`TenantCredentials`): the app signs in *as that registration* in
the customer's tenant, and proves it is that registration with a token of its own managed
identity (audience ``api://AzureADTokenExchange``), which the registration trusts as a federated
identity credential. No secret or certificate exists anywhere; a tenant whose administrator has
not consented answers ``AADSTS700016`` and gets no token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from dsr_export.settings import TenancySettings

#: The audience a managed identity's token must carry to be presented as a federated
#: credential (the federated identity credential's ``audiences``; Microsoft Entra's own value).
TOKEN_EXCHANGE_SCOPE: Final = "api://AzureADTokenExchange/.default"  # noqa: S105 - a scope


def app_identity() -> TokenCredential:
    """The managed identity in Azure; locally whatever ``DefaultAzureCredential`` finds."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def host_storage_identity(client_id: str | None) -> TokenCredential:
    """The identity the Functions host uses for ``AzureWebJobsStorage`` (identity-based)."""
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id)


class TenantNotServed(LookupError):
    """A token was asked for a tenant this deployment does not serve (single tenancy)."""


class TenantCredentials:
    """Graph credentials per tenant, built once per tenant and kept (each caches its tokens).

    ``single``: the managed identity, for its own tenant only (``tenant_id`` None); asking for
    another tenant raises :class:`TenantNotServed`, since the identity has no access there.
    ``multi``: a ``ClientAssertionCredential(tenant, MULTI_TENANT_CLIENT_ID, assertion)`` per
    tenant, the assertion being the managed identity's token for ``api://AzureADTokenExchange``
    (fetched when the credential needs a new token; the identity caches it too).

    The authority is azure-identity's default: ``AZURE_AUTHORITY_HOST`` when set (a sovereign
    cloud's login host; the offline host's local Entra), else the global cloud's. One app
    registration lives in one cloud, so every tenant it serves signs in at the same authority.
    """

    def __init__(
        self,
        tenancy: TenancySettings,
        identity: TokenCredential,
        *,
        build: Callable[[str, str, Callable[[], str]], TokenCredential] | None = None,
    ) -> None:
        self._tenancy = tenancy
        self._identity = identity
        self._build = build or _client_assertion_credential
        self._built: dict[str, TokenCredential] = {}
        self._lock = threading.Lock()

    @property
    def multi(self) -> bool:
        return self._tenancy.multi

    def for_tenant(self, tenant_id: str | None) -> TokenCredential:
        """The credential that gets Graph tokens in ``tenant_id`` (None: the identity's own)."""
        if not self._tenancy.multi or tenant_id is None:
            if tenant_id is not None:
                raise TenantNotServed(
                    "TENANCY=single: the managed identity serves its own tenant only"
                )
            return self._identity
        key = tenant_id.lower()
        with self._lock:
            found = self._built.get(key)
            if found is None:
                client_id = self._tenancy.client_id
                assert client_id is not None  # TenancySettings refuses multi without it
                found = self._build(key, client_id, self.assertion)
                self._built[key] = found
            return found

    def assertion(self) -> str:
        """The managed identity's token for the token exchange: the federated credential."""
        return self._identity.get_token(TOKEN_EXCHANGE_SCOPE).token

    def forget(self, tenant_id: str) -> None:
        """Drop a tenant's credential and its cached tokens (consent revoked, tenant removed)."""
        with self._lock:
            self._built.pop(tenant_id.lower(), None)


def _client_assertion_credential(
    tenant_id: str, client_id: str, assertion: Callable[[], str]
) -> TokenCredential:
    from azure.identity import ClientAssertionCredential

    return ClientAssertionCredential(tenant_id, client_id, assertion)
