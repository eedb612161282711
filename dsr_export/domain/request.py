"""The DSR request: decoding, validation and the names derived from it.

Validation reports every field at fault at once (the intake turns them into an RFC 9457 problem
document), and nothing a caller sends makes it raise anything else. Names derived from the
request id (instance id, container) are pure functions of its canonical form, so a retried
delivery of the same request, in any letter case, lands on the same orchestration and
container.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from dsr_export.domain.deadlines import GDPR, Regulation, parse_received_at, parse_regulation
from dsr_export.domain.errors import CallbackRefused
from dsr_export.domain.package_manifest import PACKAGE_LANGUAGES

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
#: Entra's documented UPN alphabet for the part before the ``@``: A-Z a-z 0-9 ' . - _ ! # ^ ~
#: (so guest UPNs, ``alice_contoso.com#EXT#@fabrikam.onmicrosoft.com``, are real). ASCII only:
#: no control, format (zero-width, bidi) or surrogate characters, no double quotes.
_UPN = re.compile(
    r"^(?!\.)(?!.*\.\.)[A-Za-z0-9'._!#^~-]{1,113}(?<!\.)"
    r"@(?=.{4,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
    re.ASCII,
)
_CONTAINER_UNSAFE = re.compile(r"[^a-z0-9]+")

#: Clock skew tolerated on a ``receivedAt`` in the future.
RECEIVED_AT_SKEW: Final = timedelta(minutes=5)
#: How old a ``receivedAt`` may be by default (``RECEIVED_AT_MAX_AGE_DAYS``): a DSR from 1900
#: is a typo, not a request born overdue.
RECEIVED_AT_MAX_AGE: Final = timedelta(days=400)
#: Larger bodies are refused before parsing: a DSR is a few hundred bytes.
MAX_BODY_BYTES: Final = 16 * 1024
_UTF8_BOM: Final = b"\xef\xbb\xbf"
MAX_URL_LENGTH: Final = 2048
MAX_REQUESTED_BY_LENGTH: Final = 200

#: Prefix of every export container; lets operators and lifecycle rules recognise them.
CONTAINER_PREFIX: Final = "dsr-"


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, addressed as a JSON pointer (RFC 6901)."""

    pointer: str
    detail: str


@dataclass
class InvalidRequest(ValueError):
    """The request was refused; ``errors`` names each field at fault."""

    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(f"{e.pointer}: {e.detail}" for e in self.errors)


def is_object_id(value: str) -> bool:
    """True for an Entra object id (a GUID), which is what exportPersonalData accepts."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def validate_request_id(value: object) -> str:
    """The ticket's id, used verbatim as the orchestration instance id.

    The allowed alphabet is a subset of what Durable instance ids accept (no ``/ \\ # ?``,
    no control characters), so the id needs no escaping anywhere: URLs, logs, task hub keys.
    """
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise InvalidRequest(
            [
                FieldError(
                    "/requestId",
                    "must be 1-100 characters: letters, digits and . _ : - "
                    "(starting with a letter or digit)",
                )
            ]
        )
    return value


def canonical_request_id(request_id: str) -> str:
    """The one form of a request id that names its DSR: ``abc-1`` and ``ABC-1`` are one DSR.

    Ticket ids are compared case-insensitively (a ticketing system or a person retyping the id
    may change its case, and two exports of the same person must not follow). Upper case,
    because ticket ids are written that way (``RITM0012345``, ``PRIV-12``); the alphabet is
    ASCII, so the mapping is exact.
    """
    return request_id.upper()


def container_name(request_id: str, attempt: int = 1) -> str:
    """A valid, collision-safe container name for one DSR.

    Container names are lowercase, 3-63 characters, alphanumerics and single hyphens. A readable
    slug of the request id keeps the portal legible; a hash of the exact id keeps ``a.b`` and
    ``a-b`` in different containers. Ids arrive canonical (``PRIV-1`` and ``priv-1`` are one
    DSR, one container); a DSR started before ids were canonical keeps its exact id's container.
    A submit that had to start over (``attempt`` > 1) gets a fresh container, ``-a2`` and on:
    the first one holds Graph's receipt and cannot be used again.
    """
    slug = _CONTAINER_UNSAFE.sub("-", request_id.lower()).strip("-")[:36].strip("-")
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:16]
    name = f"{CONTAINER_PREFIX}{slug}-{digest}" if slug else f"{CONTAINER_PREFIX}{digest}"
    return name if attempt <= 1 else f"{name}-a{attempt}"


#: The suffix of a fresh container (``-a2`` and on). Bounded to six digits: a DSR's own
#: container ends in 16 hex digits, which ``a`` and six digits can never spell, so no other
#: DSR's container name can take this shape.
_ATTEMPT_SUFFIX: Final = re.compile(r"-a([1-9][0-9]{0,5})")


def is_container_of(name: str, request_id: str) -> bool:
    """Whether ``name`` is one of ``request_id``'s containers, exactly: its first, or a fresh
    one of a retried submit or DSR (:func:`container_name` with an attempt of 2 or more).

    A prefix match is not enough: the DSR ``V-<first 16 hex of sha256(V)>-A2`` has a container
    that starts with ``V``'s and ``-a``, and erasing ``V`` must never touch it.
    """
    base = container_name(request_id)
    if name == base:
        return True
    found = _ATTEMPT_SUFFIX.fullmatch(name[len(base) :]) if name.startswith(base) else None
    return (
        found is not None
        and int(found.group(1)) >= 2
        and name == container_name(request_id, int(found.group(1)))
    )


@dataclass(frozen=True)
class ExportRequest:
    """A validated DSR export request.

    Unknown fields are ignored: ticketing systems add their own, and refusing them would make
    every template change an outage. ``requestedBy`` (the agent who filed it) is kept for the
    audit trail in the orchestration input only; it never reaches logs, status or callbacks.
    """

    request_id: str
    user: str
    callback_url: str | None = None
    received_at: datetime | None = None
    regulation: Regulation = GDPR
    requested_by: str | None = None
    #: The fields the caller sent: a resubmission is compared on these only.
    sent: frozenset[str] = frozenset()
    #: The request id exactly as sent (``request_id`` is canonical): how a DSR started before
    #: ids were canonical is found.
    given_id: str | None = None
    #: The language of the subject's package (``PACKAGE_LANGUAGES``); None: the default setting.
    language: str | None = None

    @property
    def user_object_id(self) -> str | None:
        """The object id when ``user`` is one; None when it still needs resolving (a UPN)."""
        return self.user.lower() if is_object_id(self.user) else None

    @classmethod
    def parse(
        cls,
        payload: object,
        *,
        now: datetime | None = None,
        callback_check: Callable[[str], str] | None = None,
        max_age: timedelta = RECEIVED_AT_MAX_AGE,
    ) -> ExportRequest:
        """Validate a decoded JSON payload, collecting every field error.

        ``callback_check`` judges a ``callbackUrl`` (the adapters' URL judge, which raises
        :class:`CallbackRefused` saying why); None when callbacks are off (no signing secret).
        ``now`` bounds ``receivedAt``: a receipt in the future would push the legal deadline out,
        one older than ``max_age`` is a typo. The request id is kept in its canonical form.
        """
        if not isinstance(payload, Mapping):
            raise InvalidRequest([FieldError("", "the body must be a JSON object")])
        errors: list[FieldError] = []
        request_id = given_id = ""
        try:
            given_id = validate_request_id(payload.get("requestId"))
            request_id = canonical_request_id(given_id)
        except InvalidRequest as exc:
            errors.extend(exc.errors)
        user = _user(payload.get("user"), errors)
        callback_url = _callback_url(payload.get("callbackUrl"), callback_check, errors)
        received_at = _received_at(payload.get("receivedAt"), now, max_age, errors)
        regulation = GDPR
        try:
            regulation = parse_regulation(payload.get("regulation"))
        except ValueError as exc:
            errors.append(FieldError("/regulation", str(exc)))
        requested_by = _requested_by(payload.get("requestedBy"), errors)
        language = _language(payload.get("language"), errors)
        if errors:
            raise InvalidRequest(errors)
        assert user is not None
        return cls(
            request_id=request_id,
            user=user,
            callback_url=callback_url,
            received_at=received_at,
            regulation=regulation,
            requested_by=requested_by,
            sent=frozenset(key for key in payload if isinstance(key, str)),
            given_id=given_id,
            language=language,
        )


def _user(value: object, errors: list[FieldError]) -> str | None:
    """The subject as sent: an Entra object id or a user principal name (None, with the
    error, otherwise)."""
    if isinstance(value, str) and (is_object_id(value) or _UPN.fullmatch(value)):
        return value
    errors.append(FieldError("/user", "must be an Entra object id (GUID) or a user principal name"))
    return None


def _requested_by(value: object, errors: list[FieldError]) -> str | None:
    """The free-text note of who asked, bounded (None, with the error, when it is not)."""
    if value is None or (isinstance(value, str) and 0 < len(value) <= MAX_REQUESTED_BY_LENGTH):
        return value
    errors.append(FieldError("/requestedBy", f"must be a string of 1-{MAX_REQUESTED_BY_LENGTH}"))
    return None


def _language(value: object, errors: list[FieldError]) -> str | None:
    """The package's language as sent (case-insensitive), checked against the supported ones
    now: a typo found when the package is built, weeks later, would reach nobody."""
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in PACKAGE_LANGUAGES:
        return value.lower()
    errors.append(FieldError("/language", f"must be one of {', '.join(PACKAGE_LANGUAGES)}"))
    return None


def _callback_url(
    raw: object, check: Callable[[str], str] | None, errors: list[FieldError]
) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_URL_LENGTH:
        errors.append(FieldError("/callbackUrl", f"must be a URL of at most {MAX_URL_LENGTH}"))
        return None
    if check is None:
        errors.append(FieldError("/callbackUrl", "callbacks are not enabled on this service"))
        return None
    try:
        return check(raw)
    except CallbackRefused as exc:
        errors.append(FieldError("/callbackUrl", str(exc)))
        return None


def _received_at(
    raw: object, now: datetime | None, max_age: timedelta, errors: list[FieldError]
) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        errors.append(FieldError("/receivedAt", "must be an RFC 3339 date-time string"))
        return None
    try:
        received_at = parse_received_at(raw)
    except ValueError as exc:
        errors.append(FieldError("/receivedAt", str(exc)))
        return None
    if now is not None and received_at > now + RECEIVED_AT_SKEW:
        errors.append(FieldError("/receivedAt", "must not be in the future"))
        return None
    if now is not None and received_at < now - max_age:
        errors.append(
            FieldError("/receivedAt", f"must not be more than {max_age.days} days in the past")
        )
        return None
    return received_at


def decode_body(body: bytes) -> object:
    """JSON from raw bytes, strictly; :class:`InvalidRequest` for anything else.

    UTF-8 only (a byte order mark is tolerated): :func:`json.loads` would also guess UTF-16
    and UTF-32, which no ticketing system sends on purpose. A key given twice is refused: the
    last one would win, and a different person than the first key named would be exported.
    ``NaN`` and ``Infinity`` are not JSON; lone surrogates cannot be written anywhere.
    """
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest([FieldError("", f"the body exceeds {MAX_BODY_BYTES} bytes")])
    try:
        text = body.removeprefix(_UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest([FieldError("", "the body is not UTF-8 text")]) from None
    try:
        decoded = json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite
        )
    except _DuplicateKey as exc:
        raise InvalidRequest([FieldError(exc.pointer, "is given more than once")]) from None
    except (ValueError, RecursionError):
        raise InvalidRequest([FieldError("", "the body is not valid JSON")]) from None
    surrogates = list(_surrogates(decoded, ""))
    if surrogates:
        raise InvalidRequest(
            [FieldError(pointer, "contains an invalid Unicode character") for pointer in surrogates]
        )
    return decoded


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.pointer = "/" + key.replace("~", "~0").replace("/", "~1")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is out of range")
    return number


def _surrogates(value: object, pointer: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, str):
        if any("\ud800" <= char <= "\udfff" for char in value):
            found.append(pointer)
    elif isinstance(value, dict):
        for key, item in value.items():
            child = pointer + "/" + str(key).replace("~", "~0").replace("/", "~1")
            if any("\ud800" <= char <= "\udfff" for char in str(key)):
                found.append(child)
            found.extend(_surrogates(item, child))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_surrogates(item, f"{pointer}/{index}"))
    return found
