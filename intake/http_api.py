"""The HTTP face for ticketing systems: submit a DSR and read its status.

Client functions must be ``async`` (see the Durable notes). The status endpoint is our own:
Durable's built-in one embeds the system key in its URLs and echoes the orchestration input.
"""

from __future__ import annotations

import json
from typing import Any, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import problems
from dsr_export.job import ExportJob
from dsr_export.logs import log_event
from dsr_export.model import ExportRequest, FieldError, InvalidRequest, validate_request_id
from dsr_export.settings import export_policy
from dsr_export.status import status_document

bp = df.Blueprint()

ORCHESTRATOR: Final = "export_personal_data"
MAX_BODY_BYTES: Final = 16 * 1024
#: Seconds a ticketing system should wait before reading the status again.
STATUS_RETRY_AFTER: Final = "60"


@bp.route(route="exports", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def submit_dsr(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Accept a DSR; the same request again answers with the DSR already under way."""
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        return _problem(
            413, "Request body too large", f"at most {MAX_BODY_BYTES} bytes", "too-large"
        )
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _problem(415, "Unsupported media type", "send application/json", "media-type")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _problem(400, "Malformed JSON", "the body is not valid JSON", "invalid-request")
    try:
        request = ExportRequest.parse(payload)
    except InvalidRequest as exc:
        return _problem(
            400, "Invalid request", "one or more fields are invalid", "invalid-request", exc.errors
        )

    existing = await _find(client, request.request_id, show_input=True)
    if existing is None:
        job = ExportJob(
            request_id=request.request_id,
            user=request.user,
            user_id=request.user_object_id,
            policy=export_policy(),
        )
        try:
            await client.start_new(ORCHESTRATOR, request.request_id, job.to_input())
        except Exception as exc:  # the SDK raises a bare Exception
            if "already exists" not in str(exc):
                raise
            # A concurrent duplicate won the race; answer like any duplicate.
        else:
            log_event("dsr_accepted", request_id=request.request_id, phase="accepted")
        existing = await _find(client, request.request_id, show_input=True)
    if existing is not None and not _same_subject(existing.input_, request):
        return _problem(
            409,
            "Request id already used",
            "this requestId belongs to a DSR for another user",
            "conflict",
            [FieldError("/requestId", "already used for a different user")],
        )
    document = _document(request.request_id, existing)
    return func.HttpResponse(
        json.dumps(document),
        status_code=202,
        mimetype="application/json",
        headers={
            "Location": f"/api/exports/{request.request_id}",
            "Retry-After": STATUS_RETRY_AFTER,
        },
    )


@bp.route(route="exports/{requestId}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_dsr(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """The DSR's status document (never Durable's URLs, never the input)."""
    try:
        request_id = validate_request_id(req.route_params.get("requestId"))
    except InvalidRequest as exc:
        return _problem(400, "Invalid request id", str(exc), "invalid-request", exc.errors)
    existing = await _find(client, request_id)
    if existing is None:
        return _problem(404, "Unknown DSR", f"no DSR with requestId {request_id}", "not-found")
    return func.HttpResponse(
        json.dumps(_document(request_id, existing)), status_code=200, mimetype="application/json"
    )


async def _find(
    client: df.DurableOrchestrationClient, instance_id: str, *, show_input: bool = False
) -> df.DurableOrchestrationStatus | None:
    try:
        status = await client.get_status(instance_id, show_input=show_input)
    except TypeError:
        # The extension answers 404 with an empty body, which the SDK cannot parse.
        return None
    if status is None or not status.runtime_status:
        return None
    return status


def _same_subject(raw_input: Any, request: ExportRequest) -> bool:
    if isinstance(raw_input, str):
        raw_input = json.loads(raw_input)
    return (
        isinstance(raw_input, dict)
        and str(raw_input.get("user", "")).lower() == request.user.lower()
    )


def _document(request_id: str, status: df.DurableOrchestrationStatus | None) -> dict[str, Any]:
    if status is None:
        return status_document(request_id, None, None, None)
    runtime = status.runtime_status.name if status.runtime_status else None
    return status_document(
        request_id,
        runtime,
        status.custom_status,
        status.output,
        status.created_time,
        status.last_updated_time,
    )


def _problem(
    status: int, title: str, detail: str, slug: str, errors: list[FieldError] | None = None
) -> func.HttpResponse:
    body = problems.problem(status, title, detail, slug=slug, errors=errors or ())
    return func.HttpResponse(
        problems.dumps(body), status_code=status, mimetype=problems.CONTENT_TYPE
    )
