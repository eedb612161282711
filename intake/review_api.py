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

from typing import TYPE_CHECKING, Any, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.adapters.durable_client import TaskHub, decode_payload
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.logs import log_event
from dsr_export.domain.package_manifest import PACKAGE_ORCHESTRATOR, package_instance_id
from dsr_export.domain.request import InvalidRequest
from dsr_export.domain.review import Review, ReviewAsk
from dsr_export.settings import package_settings
from intake.service import find, find_dsr
from intake.tenancy import dsr_of
from intake.verdicts import Done, Refused, Verdict, answers, caller_of, json_body

if TYPE_CHECKING:  # the Azure SDK stays off the cold-start path
    from dsr_export.adapters.package_builder import PackageResult
    from dsr_export.adapters.package_review import ReviewStore

bp = df.Blueprint()

_BUSY: Final = frozenset({"Pending", "Running", "ContinuedAsNew"})


@bp.route(route="exports/{requestId}/package/review", methods=["GET", "POST"])
@bp.durable_client_input(client_name="client")
@answers
async def review_package(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """Show (GET) or decide (POST) the review of the subject's package."""
    caller = caller_of(req, Role.MANAGE)
    request_id = dsr_of(req, caller)
    deciding = req.method.upper() == "POST"
    payload = _body(req) if deciding else None
    hub = composition.task_hub(client)
    if payload is None:
        return await show_review(hub, request_id)
    return await decide_review(hub, caller, request_id, payload, req.headers.get("If-Match"))


def _body(req: func.HttpRequest) -> object:
    """The decision's JSON (an empty body decides nothing new)."""
    if not (req.get_body() or b"").strip():
        return {}
    return json_body(req)


async def show_review(hub: TaskHub, request_id: str) -> Done:
    """The review: the preview's files, what is withheld, whether it is approved."""
    request_id, found, store = await _reviewable(hub, request_id)
    review, etag = _opened(request_id, found, store)
    return _answer(request_id, review, etag, found.withheld, 200)


async def decide_review(
    hub: TaskHub, caller: Caller, request_id: str, payload: object, if_match: str | None
) -> Done:
    """Set the withheld files and maybe approve; on approval, the evidence and the rebuild
    without the withheld files (202 while it runs)."""
    # Imported here: the Azure SDK stays off the cold-start path.
    from dsr_export.adapters.package_review import ReviewConflict

    request_id, found, store = await _reviewable(hub, request_id)
    review, etag = _opened(request_id, found, store)
    if if_match and etag and if_match.strip() != etag:
        raise _raced()
    try:
        ask = ReviewAsk.parse(payload, review)
    except InvalidRequest as exc:
        raise Refused.invalid(exc, _first(exc)) from None
    decided = _decide(review, ask, caller)
    if decided != review:
        try:
            etag = store.write(request_id, decided, etag)
        except ReviewConflict:
            raise _raced() from None
    rebuild = False
    if decided.approved:
        _record(request_id, decided, caller)
        rebuild = await _rebuild(hub, request_id, decided, found.withheld)
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


async def _reviewable(hub: TaskHub, request_id: str) -> tuple[str, PackageResult, ReviewStore]:
    """The DSR's instance id, its built package and the review store; refused when review is
    off or there is no package yet."""
    status = await find_dsr(hub, request_id)
    if status is None:
        raise Refused.unknown(request_id)
    request_id = status.instance_id
    if not package_settings().review_required:
        raise Refused.conflict("review before release is off (PACKAGE_REVIEW): nothing to review")
    found = composition.package_builder().find(request_id)
    if found is None:
        raise Refused.conflict("no package was built yet: POST .../package first, then review it")
    return request_id, found, composition.package_reviews()


def _opened(request_id: str, found: PackageResult, store: ReviewStore) -> tuple[Review, str | None]:
    """The review and its ETag, opened from the preview's manifest the first time."""
    from dsr_export.adapters.package_review import ReviewConflict

    review, etag = store.read(request_id)
    if review is not None:
        return review, etag
    manifest = store.preview_manifest(request_id)
    if manifest is None:
        raise Refused.conflict("the package has no manifest copy to review: build it again")
    review = Review.of_manifest(manifest, found.package_sha256)
    try:
        etag = store.write(request_id, review, None)
    except ReviewConflict:
        review, etag = store.read(request_id)
        assert review is not None
    return review, etag


def _decide(review: Review, ask: ReviewAsk, caller: Caller) -> Review:
    """The review after ``ask``; a closed review answers only the same decision again."""
    withheld = review.withheld if ask.withhold is None else ask.withhold
    if review.approved:
        if withheld != review.withheld or not ask.approve:
            raise Refused.conflict("the package was approved: its review is closed")
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
    actor = {
        "actor_kind": str(review.reviewer.get("kind") or caller.kind),
        "actor_id": str(review.reviewer.get("id") or caller.id),
    }
    preview = review.preview_sha256
    for item in review.withheld:
        count = sum(1 for f in review.files if f.sha256 == item.sha256)
        withheld = entries.PackageFileWithheld(
            event_id=f"withheld-{preview[:16]}-{item.sha256[:32]}",
            sha256=item.sha256,
            reason_code=item.reason_code,
            preview_sha256=preview,
            file_count=count,
            **actor,
        )
        log.write(request_id, withheld, now)
    reviewed = entries.PackageReviewed(
        event_id=f"reviewed-{preview[:32]}",
        preview_sha256=preview,
        withheld_count=review.withheld_count(),
        withheld_hashes=len(review.withheld),
        reason_codes=",".join(sorted({w.reason_code for w in review.withheld})),
        **actor,
    )
    log.write(request_id, reviewed, now)


async def _rebuild(
    hub: TaskHub,
    request_id: str,
    review: Review,
    built: tuple[dict[str, str], ...],
) -> bool:
    """Start the final build without the withheld files, unless it is built or building."""
    wanted = [w.to_dict() for w in review.withheld]
    if tuple(wanted) == built:
        return False
    instance_id = package_instance_id(request_id)
    instance = await find(hub, instance_id, show_input=True)
    if instance is None:
        return False
    if instance.runtime_status is not None and instance.runtime_status.name in _BUSY:
        return True
    given = decode_payload(instance.input_)
    build = dict((given or {}).get("build") or {}) if isinstance(given, dict) else {}
    if not build:
        return False
    build["withheld"] = wanted
    actor = (given or {}).get("actor") if isinstance(given, dict) else None
    await hub.purge(instance_id)
    # False when it already runs (another reviewer's approval started it): the same answer.
    await hub.start(PACKAGE_ORCHESTRATOR, instance_id, {"build": build, "actor": actor or {}})
    return True


def _answer(
    request_id: str,
    review: Review,
    etag: str | None,
    built: tuple[dict[str, str], ...],
    status: int,
) -> Done:
    released = review.approved and tuple(w.to_dict() for w in review.withheld) == built
    state = "released" if released else "rebuilding" if review.approved else "open"
    body: dict[str, Any] = {
        "requestId": request_id,
        "state": state,
        **review.to_dict(),
        "withheldCount": review.withheld_count(),
    }
    location = f"/api/exports/{request_id}/package/review"
    return Done(body, status, location=location, no_store=True, etag=etag)


def _first(exc: InvalidRequest) -> str:
    return "; ".join(f"{e.pointer or '(body)'}: {e.detail}" for e in exc.errors)


def _raced() -> Refused:
    return Refused.conflict(
        "another reviewer changed the review at the same time: GET it and decide again",
        "Review changed meanwhile",
    )
