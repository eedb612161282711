"""The SAS handed to Graph: exactly what the service accepts, nothing more.

Graph needs a container-scoped *service* SAS that can add, create and write (``sp=acw``) and can
neither read nor list (see docs/graph-contract.md). We add: HTTPS only, a start time
15 minutes back against clock skew, and an expiry long enough for a 30-day export.

Two ways to sign it (``EXPORT_SAS_MODE``):

* ``stored-policy``: signed with the account key and bound to a stored access policy on the
  container (``si=``); the permissions and expiry live in the policy, so deleting the policy
  revokes the SAS at once.
* ``user-delegation``: signed with a user delegation key from the app's managed identity, for
  accounts with shared key disabled. The key, and so the SAS, lives at most 7 days and cannot be
  revoked one by one: an export that outlives it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from azure.storage.blob import (
    AccessPolicy,
    BlobSasPermissions,
    ContainerClient,
    ContainerSasPermissions,
    UserDelegationKey,
    generate_blob_sas,
    generate_container_sas,
)

from dsr_export.settings import USER_DELEGATION_MAX_LIFETIME

#: Name of the stored access policy the Graph SAS is bound to (one per container).
POLICY_ID: Final = "graph-export"
#: Read, nothing else: the one package part a download link is for (no list, no write).
READ_ONE_BLOB: Final = BlobSasPermissions(read=True)
#: Add, create, write. No read, list or delete: Graph refuses a SAS that can read or list.
GRAPH_PERMISSIONS: Final = ContainerSasPermissions(add=True, create=True, write=True)
CLOCK_SKEW: Final = timedelta(minutes=15)
#: Azure applies a new stored access policy within 30 seconds; Graph checks the SAS at once.
POLICY_SETTLE_SECONDS: Final = 30


@dataclass(frozen=True)
class Validity:
    """When a SAS starts and ends."""

    start: datetime
    expiry: datetime


def validity(now: datetime, lifetime: timedelta, *, user_delegation: bool) -> Validity:
    """Start 15 minutes back; a user delegation SAS is capped at 7 days from now."""
    if user_delegation:
        lifetime = min(lifetime, USER_DELEGATION_MAX_LIFETIME)
    return Validity(start=now - CLOCK_SKEW, expiry=now + lifetime)


def set_graph_policy(container: ContainerClient, window: Validity) -> None:
    """Create (or replace) the stored access policy the Graph SAS refers to."""
    policy = AccessPolicy(permission=GRAPH_PERMISSIONS, start=window.start, expiry=window.expiry)
    container.set_container_access_policy(signed_identifiers={POLICY_ID: policy})


def revoke_graph_policy(container: ContainerClient) -> None:
    """Delete every stored access policy: each SAS bound to one stops working at once."""
    container.set_container_access_policy(signed_identifiers={})


def stored_policy_sas(container: ContainerClient, account_key: str) -> str:
    """The container SAS URL bound to :data:`POLICY_ID` (permissions and expiry come from it)."""
    token = generate_container_sas(
        account_name=container.account_name or "",
        container_name=container.container_name,
        account_key=account_key,
        policy_id=POLICY_ID,
        protocol="https",
    )
    return f"{container.url}?{token}"


def user_delegation_sas(
    container: ContainerClient, key: UserDelegationKey, window: Validity
) -> str:
    """The container SAS URL signed with a user delegation key."""
    token = generate_container_sas(
        account_name=container.account_name or "",
        container_name=container.container_name,
        user_delegation_key=key,
        permission=GRAPH_PERMISSIONS,
        start=window.start,
        expiry=window.expiry,
        protocol="https",
    )
    return f"{container.url}?{token}"


def blob_read_sas(
    account_name: str,
    container_name: str,
    blob_name: str,
    blob_url: str,
    key: UserDelegationKey,
    window: Validity,
    content_disposition: str,
) -> str:
    """A read-only SAS URL on one blob (``sr=b``, ``sp=r``: it cannot list the container or
    read another blob), HTTPS only, signed with a user delegation key, that makes the blob
    service answer with ``content_disposition`` (``rscd``: the name the file is saved under)."""
    token = generate_blob_sas(
        account_name=account_name,
        container_name=container_name,
        blob_name=blob_name,
        user_delegation_key=key,
        permission=READ_ONE_BLOB,
        start=window.start,
        expiry=window.expiry,
        protocol="https",
        content_disposition=content_disposition,
    )
    return f"{blob_url}?{token}"
