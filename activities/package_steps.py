"""The subject's package: build it (one I/O step, sealed by the receipt signer) and record it in
the DSR's evidence (another). Both idempotent: a build answers the package already built from
the same export, and a record is written once per package hash.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import azure.durable_functions as df

from activities.contract import activity, graph_activity
from dsr_export import composition
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain import steps
from dsr_export.domain.errors import ErrorDoc
from dsr_export.domain.evidence import verify
from dsr_export.domain.logs import log_event
from dsr_export.domain.package_manifest import Withheld
from dsr_export.domain.steps import Outcome

if TYPE_CHECKING:
    from dsr_export.adapters.package_builder import ExportChanged

bp = df.Blueprint()

#: The error code of an export that changed after it completed (docs/errors.md).
EXPORT_CHANGED = "ExportChangedAfterCompletion"
NO_EXPORT_DATA = "ExportDataMissing"


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _withheld(step: steps.BuildPackage) -> tuple[tuple[Withheld, ...], frozenset[str]]:
    """The files the approved review withholds, and their data members in the preview (the
    review keeps the preview's listing: the hashes alone cannot say which blob to leave out
    without reading every blob first)."""
    if not step.withheld:
        return (), frozenset()
    review, _ = composition.package_reviews_of(step.request_id).read(step.request_id)
    if review is None:
        raise RuntimeError("the package's review is missing: it cannot be rebuilt without it")
    asked = tuple(Withheld(str(w["sha256"]), str(w["reasonCode"])) for w in step.withheld)
    if asked != review.withheld:
        raise RuntimeError("the build's withheld files are not the approved review's")
    return review.withheld, review.skipped_members()


@graph_activity(bp, steps.BUILD_PACKAGE)
def build_package(step: steps.BuildPackage) -> steps.PackageBuilt:
    """Stream the export into the package in its delivery container and seal it."""
    # Imported here: the Azure SDK, Jinja2 and Babel stay off the cold-start path.
    from dsr_export.adapters.package_builder import ExportChanged, NoExportManifest, PackageJob
    from dsr_export.rendering.render import Facts

    now = composition.now()
    builder = composition.package_builder_of(step.request_id)
    withheld, skip = _withheld(step)
    job = PackageJob(
        withheld=withheld,
        skip=skip,
        request_id=step.request_id,
        container=step.container,
        language=step.language,
        facts=Facts(
            request_id=step.request_id,
            packaged_at=now,
            received_at=_moment(step.received_at),
            deadline=_moment(step.deadline),
            completed_at=_moment(step.completed_at),
            regulation=step.regulation,
        ),
    )
    head = verify(composition.evidence_log().read(step.request_id)).head
    try:
        result = builder.build(
            job,
            composition.receipt_signer(),
            now=now,
            completed_at=step.completed_at,
            evidence_head=head,
        )
    except ExportChanged as exc:
        return _export_changed(step.request_id, exc)
    except NoExportManifest as exc:
        missing: ErrorDoc = {"code": NO_EXPORT_DATA, "category": "storage", "message": str(exc)}
        return steps.PackageBuilt(outcome=Outcome.FAILED, error=missing)
    log_event(
        "package_built",
        request_id=step.request_id,
        parts=len(result.parts),
        file_count=result.file_count,
        total_bytes=result.total_bytes,
        package_sha256=result.package_sha256,
        reused=result.reused,
    )
    return steps.PackageBuilt(package=result.to_dict())


def _export_changed(request_id: str, exc: ExportChanged) -> steps.PackageBuilt:
    """The export no longer matches what completed: no package, and the counts say why."""
    changed = {"added": exc.added, "removed": exc.removed, "altered": exc.altered}
    log_event(
        "package_refused",
        level=logging.ERROR,
        request_id=request_id,
        code=EXPORT_CHANGED,
        added=exc.added,
        removed=exc.removed,
        altered=exc.altered,
    )
    error: ErrorDoc = {
        "code": EXPORT_CHANGED,
        "category": "storage",
        "message": str(exc),
        "hint": "Find out who wrote to the export container after it completed; retry the "
        "DSR (POST .../retry) for a fresh export, or erase the data.",
    }
    return steps.PackageBuilt(outcome=Outcome.FAILED, error=error, changed=changed)


@activity(bp, steps.RECORD_PACKAGE)
def record_package(step: steps.RecordPackage) -> steps.Recorded:
    """``packaged`` (once per package hash) or ``package_refused`` in the DSR's evidence."""
    if step.ending == "packaged" and step.package is not None:
        package = step.package
        packaged = entries.Packaged(
            event_id=f"packaged-{package['packageSha256'][:32]}",
            container=package["container"],
            package_sha256=package["packageSha256"],
            manifest_sha256=package["manifestSha256"],
            export_manifest_sha256=package["exportManifestSha256"],
            part_count=len(package["parts"]),
            file_count=package["fileCount"],
            total_bytes=package["totalBytes"],
            generation=package.get("generation"),
            language=package.get("language"),
            actor_kind=step.actor_kind,
            actor_id=step.actor_id,
        )
        return _recorded(step.request_id, packaged)
    changed = step.changed or {}
    refused = entries.PackageRefused(
        event_id="package-refused-{added}-{removed}-{altered}".format(
            added=changed.get("added", 0),
            removed=changed.get("removed", 0),
            altered=changed.get("altered", 0),
        ),
        reason_code="EXPORT_CHANGED",
        added=changed.get("added"),
        removed=changed.get("removed"),
        altered=changed.get("altered"),
        export_manifest_sha256=step.export_manifest_sha256,
        actor_kind=step.actor_kind,
        actor_id=step.actor_id,
    )
    return _recorded(step.request_id, refused)


def _recorded(request_id: str, entry: entries.Entry) -> steps.Recorded:
    record = composition.evidence_log().write(request_id, entry, composition.now())
    return steps.Recorded(seq=record.seq)
