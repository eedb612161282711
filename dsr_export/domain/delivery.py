"""How a package part is handed out: the file name the person's browser saves it under.

The name travels in the SAS (``rscd``, the blob service answers it as ``Content-Disposition``),
so it must be safe as a header value whatever the request id holds: an ASCII ``filename`` (every
character outside ``[A-Za-z0-9._-]`` becomes ``_``) for old clients, and the exact name as RFC
6266 / RFC 8187 ``filename*`` (UTF-8, percent-encoded) for the rest.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final
from urllib.parse import quote

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
#: The longest name offered (file systems allow 255 bytes; leave room for a browser's " (1)").
MAX_NAME: Final = 200


def download_name(request_id: str, part: str) -> str:
    """The name a part is saved under: ``{requestId}-{part}`` (``RITM1-package.zip``)."""
    return f"{request_id}-{part}"[-MAX_NAME:]


def ascii_name(name: str) -> str:
    """``name`` reduced to ``[A-Za-z0-9._-]`` (accents dropped first, then ``_``); never
    empty, never starting with a dot (a hidden file)."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    safe = _UNSAFE.sub("_", folded).lstrip(".")
    return safe or "package.zip"


def attachment(name: str) -> str:
    """The ``Content-Disposition`` value: an attachment named ``name`` (RFC 6266)."""
    return f"attachment; filename=\"{ascii_name(name)}\"; filename*=UTF-8''{quote(name, safe='')}"
