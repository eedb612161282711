"""Structured log lines: an event name plus ids, never personal data beyond those ids.

A line reads ``event key=value key="a value" ...``: the event name, then logfmt pairs. The
**message text is the contract**, because it is what reaches Application Insights ``traces``
on every path. On Flex Consumption the Python worker sends each log record to the Functions
host over gRPC as an ``RpcLog`` (level, category, invocation id and the formatted message) and
the host writes it to Application Insights; the record's ``extra`` attributes are not sent, so
they reach ``customDimensions`` only if the app configures an exporter of its own
(azure-monitor-opentelemetry), which this app does not (azure-functions-python-worker
issues #1327, #1681). The same fields still go to ``extra``, flat, for such an exporter.

Values are logfmt-quoted so that KQL reads them with ``parse-kv`` instead of regular
expressions: a value that is empty or holds a space, ``"``, ``=`` or ``\\`` is written
``"..."`` with ``\\"`` and ``\\\\`` escapes; any other value is written as it is. Control
characters (line breaks) become spaces, so a line is always one line, and a value can never be
mistaken for the next ``key=``. Read it with::

    | parse-kv message as (request_id: string, ...)
        with (pair_delimiter=" ", kv_delimiter="=", quote='"', escape="\\\\")

Every event and its fields are declared in :mod:`dsr_export.domain.log_events`;
:func:`log_event` refuses any other. Every value passes through
:func:`~dsr_export.domain.redaction.redact` and
:func:`~dsr_export.domain.redaction.redact_personal` (a safety net: callers pass ids only).
"""

from __future__ import annotations

import logging
import re
from typing import Final

from dsr_export.domain import dsr_keys
from dsr_export.domain.log_events import check
from dsr_export.domain.redaction import redact, redact_personal

_LOGGER = logging.getLogger("dsr_export")
#: A value that needs no quotes: at least one character, none of them a space, a quote, `=`
#: or a backslash.
_BARE: Final = re.compile(r'[^\s"=\\]+')
#: Line breaks and other control characters: a line must stay one line.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
#: The tenants named so far, by the key their DSR ids start with (``TENANCY=multi``).
_TENANTS_BY_KEY: dict[str, str] = {}


def name_tenant(tenant_id: str) -> None:
    """Let every later line of this tenant's DSRs carry its ``tenant_id`` (the workbooks'
    tenant filter): called wherever a DSR's tenant is resolved (intake, activities)."""
    _TENANTS_BY_KEY[dsr_keys.tenant_key(tenant_id)] = tenant_id.lower()


def _tenant_of(fields: dict[str, object]) -> str | None:
    """The tenant of the line's DSR: given, or known by its DSR id's key (a multi-tenant
    DSR's id names its tenant's key, never the tenant itself)."""
    given = fields.get("tenant_id")
    if given is not None:
        return str(given)
    request_id = fields.get("request_id")
    parts = dsr_keys.split(request_id) if isinstance(request_id, str) else None
    return _TENANTS_BY_KEY.get(parts.key) if parts is not None else None


def logfmt_value(value: str) -> str:
    """``value`` as it is written after ``key=``: bare when it can be, else quoted.

    Control characters (a line break in an exception's text) become one space each run: KQL's
    ``escape`` only makes the next character literal, so ``\\n`` would read back as ``n``.
    """
    value = _CONTROL.sub(" ", value)
    if _BARE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def format_line(event: str, fields: dict[str, str]) -> str:
    """The message text of one line (fields already cleaned, in the caller's order)."""
    return " ".join([event, *(f"{key}={logfmt_value(value)}" for key, value in fields.items())])


def log_event(
    event: str, *, level: int = logging.INFO, logger: logging.Logger = _LOGGER, **fields: object
) -> None:
    """Log ``event`` with its ids (request_id, instance_id, phase, ...).

    ``tenant_id`` may go on any line; a line of a multi-tenant DSR gets it without asking
    once its tenant is named (:func:`name_tenant`).

    Raises :class:`~dsr_export.domain.log_events.UndeclaredLogEvent` for an event or a field
    that is not declared: a typo here would leave a workbook panel or an alert silently empty,
    and the tests (which scan every call site) make sure it cannot reach a deployment.
    """
    check(event, {key: value for key, value in fields.items() if key != "tenant_id"})
    tenant = _tenant_of(fields)
    if tenant is not None:  # every line of a tenant's DSR carries it, whatever the event
        fields = {**fields, "tenant_id": tenant}
    clean = {
        key: redact_personal(redact(str(value)))
        for key, value in fields.items()
        if value is not None
    }
    logger.log(level, format_line(event, clean), extra={"event": event, **clean})
