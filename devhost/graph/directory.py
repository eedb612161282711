"""Graph names a user by object id or by UPN, but exports only by object id.

Resolving a UPN is a separate call the app must make first, so the directory answers both
forms; a submit naming a UPN is ``InvalidInput``, and an unknown user is a 404 on either
route. The ``missing_users`` fault hides a user who is in the directory, as a deletion would.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping

from .replies import GraphError

DEMO_DIRECTORY: Mapping[str, str] = {
    "adele.vance@contoso.example": "6e7b768e-07e2-4810-8459-485f84f8f204",
    "alex.wilber@contoso.example": "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
    "megan.bowen@contoso.example": "48d31887-5fad-4d73-a9f5-3c356e68a038",
}

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Directory:
    """UPN -> object id, both folded to lower case as Graph compares them."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {upn.lower(): oid.lower() for upn, oid in users.items()}
        self._lock = threading.Lock()

    def add(self, upn: str, object_id: str) -> str:
        oid = object_id.lower()
        if not GUID.match(oid):
            raise ValueError("object_id must be a GUID")
        with self._lock:
            self._users[upn.lower()] = oid
        return oid

    def users(self) -> dict[str, str]:
        """UPN -> object id of everyone in the directory (a copy)."""
        with self._lock:
            return dict(self._users)

    def replace(self, users: Mapping[str, str]) -> None:
        """Make the directory exactly ``users`` (a restored simulator's)."""
        folded = {str(upn).lower(): str(oid).lower() for upn, oid in users.items()}
        if not all(GUID.match(oid) for oid in folded.values()):
            raise ValueError("every object id must be a GUID")
        with self._lock:
            self._users = folded

    def lookup(self, user: str, hidden: Iterable[str]) -> tuple[str, str] | None:
        """(object id, UPN) of a user named by either, unless absent or named in ``hidden``."""
        key = user.lower()
        with self._lock:
            oid = self._users.get(key, key)
            upn = next((u for u, o in self._users.items() if o == oid), None)
        if upn is None or {oid, upn} & _folded(hidden):
            return None
        return oid, upn

    def is_among(self, object_id: str, names: Iterable[str]) -> bool:
        """Whether ``names`` (object ids or UPNs) name this user."""
        with self._lock:
            upns = {upn for upn, oid in self._users.items() if oid == object_id}
        return bool(({object_id} | upns) & _folded(names))


def user_not_found(user: str) -> GraphError:
    return GraphError(
        404,
        "ResourceNotFound",
        f"Resource '{user}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def _folded(values: Iterable[str]) -> set[str]:
    return {v.lower() for v in values}
