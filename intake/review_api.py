"""``/api/exports/{requestId}/package/review``: review before release (``PACKAGE_REVIEW=required``).

``GET`` lists the preview's data files (path, size, product, media type, SHA-256: from its
manifest), what is withheld and whether it is approved. ``POST`` (``{"withhold": [{"sha256",
"reasonCode"}], "approve": true}``) sets the withheld files (the list replaces the one before;
absent: unchanged) and may approve. Both need ``DSR.Manage``: the listing names the person's
files.

Approving writes the evidence: one ``package_file_withheld`` record per withheld hash (hash and
reason code: never a name, content or free text) and one ``package_reviewed``; with files
withheld, the final package is built again without them (``package_export``), and its links go
out once it is built. The same ``POST`` again answers the same (idempotent); two reviewers
writing at once: one wins, the other gets a ``409`` and reads again (the review is written
conditionally on its ETag; a caller may also send ``If-Match`` with the ETag it read).
"""

from __future__ import annotations

import json
from typing import Any, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.evidence import EVENT_ID, Kind
from dsr_export.domain.logs import log_event
from dsr_export.domain.package_manifest import PACKAGE_ORCHESTRATOR, package_instance_id
from dsr_export.domain.request import InvalidRequest, decode_body
from dsr_export.domain.review import Review, ReviewAsk
from dsr_export.settings import SettingsError, package_settings
from intake.responses import (
    authorized,
    json_answer,
    misconfigured,
    problem,
    refuse_body,
    valid_route_id,
)
from intake.service import find, find_dsr

bp = df.Blueprint()

_BUSY: Final = frozenset({"Pending", "Running", "ContinuedAsNew"})


@bp.route(route="exports/{requestId}/package/review", methods=["GET", "POST"])
@bp.durable_client_input(client_name="client")
async def review_package(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Show (GET) or decide (POST) the review of the subject's package."""
    # Imported here: the Azure SDK stays off the cold-start path.
    from dsr_export.adapters.package_review import ReviewConflict

    caller = authorized(req, Role.MANAGE)
    if isinstance(caller, func.HttpResponse):
        return caller
    request_id = valid_route_id(req)
    if isinstance(request_id, func.HttpResponse):
        return request_id
    payload: object = None
    if req.method.upper() == "POST":
        refused = refuse_body(req)
        if refused is not None:
            return refused
        try:
            payload = decode_body(req.get_body() or b"{}")
        except InvalidRequest as exc:
            return problem(
                400, "Malformed JSON", "the body is not valid JSON", "invalid-request", exc
            )
    status = await find_dsr(client, request_id)
    if status is None:
        return problem(404, "Unknown DSR", f"no DSR with requestId {request_id}", "not-found")
    request_id = status.instance_id
    try:
        if not package_settings().review_required:
            return _conflict("review before release is off (PACKAGE_REVIEW): nothing to review")
        found = composition.package_builder().find(request_id)
    except SettingsError as exc:
        return misconfigured(exc)
    if found is None:
        return _conflict("no package was built yet: POST .../package first, then review it")
    store = composition.package_reviews()
    review, etag = store.read(request_id)
    if review is None:
        manifest = store.preview_manifest(request_id)
        if manifest is None:
            return _conflict("the package has no manifest copy to review: build it again")
        review = Review.of_manifest(manifest, found.package_sha256)
        try:
            etag = store.write(request_id, review, None)
        except ReviewConflict:
            review, etag = store.read(request_id)
            assert review is not None
    if payload is None:
        return _answer(request_id, review, etag, found.withheld, 200)
    given = req.headers.get("If-Match")
    if given and etag and given.strip() != etag:
        return _raced()
    try:
        ask = ReviewAsk.parse(payload, review)
    except InvalidRequest as exc:
        return problem(400, "Invalid request", _first(exc), "invalid-request", exc)
    decided = _decide(review, ask, caller)
    if isinstance(decided, func.HttpResponse):
        return decided
    if decided != review:
        try:
            etag = store.write(request_id, decided, etag)
        except ReviewConflict:
            return _raced()
    rebuild = False
    if decided.approved:
        _record(request_id, decided, caller)
        rebuild = await _rebuild(client, request_id, decided, found.withheld)
    if decided != review:
        log_event(
            "package_reviewed",
            request_id=request_id,
            withheld_count=decided.withheld_count(),
            approved=decided.approved,
            rebuild=rebuild,
            caller_kind=caller.kind,
            caller_id=caller.id,
        )
    return _answer(request_id, decided, etag, found.withheld, 202 if rebuild else 200)


def _decide(review: Review, ask: ReviewAsk, caller: Caller) -> Review | func.HttpResponse:
    """The review after ``ask``; a closed review answers only the same decision again."""
    withheld = review.withheld if ask.withhold is None else ask.withhold
    if review.approved:
        if withheld != review.withheld or not ask.approve:
            return _conflict("the package was approved: its review is closed")
        return review
    if not ask.approve:
        return Review(review.preview_sha256, review.files, withheld)
    return Review(
        review.preview_sha256,
        review.files,
        withheld,
        approved=True,
        approved_at=composition.now().isoformat(),
        reviewer={"kind": caller.kind, "id": caller.id},
    )


def _record(request_id: str, review: Review, caller: Caller) -> None:
    """The approval's evidence, once per preview (event ids make a repeat a no-op)."""
    log = composition.evidence_log()
    now = composition.now()
    actor = {"actorKind": str(review.reviewer.get("kind") or caller.kind)}
    actor["actorId"] = str(review.reviewer.get("id") or caller.id)
    preview = review.preview_sha256
    for item in review.withheld:
        count = sum(1 for f in review.files if f.sha256 == item.sha256)
        log.append(
            request_id,
            Kind.PACKAGE_FILE_WITHHELD,
            now,
            {
                EVENT_ID: f"withheld-{preview[:16]}-{item.sha256[:32]}",
                "sha256": item.sha256,
                "reasonCode": item.reason_code,
                "previewSha256": preview,
                "fileCount": count,
                **actor,
            },
        )
    log.append(
        request_id,
        Kind.PACKAGE_REVIEWED,
        now,
        {
            EVENT_ID: f"reviewed-{preview[:32]}",
            "previewSha256": preview,
            "withheldCount": review.withheld_count(),
            "withheldHashes": len(review.withheld),
            "reasonCodes": ",".join(sorted({w.reason_code for w in review.withheld})),
            **actor,
        },
    )


async def _rebuild(
    client: df.DurableOrchestrationClient,
    request_id: str,
    review: Review,
    built: tuple[dict[str, str], ...],
) -> bool:
    """Start the final build without the withheld files, unless it is built or building."""
    wanted = [w.to_dict() for w in review.withheld]
    if tuple(wanted) == built:
        return False
    instance_id = package_instance_id(request_id)
    instance = await find(client, instance_id, show_input=True)
    if instance is None:
        return False
    if instance.runtime_status is not None and instance.runtime_status.name in _BUSY:
        return True
    raw = instance.input_
    given = json.loads(raw) if isinstance(raw, str) else raw
    build = dict((given or {}).get("build") or {}) if isinstance(given, dict) else {}
    if not build:
        return False
    build["withheld"] = wanted
    actor = (given or {}).get("actor") if isinstance(given, dict) else None
    await client.purge_instance_history(instance_id)
    try:
        await client.start_new(
            PACKAGE_ORCHESTRATOR, instance_id, {"build": build, "actor": actor or {}}
        )
    except Exception as exc:  # the SDK raises a bare Exception
        if "already exists" not in str(exc):
            raise
    return True


def _answer(
    request_id: str,
    review: Review,
    etag: str | None,
    built: tuple[dict[str, str], ...],
    status: int,
) -> func.HttpResponse:
    released = review.approved and tuple(w.to_dict() for w in review.withheld) == built
    state = "released" if released else "rebuilding" if review.approved else "open"
    body: dict[str, Any] = {
        "requestId": request_id,
        "state": state,
        **review.to_dict(),
        "withheldCount": review.withheld_count(),
    }
    answer = json_answer(body, status, location=f"/api/exports/{request_id}/package/review")
    answer.headers["Cache-Control"] = "no-store"
    if etag:
        answer.headers["ETag"] = etag
    return answer


def _first(exc: InvalidRequest) -> str:
    return "; ".join(f"{e.pointer or '(body)'}: {e.detail}" for e in exc.errors)


def _raced() -> func.HttpResponse:
    return problem(
        409,
        "Review changed meanwhile",
        "another reviewer changed the review at the same time: GET it and decide again",
        "conflict",
    )


def _conflict(detail: str) -> func.HttpResponse:
    return problem(409, "DSR in the wrong state", detail, "conflict")
