"""The per-tenant submit gate: a Durable entity that admits DSRs to Graph in deadline order.

The documented Durable pattern for a shared limit: one entity per tenant (key: the tenant id)
holds the queue and the window of submits, and the extension runs its operations one at a time,
so no two DSRs ever read the same free slot. A DSR *calls* ``ask`` and gets an answer (through
now, or when to ask again; it waits on a durable timer in between) and *signals* ``report``
with how its submit ended, or ``withdraw`` when it leaves the queue without submitting. All the
logic is :mod:`dsr_export.domain.gate`'s; this is its shell: state in, state out, and a log line
(counts and ids only) whenever the gate lets a submit through or learns that the quota is spent.

The callers pass their orchestration time with each operation: the gate reads no clock, so its
answers follow the orchestrations' own time (and the offline host's fast clock).
"""

from __future__ import annotations

import logging

import azure.durable_functions as df

from dsr_export.domain import gate
from dsr_export.domain.logs import log_event

bp = df.Blueprint()

#: The entity's function name (entity ids are lower case).
ENTITY_NAME = gate.ENTITY_NAME
ASK = "ask"
REPORT = "report"
WITHDRAW = "withdraw"
STATUS = "status"
PACE = "pace"
#: The gate key of the app's own tenant (a DSR that names no tenant).
HOME_TENANT = gate.HOME_TENANT


def gate_id(tenant: str) -> df.EntityId:
    """The gate of ``tenant``: one per tenant, as Graph's quota is."""
    return df.EntityId(ENTITY_NAME, tenant)


@bp.entity_trigger(context_name="context", entity_name=ENTITY_NAME)
def submit_gate(context: df.DurableEntityContext) -> None:
    """One operation on one tenant's gate."""
    state = gate.GateState.from_dict(context.get_state(lambda: None))
    operation = context.operation_name
    raw = context.get_input()
    tenant = context.entity_key
    if operation == ASK:
        asked = gate.Ask.from_dict(raw)
        state, answer = gate.ask(state, asked)
        _log_answer(tenant, asked, answer, state)
        context.set_result(answer.to_dict())
    elif operation == REPORT:
        done = gate.SubmitReport.from_dict(raw)
        state = gate.report(state, done)
        if done.verdict == gate.SubmitVerdict.QUOTA:
            log_event(
                "submit_quota_spent",
                level=logging.WARNING,
                request_id=done.request_id,
                tenant=tenant,
                blocked_until=state.blocked_until,
                in_window=len(state.sent),
            )
    elif operation == WITHDRAW:
        raw = raw if isinstance(raw, dict) else {}
        state = gate.withdraw(state, str(raw.get("requestId") or ""), raw.get("countedUntil"))
    elif operation == PACE:
        state, paced = gate.pace(state, gate.PaceAsk.from_dict(raw))
        context.set_result(paced.to_dict())
    elif operation == STATUS:
        context.set_result(gate.status(state, (raw or {}).get("now")))
        return
    else:
        raise ValueError(f"the submit gate has no operation {operation!r}")
    context.set_state(state.to_dict())


def _log_answer(
    tenant: str, asked: gate.Ask, answer: gate.GateAnswer, state: gate.GateState
) -> None:
    """A let-through, with the queue behind it; or a DSR whose slot comes after its legal
    deadline (the backlog cannot meet its deadlines at the quota's pace: operations alerts)."""
    if answer.granted:
        log_event(
            "submit_slot_granted",
            request_id=asked.request_id,
            tenant=tenant,
            queued=answer.queued,
            in_window=len(state.sent),
            next_slot_at=gate.status(state).get("nextSlotAt"),
        )
    elif gate.slot_after_deadline(asked, answer):
        log_event(
            "submit_gate_behind",
            level=logging.WARNING,
            request_id=asked.request_id,
            tenant=tenant,
            queued=answer.queued,
            position=answer.position,
            slot_at=answer.ask_at,
            deadline=asked.deadline,
        )
