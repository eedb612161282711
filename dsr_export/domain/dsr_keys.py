"""Which DSR an id names when one deployment serves many tenants (``TENANCY=multi``).

Two tenants may both send ``RITM0012345``: request ids are the tickets', unique per tenant
only. So in ``multi`` a DSR's id (its orchestration instance id, the seed of its container
names, the name of its evidence chain, what idempotency, retries, extensions, erasure,
packages and receipts key on) is the pair ``{tenant key}:{requestId}``: the tenant key is
the first 12 hexadecimal digits of the SHA-256 of the tenant id, upper case. Short (an
instance id stays well within Durable's 256 characters, the request id within its 100),
stable (a pure function of the tenant id: no registry lookup to name a DSR) and in the
request id's own alphabet, which is already the instance ids' safe one (letters, digits and
``. _ : -``); upper case, so that the pair is its own canonical form
(:func:`~dsr_export.domain.request.canonical_request_id` upper-cases the whole id).

With ``TENANCY=single`` nothing changes: the DSR id is the canonical request id, as always.
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from dsr_export.domain.request import canonical_request_id, validate_request_id

#: How many hexadecimal digits of the tenant id's hash name the tenant in a DSR id: 48 bits,
#: so two registered tenants never share one (a deployment serves hundreds, not millions).
TENANT_KEY_LENGTH: Final = 12
_PAIR: Final = re.compile(rf"^([0-9A-F]{{{TENANT_KEY_LENGTH}}}):(.+)$")


def tenant_key(tenant_id: str) -> str:
    """The short, stable name of a tenant in its DSRs' ids (the tenant id in lower case, as
    Entra writes it, hashed)."""
    digest = hashlib.sha256(tenant_id.strip().lower().encode()).hexdigest()
    return digest[:TENANT_KEY_LENGTH].upper()


def dsr_id(tenant_id: str | None, request_id: str) -> str:
    """The DSR id of ``request_id`` sent for ``tenant_id`` (None: a single-tenant DSR, whose
    id is the canonical request id); canonical however the request id was cased."""
    canonical = canonical_request_id(request_id)
    return canonical if tenant_id is None else f"{tenant_key(tenant_id)}:{canonical}"


@dataclass(frozen=True)
class DsrId:
    """A multi-tenant DSR id, taken apart: the tenant's key and the ticket's request id."""

    key: str
    request_id: str

    def __str__(self) -> str:
        return f"{self.key}:{self.request_id}"


def split(value: str) -> DsrId | None:
    """The tenant key and request id of a multi-tenant DSR id (any letter case); None when
    ``value`` is not one (no key, or a request id outside the alphabet)."""
    found = _PAIR.fullmatch(canonical_request_id(value))
    if found is None:
        return None
    try:
        validate_request_id(found.group(2))
    except ValueError:
        return None
    return DsrId(found.group(1), found.group(2))


def belongs_to(value: str, tenant_id: str) -> bool:
    """Whether the DSR id ``value`` is one of ``tenant_id``'s."""
    parts = split(value)
    return parts is not None and parts.key == tenant_key(tenant_id)
