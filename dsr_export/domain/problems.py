"""RFC 9457 problem documents: how every refusal of the HTTP intake reads."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from dsr_export.domain.request import FieldError

CONTENT_TYPE: Final = "application/problem+json"
_TYPE_BASE: Final = "https://github.com/dsr-export/dsr-export/blob/main/docs/errors.md#"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    errors: Iterable[FieldError] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A problem document; ``errors`` lists each field at fault as a JSON pointer."""
    body: dict[str, Any] = {
        "type": _TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    listed = [{"pointer": e.pointer, "detail": e.detail} for e in errors]
    if listed:
        body["errors"] = listed
    body.update(extra)
    return body


def dumps(body: dict[str, Any]) -> str:
    """Serialise a problem document."""
    return json.dumps(body)
