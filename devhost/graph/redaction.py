"""A SAS signature is a bearer secret for the customer's container: no log line may hold one.

The service is handed a write SAS with every submit and the simulator uses it for real, so
its own storage calls must not leak it either: the storage SDK logs each request (SAS URLs as
``...&sig=REDACTED``) at INFO and urllib3 logs request lines, query string included, at DEBUG.
Only the container URL without the query is ever shown or stored.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

# The names from before the simulator was a package, so that log filters keep working.
log = logging.getLogger("devhost.graph")
# The simulator's own storage calls are an implementation detail: only warnings get through.
storage_log = logging.getLogger("devhost.graph.storage")
storage_log.setLevel(logging.WARNING)

_URLLIB3_LOGGER = "urllib3.connectionpool"
_SIG = re.compile(r"(?i)\bsig=[^&\s\"']*")


def redact(text: str) -> str:
    """Cut signatures out entirely, so that no log line ever contains ``sig=``."""
    return _SIG.sub("[sig removed]", text)


def without_query(url: str) -> str:
    """The container URL with the SAS cut off: the only form that may be shown or stored."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class RedactSignatures(logging.Filter):
    """urllib3 logs request lines, query string included, at DEBUG: cut the signature out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "sig=" in message.lower():
            record.msg, record.args = redact(message), None
        return True


storage_log.addFilter(RedactSignatures())


def guard_urllib3() -> None:
    """Redact urllib3's request lines too (once, however many simulators start)."""
    urllib3_log = logging.getLogger(_URLLIB3_LOGGER)
    if not any(isinstance(f, RedactSignatures) for f in urllib3_log.filters):
        urllib3_log.addFilter(RedactSignatures())
