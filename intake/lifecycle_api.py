"""The DSR's life after the export, over HTTP: deliver the data, extend the deadline, retry a
failed DSR, erase the data. Each needs ``DSR.Manage``.

The routes parse, call the use case (:mod:`intake.aftercare`) and return its verdict, which
:func:`intake.verdicts.answers` renders.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain.callers import Role
from dsr_export.domain.extensions import ExtensionAsk, ExtensionRefused
from intake import aftercare
from intake.tenancy import dsr_of
from intake.verdicts import Verdict, answers, caller_of, json_object, reason_of

bp = df.Blueprint()


@bp.route(route="exports/{requestId}/download", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers
async def download_export(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """The package links, or a short-lived read + list link to a completed DSR's data."""
    caller = caller_of(req, Role.MANAGE)
    request_id = dsr_of(req, caller)
    json_object(req, optional=True)
    return await aftercare.deliver(composition.task_hub(client), caller, request_id)


@bp.route(route="exports/{requestId}/extend", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers
async def extend_deadline(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """Move the legal deadline within the regulation's cap (``deadline.extended``)."""
    caller = caller_of(req, Role.MANAGE)
    request_id = dsr_of(req, caller)
    payload = json_object(req)
    try:
        ask = ExtensionAsk.parse({**payload, "reason": reason_of(payload)})
    except ExtensionRefused as exc:
        return aftercare.refused_extension(exc)
    return await aftercare.extend(composition.task_hub(client), caller, request_id, ask)


@bp.route(route="exports/{requestId}/retry", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers
async def retry_dsr(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """Run a failed or timed-out DSR again under the same id and legal deadline."""
    caller = caller_of(req, Role.MANAGE)
    request_id = dsr_of(req, caller)
    why = reason_of(json_object(req))
    return await aftercare.retry(composition.task_hub(client), caller, request_id, why)


@bp.route(route="exports/{requestId}/data", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
@answers
async def erase_data(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """Delete the DSR's exported data now and answer with the deletion receipt."""
    caller = caller_of(req, Role.MANAGE)
    request_id = dsr_of(req, caller)
    why = reason_of(json_object(req))
    return await aftercare.erase(composition.task_hub(client), caller, request_id, why)
