"""Scrub secrets and personal data from text before it is logged, persisted or returned.

The design keeps secrets inside the activity that uses them; this is the second line of defence
for text we do not fully control (exception messages from libraries, URLs echoed by a service).
Personal data is the other half: Graph's error text quotes the user ("Resource
'adele@contoso.com' does not exist"); status documents, lists, callbacks and logs carry ids
only, so such text passes :func:`redact_personal` first. A ticket's free text (a cancel reason)
is not redacted but never kept: only its hash (:func:`dsr_export.domain.errors.cancel_event`).
"""

from __future__ import annotations

import re
from typing import Final

_PATTERNS: Final = (
    # SAS signature and the user-delegation key fields that go with it.
    (re.compile(r"(?i)\b(sig|skoid|sktid|skt|ske|sks|skv|skdutid)=[^&\s\"'<>]+"), r"\1=REDACTED"),
    (re.compile(r"(?i)\b(AccountKey|SharedAccessSignature)=[^;\s\"'<>]+"), r"\1=REDACTED"),
    (re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer REDACTED"),
)


def redact(text: str) -> str:
    """Return ``text`` with SAS signatures, account keys and bearer tokens replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


#: Anything shaped like an e-mail address or a UPN (guest UPNs with ``#EXT#`` included).
#: Apostrophes belong to the match: Entra allows them in UPNs (o'neil@...), and a UPN quoted in
#: Graph's text ('adele@...') then goes with its quotes, leaving nothing of it behind.
_ADDRESS: Final = re.compile(r"[^\s\"<>()\[\],;:@]+@[^\s\"<>()\[\],;:@]+")
PERSONAL_PLACEHOLDER: Final = "<user>"


def redact_personal(text: str) -> str:
    """Return ``text`` with every e-mail address or UPN replaced by ``<user>``."""
    return _ADDRESS.sub(PERSONAL_PLACEHOLDER, text)


def strip_query(url: str) -> str:
    """A URL without its query string: how a SAS URL may be shown (the container, no token)."""
    return url.split("?", 1)[0]
