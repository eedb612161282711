"""``/api/exports/{requestId}/package``: the subject's package, built once the DSR completed.

``POST`` (``DSR.Manage``) builds it, or answers the one built: 200 with the package (its parts,
hashes, counts) when it exists, 202 while it is being built (poll ``GET`` on the same URL), 409
naming why for a DSR that did not complete, whose data was erased, or whose export changed
after it completed. ``GET`` (``DSR.Read``) answers the same without starting anything (404 when
no package was asked for). The body may name ``language`` (``en``, ``de``); the default is
``PACKAGE_LANGUAGE``.

The build runs in its own orchestration (``package_export``), since an export may be gigabytes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.adapters.durable_client import TaskHub, decode_payload
from dsr_export.domain import events, lifecycle
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.delivery import attachment, download_name
from dsr_export.domain.evidence import EvidenceRecord, Kind
from dsr_export.domain.logs import log_event
from dsr_export.domain.package_manifest import (
    PACKAGE_LANGUAGES,
    PACKAGE_ORCHESTRATOR,
    package_instance_id,
)
from dsr_export.domain.request import FieldError
from dsr_export.domain.status import Phase, StatusDocument
from dsr_export.domain.steps import BuildPackage
from dsr_export.settings import SettingsError, lifecycle_settings, package_settings
from intake import lifecycle_actions
from intake.service import (
    document,
    evidence_records,
    find,
    find_dsr,
    package_review_required,
    stored_job,
)
from intake.tenancy import dsr_of
from intake.verdicts import (
    Done,
    Problem,
    Refused,
    Verdict,
    answers,
    caller_of,
    json_object,
)

if TYPE_CHECKING:  # the Azure SDK stays off the cold-start path
    from dsr_export.adapters.package_builder import PackageResult

bp = df.Blueprint()

_BUSY: Final = frozenset({"Pending", "Running", "ContinuedAsNew"})


@bp.route(route="exports/{requestId}/package", methods=["GET", "POST"])
@bp.durable_client_input(client_name="client")
@answers
async def export_package(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """Build (POST) or show (GET) the subject's package."""
    building = req.method.upper() == "POST"
    caller = caller_of(req, Role.MANAGE if building else Role.READ)
    request_id = dsr_of(req, caller)
    language = _language(json_object(req, optional=True)) if building else None
    hub = composition.task_hub(client)
    dsr = await _packageable(hub, request_id)
    return await package(hub, caller, dsr, build=building, language=language)


async def _packageable(hub: TaskHub, request_id: str) -> Packageable:
    """The DSR's instance id, status document and the language it was asked in: a completed
    DSR whose data is there."""
    status = await find_dsr(hub, request_id, show_input=True)
    if status is None:
        raise Refused.unknown(request_id)
    job = stored_job(status)
    doc = document(status, composition.now(), job)
    if doc.phase != Phase.COMPLETED.value:
        raise Refused.conflict(f"the DSR is {doc.phase}: only a completed DSR is packaged")
    deleted = lifecycle.last_deletion(evidence_records(status.instance_id))
    if deleted is not None:
        raise Refused.conflict(
            f"the DSR's data was erased ({lifecycle.receipt(deleted)['reason']}, receipt "
            f"{deleted.data.get('receiptId')}): there is nothing to package"
        )
    return status.instance_id, doc, job.language if job else None


#: A packageable DSR: its instance id, status document and the language it was asked in.
Packageable = tuple[str, StatusDocument, str | None]


async def package(
    hub: TaskHub,
    caller: Caller,
    dsr: Packageable,
    *,
    build: bool,
    language: str | None,
) -> Done:
    """The package built (200), being built (202), or, when ``build``, its build started."""
    request_id, doc, asked_in = dsr
    chosen = package_settings()
    found = composition.package_builder().find(request_id)
    instance = await find(hub, package_instance_id(request_id), show_input=True)
    if found is not None and _recorded(instance):
        return _answer(request_id, 200, {"state": "complete", **found.to_dict()})
    ended = instance is not None and instance.runtime_status is not None
    if instance is not None and ended:
        under_way = _earlier_build(instance, request_id, doc.container, build=build)
        if under_way is not None:
            return under_way
    if not build:
        detail = f"no package was built for {request_id}"
        raise Refused(Problem.NOT_FOUND, detail, title="No package")
    if ended:
        # An earlier build ended without a package (a key that could not sign, a setting):
        # once fixed, asking again builds from scratch under the same instance id.
        await hub.purge(package_instance_id(request_id))
    ask = BuildPackage(
        request_id=request_id,
        container=doc.container or "",
        language=language or asked_in or chosen.language,
        completed_at=doc.completed_at,
        received_at=doc.received_at,
        deadline=doc.deadline,
        regulation=_regulation(doc.regulation),
    )
    return await _start(hub, ask, caller)


async def _start(hub: TaskHub, ask: BuildPackage, caller: Caller) -> Done:
    payload = {"build": ask.to_dict(), "actor": {"kind": caller.kind, "id": caller.id}}
    await hub.start(PACKAGE_ORCHESTRATOR, package_instance_id(ask.request_id), payload)
    log_event(
        "package_requested",
        request_id=ask.request_id,
        language=ask.language,
        state="building",
        caller_kind=caller.kind,
        caller_id=caller.id,
    )
    return _answer(ask.request_id, 202, {"state": "building"})


def _recorded(instance: df.DurableOrchestrationStatus | None) -> bool:
    """Whether a package found built is also in the evidence: its build ended (its last step
    records it), or its history is gone. A build that wrote the package but could not record
    it (the evidence account down) ended failed: asking again records the same package."""
    if instance is None or instance.runtime_status is None:
        return True
    return str(instance.runtime_status.name) == "Completed"


def _earlier_build(
    instance: df.DurableOrchestrationStatus, request_id: str, container: object, *, build: bool
) -> Done | None:
    """The answer while a build runs; refused when the last one failed (and this call only
    reads, or the export changed since)."""
    assert instance.runtime_status is not None
    if instance.runtime_status.name in _BUSY:
        return _answer(request_id, 202, {"state": "building"})
    refused = _refusal(instance, container)
    if refused is not None and (not build or refused.startswith("the export changed")):
        raise Refused.conflict(refused)
    return None


def _refusal(instance: df.DurableOrchestrationStatus, container: object) -> str | None:
    """Why the last build of this DSR's current container ended without a package, if it did."""
    output = lifecycle_actions.output_of(instance)
    error = output.get("error") if isinstance(output.get("error"), dict) else None
    if instance.runtime_status is not None and instance.runtime_status.name != "Completed":
        return "the last build of the package failed; ask again to rebuild it"
    if error is None:
        return None
    given = decode_payload(instance.input_)
    built_from = (given.get("build") or {}).get("container") if isinstance(given, dict) else None
    if built_from not in (None, container):
        return None  # an earlier attempt's container: the DSR was retried since
    if error.get("code") == "ExportChangedAfterCompletion":
        return f"the export changed after it completed: {error.get('message')}"
    return f"the last build of the package failed ({error.get('code')}); ask again to rebuild it"


def _regulation(value: object) -> str | None:
    if isinstance(value, dict):
        name = value.get("name") or value.get("id")
        return str(name) if name else None
    return str(value) if isinstance(value, str) else None


def _language(payload: dict[str, Any]) -> str | None:
    language = payload.get("language")
    if language is None:
        return None
    if not isinstance(language, str) or language.lower() not in PACKAGE_LANGUAGES:
        error = FieldError("/language", f"must be one of {', '.join(PACKAGE_LANGUAGES)}")
        raise Refused(Problem.INVALID, error.detail, [error])
    return language.lower()


def _answer(request_id: str, status: int, body: dict[str, Any]) -> Done:
    location = f"/api/exports/{request_id}/package"
    return Done({"requestId": request_id, **body}, status, location=location, no_store=True)


# -- deliver ------------------------------------------------------------------------------------


async def deliver_package(
    hub: TaskHub,
    status: df.DurableOrchestrationStatus,
    records: list[EvidenceRecord],
    caller: Caller,
) -> Done | None:
    """``POST .../download`` once the DSR has a package: one read-only link per part.

    None when there is no package and review is off: the caller then hands out the export
    container's link as before (the privacy team's raw copy; the person's copy is the package).
    With ``PACKAGE_REVIEW=required`` nothing goes out before the package is approved, and the
    container link never does (it would hand over the files a reviewer withheld).
    """
    request_id = status.instance_id
    found = _releasable(request_id)
    if found is None:
        return None
    if not _in_evidence(found, records):
        raise Refused.conflict(
            "the package was written but its build is not in the evidence yet: ask for the "
            "package again (POST .../package), which records it, then ask for the download"
        )
    now = composition.now()
    links, expires = _package_links(request_id, found, records, caller, now)
    log_event(
        "package_delivered",
        request_id=request_id,
        parts=len(links),
        package_sha256=found.package_sha256,
        expires_at=expires,
        caller_kind=caller.kind,
        caller_id=caller.id,
    )
    await lifecycle_actions.notify(
        hub, lifecycle_actions.job_of(status), events.DELIVERED, now, {"expiresAt": expires}
    )
    body: dict[str, Any] = {
        "requestId": request_id,
        "expiresAt": expires,
        "container": found.container,
        "permissions": ["read"],
        "packageSha256": found.package_sha256,
        "manifestSha256": found.manifest_sha256,
        "links": links,
    }
    if len(links) == 1:
        body["url"] = links[0]["url"]
    return Done(body, 201, no_store=True)


def _package_links(
    request_id: str,
    found: PackageResult,
    records: list[EvidenceRecord],
    caller: Caller,
    now: datetime,
) -> tuple[list[dict[str, Any]], str]:
    """One read-only single-blob link per part, each recorded in the evidence; the links and
    when they expire."""
    minutes = lifecycle_settings().download_link_minutes
    storage = composition.export_storage()
    minted_at = composition.real_now()
    delivered = sum(1 for r in records if r.kind is Kind.EXPORT_DELIVERED)
    links: list[dict[str, Any]] = []
    expires = minted_at
    for index, part in enumerate(found.parts):
        name = str(part["name"])
        url, expires = storage.blob_download_link(
            found.container,
            name,
            minted_at,
            timedelta(minutes=minutes),
            attachment(download_name(request_id, name)),
        )
        links.append(
            {"part": name, "url": url, "size": part.get("size"), "sha256": part.get("sha256")}
        )
        link = entries.ExportDelivered(
            event_id=f"delivered-{delivered + 1}-{index + 1}-{expires.isoformat()}",
            container=found.container,
            channel="package-link",
            permissions="read",
            expires_at=expires.isoformat(),
            package_sha256=found.package_sha256,
            manifest_sha256=found.manifest_sha256,
            part=name,
            part_count=len(found.parts),
            actor_kind=caller.kind,
            actor_id=caller.id,
        )
        composition.evidence_log().write(request_id, link, now)
    return links, expires.isoformat()


def _in_evidence(found: PackageResult, records: list[EvidenceRecord]) -> bool:
    """Whether the evidence records this very package's build: a link to a package the
    evidence does not know (written by a build that could not record it) would leave the
    DSR's chain saying something went out that it never says was made."""
    return any(
        r.kind is Kind.PACKAGED and r.data.get("packageSha256") == found.package_sha256
        for r in records
    )


def _releasable(request_id: str) -> PackageResult | None:
    """The package that may go out: None when there is none and review is off; refused while
    review requires it and it is not approved."""
    try:
        chosen = package_settings()
        found = composition.package_builder().find(request_id)
    except SettingsError:
        if not package_review_required():
            return None  # no packaging configured: the container link, as before
        raise  # a 503 naming the setting (intake.verdicts.answers)
    if chosen.review_required:
        refused = _unreleased(request_id, found)
        if refused is not None:
            raise Refused.conflict(refused)
    return found


def _unreleased(request_id: str, found: PackageResult | None) -> str | None:
    """Why the package may not go out yet under review, or None when it may."""
    if found is None:
        return (
            "review before release is on: build the package (POST .../package), review and "
            "approve it (POST .../package/review) before it is delivered"
        )
    review, _ = composition.package_reviews().read(request_id)
    if review is None or not review.approved:
        return "the package awaits review: approve it (POST .../package/review) first"
    if tuple(w.to_dict() for w in review.withheld) != found.withheld:
        return "the approved package is being built without the withheld files; ask again soon"
    return None
