"""The identities the app acts as, built here and only here (through the composition root).

In Azure both are the app's user-assigned managed identity: ``AZURE_CLIENT_ID`` selects it for
Graph and the export account, ``AzureWebJobsStorage__clientId`` for host storage (the same
identity in the Bicep, but the platform reads its own setting, so the app follows suit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def app_identity() -> TokenCredential:
    """The managed identity in Azure; locally whatever ``DefaultAzureCredential`` finds."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def host_storage_identity(client_id: str | None) -> TokenCredential:
    """The identity the Functions host uses for ``AzureWebJobsStorage`` (identity-based)."""
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id)
