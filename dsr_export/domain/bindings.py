"""Tenant bindings: where a caller may act (issue 21), beside what its app roles let it do.

With ``TENANCY=multi`` every caller is bound to tenants by the registry's bindings, each a
principal bound to a set of registered tenant ids, or to all of them (``*``, the deployment's
operators). A principal is what the app knows a caller by (:mod:`dsr_export.domain.callers`):

- ``user``: a person's Entra object id (``oid`` of a delegated token);
- ``application``: an application's client id (``azp``/``appid`` of an app-only token), which is
  how the app records a service principal;
- ``group``: an Entra group's object id, matched against the token's ``groups`` claim (present
  only if the app registration emits group claims; a token with too many groups carries none,
  and then only the caller's own id binds it);
- ``functionKey``: ``sha256:`` and the first 16 hex digits of the SHA-256 of a function key. The
  platform never tells the app which key was used, so the key's fingerprint stands for its name.

A caller's scope is the union over its id, its groups and its key fingerprint; a caller no
binding names is bound nowhere: it reaches no tenant (every DSR is a 404 to it, and it cannot
submit). A binding reaches registered, active tenants only: a new one may not name a retired
tenant, and retiring a tenant takes it out of every binding that names it
(:func:`without_tenant`), each such change logged as the tenant's retirement. Every change is
recorded (who, when, what) in the registry's hash-chained change log (:func:`change_record`):
principal and tenant ids are pseudonymous ids, recorded as they are. Pure: no I/O, no clock,
no environment.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from dsr_export.domain.callers import CALLER_ID, Caller, TenantScope
from dsr_export.domain.request import FieldError, InvalidRequest
from dsr_export.domain.tenants import TENANT_ID, record_hash

#: The binding to every tenant, present and future.
ALL: Final = "*"
#: A function key's fingerprint, as :func:`dsr_export.domain.callers.from_function_key` makes it.
FINGERPRINT: Final = re.compile(r"^sha256:[0-9a-f]{16}$")
_FIELDS: Final = frozenset({"principal", "kind", "tenants"})


class PrincipalKind(enum.StrEnum):
    """What a binding's principal is, and so how a caller matches it."""

    USER = "user"
    APPLICATION = "application"
    GROUP = "group"
    FUNCTION_KEY = "functionKey"


@dataclass(frozen=True)
class Binding:
    """One principal bound to tenants (``tenants`` None: to every tenant)."""

    principal: str
    kind: PrincipalKind
    tenants: frozenset[str] | None

    @property
    def scope(self) -> TenantScope:
        return TenantScope(self.tenants)

    def matches(self, caller: Caller) -> bool:
        """Whether this binding names ``caller``: by its id and kind, or by one of its groups."""
        if self.kind is PrincipalKind.GROUP:
            return self.principal in caller.groups
        return caller.kind == self.kind.value and caller.id.lower() == self.principal

    def to_json(self) -> dict[str, Any]:
        tenants: str | list[str] = ALL if self.tenants is None else sorted(self.tenants)
        return {"principal": self.principal, "kind": self.kind.value, "tenants": tenants}


@dataclass(frozen=True)
class Bound:
    """A binding as the registry holds it: the binding, and who last changed it when."""

    binding: Binding
    created_at: str
    updated_at: str
    updated_by: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.binding.to_json(),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "updatedBy": dict(self.updated_by),
        }


def valid_principal(raw: str | None) -> str:
    """The route's ``{principal}``: an id in a caller id's alphabet, or a key fingerprint
    (lower case, as stored and matched); :class:`InvalidRequest` naming ``/principal``."""
    value = (raw or "").strip()
    if FINGERPRINT.fullmatch(value.lower()) or CALLER_ID.fullmatch(value):
        return value.lower()
    raise InvalidRequest(
        [
            FieldError(
                "/principal",
                "must be an Entra object id, application id or group id (a GUID), or a "
                "function key's fingerprint sha256:<16 hex digits>",
            )
        ]
    )


def parse_binding(
    principal: str, payload: Mapping[str, Any], registered: Collection[str]
) -> Binding:
    """The binding a PUT body gives ``principal`` (already :func:`valid_principal`), each
    tenant one of ``registered``; :class:`InvalidRequest` naming every field at fault."""
    errors = [
        FieldError(f"/{name}", "is not a binding field") for name in sorted(set(payload) - _FIELDS)
    ]
    given = payload.get("principal")
    if given is not None and (not isinstance(given, str) or given.strip().lower() != principal):
        errors.append(FieldError("/principal", "must be the principal the URL names"))
    kind = _kind(principal, payload.get("kind"), errors)
    tenants = _tenants(payload.get("tenants"), registered, errors)
    if errors:
        raise InvalidRequest(errors)
    assert kind is not None
    return Binding(principal, kind, tenants)


def _kind(principal: str, raw: object, errors: list[FieldError]) -> PrincipalKind | None:
    fingerprint = FINGERPRINT.fullmatch(principal) is not None
    if raw is None and fingerprint:
        return PrincipalKind.FUNCTION_KEY
    try:
        kind = PrincipalKind(raw) if isinstance(raw, str) else None
    except ValueError:
        kind = None
    if kind is None:
        choices = ", ".join(k.value for k in PrincipalKind)
        errors.append(FieldError("/kind", f"is required: one of {choices}"))
    elif fingerprint != (kind is PrincipalKind.FUNCTION_KEY):
        errors.append(
            FieldError(
                "/kind",
                "a function key is bound by its fingerprint (sha256:...), and a fingerprint "
                "names a function key only",
            )
        )
        kind = None
    return kind


def _tenants(
    raw: object, registered: Collection[str], errors: list[FieldError]
) -> frozenset[str] | None:
    if raw == ALL:
        return None
    if not isinstance(raw, list) or not raw:
        errors.append(
            FieldError(
                "/tenants",
                'is required: "*" (every tenant) or a list of registered tenant ids; to bind '
                "a principal nowhere, DELETE its binding",
            )
        )
        return frozenset()
    found: set[str] = set()
    for index, item in enumerate(raw):
        value = item.strip().lower() if isinstance(item, str) else ""
        if not TENANT_ID.fullmatch(value):
            errors.append(FieldError(f"/tenants/{index}", "must be a tenant id, a GUID"))
        elif value not in registered:
            errors.append(FieldError(f"/tenants/{index}", "is not a registered tenant"))
        else:
            found.add(value)
    return frozenset(found)


def without_tenant(binding: Binding, tenant_id: str) -> Binding | None:
    """``binding`` no longer naming ``tenant_id`` (a retired tenant): itself if it never named
    it (or names every tenant: the operators keep reaching the retired record), None if that
    tenant was all it named (a binding to no tenant is no binding: it is removed)."""
    if binding.tenants is None or tenant_id not in binding.tenants:
        return binding
    rest = binding.tenants - {tenant_id}
    return Binding(binding.principal, binding.kind, rest) if rest else None


def from_stored(document: Mapping[str, Any]) -> Binding:
    """A binding as stored (checked again: the store is not trusted blindly; its tenants are
    not checked against the registry, which may have been read at another moment)."""
    principal = valid_principal(str(document.get("principal", "")))
    tenants = document.get("tenants")
    known = frozenset(t for t in tenants if isinstance(t, str)) if isinstance(tenants, list) else ()
    return parse_binding(principal, document, known)


def scope_for(
    caller: Caller, bindings: Iterable[Binding], operators: Collection[str] = ()
) -> TenantScope:
    """Where ``caller`` may act: the union of every binding that names it. ``operators`` are
    principals bound to every tenant by configuration (``TENANCY_OPERATORS``: the first
    operator, before any binding exists), matched by id, group or key fingerprint."""
    if caller.id.lower() in operators or caller.groups & frozenset(operators):
        return TenantScope.everywhere()
    reached: set[str] = set()
    for binding in bindings:
        if binding.matches(caller):
            if binding.tenants is None:
                return TenantScope.everywhere()
            reached |= binding.tenants
    return TenantScope.only(reached)


# -- the change log ----------------------------------------------------------------------------


def change_record(
    *,
    previous_hash: str | None,
    at: datetime,
    by: Mapping[str, Any],
    before: Binding | None,
    after: Binding | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One line of the registry's change log for a binding made, changed or removed, chained
    to the line before it (the same chain as the tenants' changes: one log of the registry).
    ``extra`` says why, when the change was not asked for itself (``{"cause": "retired",
    "tenantId": ...}``: a tenant's retirement took it out of the binding)."""
    subject = after or before
    assert subject is not None
    action = "bound" if before is None else "unbound" if after is None else "rebound"
    record: dict[str, Any] = {
        **dict(extra or {}),
        "at": at.isoformat(),
        "by": dict(by),
        "action": action,
        "principal": subject.principal,
        "kind": subject.kind.value,
        "tenants": {
            "from": before.to_json()["tenants"] if before is not None else None,
            "to": after.to_json()["tenants"] if after is not None else None,
        },
        "prev": previous_hash,
    }
    record["hash"] = record_hash(record)
    return record
