"""Structured log lines: an event name plus ids, never personal data beyond those ids.

Lines read ``event key=value ...`` so they are greppable in a terminal and in Application
Insights ``traces``; the same fields go to ``custom_dimensions`` for exporters that use it.
Every value passes through :func:`~dsr_export.domain.redaction.redact` and
:func:`~dsr_export.domain.redaction.redact_personal` (a safety net: callers pass ids only).
"""

from __future__ import annotations

import logging

from dsr_export.domain.redaction import redact, redact_personal

_LOGGER = logging.getLogger("dsr_export")


def log_event(
    event: str, *, level: int = logging.INFO, logger: logging.Logger = _LOGGER, **fields: object
) -> None:
    """Log ``event`` with its ids (request_id, instance_id, phase, ...)."""
    clean = {
        key: redact_personal(redact(str(value)))
        for key, value in fields.items()
        if value is not None
    }
    text = " ".join([event, *(f"{key}={value}" for key, value in clean.items())])
    logger.log(level, text, extra={"custom_dimensions": {"event": event, **clean}})
