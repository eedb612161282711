"""Graph is per tenant: a token of one tenant reaches that tenant's directory and quotas only.

An app-only token names its tenant in ``tid``; Graph serves that tenant's directory, counts the
request against that tenant's quotas, and knows only that tenant's operations. So the simulator
keeps one :class:`Space` per customer tenant (``TENANCY=multi``): its directory (the same UPN
may name different people in two tenants), its quota ledger, and the operations submitted in
it. A token whose tenant is not a registered customer tenant is the home tenant's, served by the
simulator's own directory and quotas exactly as before, so a single-tenant host is unchanged.

An operation polled from another tenant is unknown there (``400 OperationNotFound``), and a
user of another tenant is not found (404): nothing of one tenant is visible to another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .directory import Directory
from .quotas import QuotaLedger


@dataclass
class Space:
    """One tenant's Graph: directory, quotas, and the operations submitted in it."""

    directory: Directory
    quotas: QuotaLedger
    operations: set[str] = field(default_factory=set)


class Tenancy:
    """The customer tenants' spaces, beside the home tenant's (the simulator's own)."""

    def __init__(self, home: Space, clock: Callable[[], datetime]) -> None:
        self._home = home
        self._clock = clock
        self._spaces: dict[str, Space] = {}
        self._lock = threading.Lock()

    def add(self, tenant_id: str, users: Mapping[str, str] | None = None) -> Space:
        """Register a customer tenant (idempotent), with ``users`` (UPN -> object id) added."""
        key = tenant_id.lower()
        with self._lock:
            space = self._spaces.get(key)
            if space is None:
                space = Space(Directory({}), QuotaLedger(self._clock))
                self._spaces[key] = space
        for upn, oid in (users or {}).items():
            space.directory.add(upn, oid)
        return space

    def of(self, claims: Mapping[str, Any]) -> Space:
        """The space a token's claims reach: its tenant's, else the home tenant's."""
        tenant = str(claims.get("tid", "")).lower()
        with self._lock:
            return self._spaces.get(tenant, self._home)

    def space(self, tenant_id: str | None) -> Space:
        if tenant_id is None:
            return self._home
        with self._lock:
            return self._spaces[tenant_id.lower()]

    def owns(self, space: Space, op_id: str) -> bool:
        """Whether ``op_id`` was submitted in ``space`` (the home space owns every operation
        no customer tenant does: the simulator's operations before tenants existed)."""
        if space is self._home:
            with self._lock:
                return not any(op_id in other.operations for other in self._spaces.values())
        return op_id in space.operations

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted(self._spaces)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            spaces = dict(self._spaces)
        return {
            tenant: {
                "directory": space.directory.users(),
                "quotas": space.quotas.snapshot(),
                "operations": sorted(space.operations),
            }
            for tenant, space in sorted(spaces.items())
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        for tenant, saved in data.items():
            space = self.add(tenant)
            space.directory.replace(saved["directory"])
            space.quotas.restore(saved["quotas"])
            space.operations = set(saved["operations"])


def customer_directory(tenant_id: str, upns: list[str]) -> dict[str, str]:
    """The same UPNs as another directory, each a different person here: object ids derived
    from the tenant, so that two tenants never share one (the isolation the issue asks for)."""
    import uuid

    return {upn: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id}/{upn}")) for upn in upns}
