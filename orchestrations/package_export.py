"""``package_export``: the subject's package, built after the DSR completed; one per DSR (instance
``package~{requestId}``; ``~`` never occurs in a request id, so it cannot be taken for a DSR).

It calls the two package activities (build, then record in the evidence) and returns the
package's state document, or the error and why: a build can take long (the export may be
gigabytes), which an HTTP request could not wait for.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Final

import azure.durable_functions as df

from dsr_export.domain import steps
from dsr_export.domain.steps import Outcome

bp = df.Blueprint()

#: A build raises only for unexpected, presumably transient trouble (storage hiccup, worker
#: recycled): tried three times, each try from scratch.
RETRY: Final = df.RetryOptions(
    first_retry_interval_in_milliseconds=15_000, max_number_of_attempts=3
)


@bp.orchestration_trigger(context_name="context")
def package_export(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Build, then record: ``{"state": "complete", "package": ...}`` or ``{"state": "failed",
    "error": ...}``."""
    raw = context.get_input()
    ask = steps.BuildPackage.from_dict(raw["build"])
    actor = raw.get("actor") or {}
    built = steps.PackageBuilt.from_dict(
        (yield context.call_activity_with_retry(steps.BUILD_PACKAGE.name, RETRY, ask.to_dict()))
    )
    if built.outcome is Outcome.FAILED:
        if built.changed is not None:
            refused = steps.RecordPackage(
                request_id=ask.request_id,
                ending="refused",
                changed=built.changed,
                export_manifest_sha256=built.export_manifest_sha256,
                actor_kind=actor.get("kind"),
                actor_id=actor.get("id"),
            )
            yield context.call_activity_with_retry(
                steps.RECORD_PACKAGE.name, RETRY, refused.to_dict()
            )
        return {"state": "failed", "error": built.error}
    record = steps.RecordPackage(
        request_id=ask.request_id,
        ending="packaged",
        package=built.package,
        actor_kind=actor.get("kind"),
        actor_id=actor.get("id"),
    )
    yield context.call_activity_with_retry(steps.RECORD_PACKAGE.name, RETRY, record.to_dict())
    return {"state": "complete", "package": built.package}
