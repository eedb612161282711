"""A gated submit whose outcome is unknown: never called again on its slot, never ended unlooked.

The DSR's side through the SDK's replay, with the real gate entity run by the driver. A submit
whose storage did not answer through the activity's attempts (a host killed mid-submit looks
the same to Graph: a call that may or may not have arrived) spent its slot: the DSR waits the
outage out, looks for Graph's receipt, and either recovers the export (lookups) or asks the
gate for a new slot; a quota refusal on that second call waits for the gate like any other.
The gate's ledger stays exact: one slot per call to Graph, none left out after the DSR settles.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from activities.export_steps import _graph_failure
from dsr_export.adapters.graph_errors import GraphError
from dsr_export.domain import gate, steps
from dsr_export.domain.job import ExportJob
from dsr_export.domain.request import container_name
from tests import answers
from tests.replay import Driver, Kind

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RID = "RITM0020"
USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
CONTAINER = container_name(RID, 1)
OUTAGE = (
    f"Activity function '{steps.SUBMIT_EXPORT.name}' failed: StorageUnavailableError: storage "
    f"did not answer step {steps.SUBMIT_EXPORT.name} (connection: ServiceRequestError)"
)
RECOVERED = steps.ExportRecovered(
    operation_id=answers.OPERATION_ID,
    operation_url=answers.OPERATION_URL,
    submitted_at="2026-03-01T09:00:30+00:00",
    sas_expires_at="2026-04-30T09:00:00+00:00",
    retry_after_seconds=60,
).to_dict()


def _quota_refused() -> dict[str, object]:
    error = GraphError(429, "TooManyRequests", "Too many requests: the quota is spent.")
    return _graph_failure(steps.SUBMIT_EXPORT, RID, error, subject="submit").to_dict()


def _driver() -> Driver:
    job = ExportJob(
        request_id=RID,
        user=USER_ID,
        user_id=USER_ID,
        legal_deadline=(T0 + timedelta(days=3)).isoformat(),
        received_at=T0.isoformat(),
    )
    return Driver("export_personal_data", job.to_input(), now=T0)


def _gate(d: Driver) -> gate.GateState:
    return gate.GateState.from_dict(json.loads(d.entity_states["@submit_gate@home"] or "null"))


def _submit_meets_an_outage(d: Driver) -> None:
    """Prepared, let through, and the submit's storage down through every attempt."""
    d.episode()
    d.complete(answers.prepared(CONTAINER, settle_seconds=0), name=steps.PREPARE_CONTAINER.name)
    submit = d.pending()
    assert submit.name == steps.SUBMIT_EXPORT.name
    assert submit.retry is not None
    for _ in range(submit.retry["maxNumberOfAttempts"]):
        d.fail_attempt(OUTAGE)
    assert d.pending().kind == Kind.TIMER, "the outage is waited out"
    assert [a.input["verdict"] for a in d.entity_calls("report")] == [gate.SubmitVerdict.RETRY]
    d.fire_timer()


def _let_through(d: Driver) -> int:
    """How many submits the gate let through (its ledger)."""
    return _gate(d).granted_total


def test_a_submit_whose_outcome_is_unknown_is_looked_up_before_any_new_submit() -> None:
    d = _driver()
    _submit_meets_an_outage(d)
    # Before: the submit was called again at once, on the slot the first call had spent.
    check = d.pending()
    assert check.name == steps.PREPARE_CONTAINER.name, f"looks for the receipt, not {check}"
    assert check.input["attempt"] == 1, "the same container"
    d.complete(answers.prepared(CONTAINER, settle_seconds=0, request_info_exists=True))
    assert d.pending().name == steps.RECOVER_SUBMIT.name, "Graph has it: the lookups"
    reply = d.complete(RECOVERED, name=steps.RECOVER_SUBMIT.name)
    assert reply["customStatus"]["phase"] == "exporting"
    assert len(d.activities(steps.SUBMIT_EXPORT.name)) == 1, "never submitted twice"
    state = _gate(d)
    assert (len(state.sent), state.granted_total) == (1, 1), "one call, one slot"
    assert not state.out, "no slot left out"
    assert not state.waiters, "no longer queued"


def test_a_rerun_submit_that_meets_the_quota_waits_for_the_gate_then_recovers() -> None:
    d = _driver()
    _submit_meets_an_outage(d)
    assert d.pending().name == steps.PREPARE_CONTAINER.name
    d.complete(answers.prepared(CONTAINER, settle_seconds=0), name=steps.PREPARE_CONTAINER.name)
    # No receipt: the first call never reached Graph. A new slot, then the call again.
    assert d.pending().name == steps.SUBMIT_EXPORT.name
    assert _let_through(d) == 2, "the second call has a slot of its own"
    d.complete(_quota_refused(), name=steps.SUBMIT_EXPORT.name)
    assert d.entity_calls("report")[-1].input["verdict"] == gate.SubmitVerdict.QUOTA
    timer = d.pending()
    assert timer.kind == Kind.TIMER
    assert timer.fire_at - d.now == timedelta(seconds=gate.QUOTA_WAIT_SECONDS), "the gate's hold"
    state = _gate(d)
    assert RID in state.waiters, "queued, in its place"
    assert not state.out
    d.fire_timer()
    # The probe: Graph now answers that the container was used (a submit reached it after all).
    assert d.pending().name == steps.SUBMIT_EXPORT.name
    d.complete(steps.ExportSubmitted(outcome=steps.Outcome.UNKNOWN).to_dict())
    assert d.pending().name == steps.RECOVER_SUBMIT.name, "never ended without a lookup"
    reply = d.complete(RECOVERED, name=steps.RECOVER_SUBMIT.name)
    assert reply["customStatus"]["phase"] == "exporting"
    state = _gate(d)
    assert (len(state.sent), state.granted_total) == (3, 3), "each call to Graph, one slot"
    assert len(d.activities(steps.SUBMIT_EXPORT.name)) == 3
    assert not state.out
    assert not state.waiters


def test_a_dsr_that_ends_while_it_backs_off_leaves_no_place_in_the_queue() -> None:
    """A retryable refusal (not a quota one) puts the DSR back in the queue while it backs off;
    a cancel meanwhile used to leave its place held there for the gate's lapse (six hours)."""
    d = _driver()
    d.episode()
    d.complete(answers.prepared(CONTAINER, settle_seconds=0), name=steps.PREPARE_CONTAINER.name)
    busy = GraphError(503, "ServiceUnavailable", "busy", retry_after=120)
    refused = _graph_failure(steps.SUBMIT_EXPORT, RID, busy, subject="submit").to_dict()
    d.complete(refused, name=steps.SUBMIT_EXPORT.name)
    assert RID in _gate(d).waiters, "keeps its place while it backs off"
    d.raise_event("cancel", {"reason": "withdrawn"})
    state = _gate(d)
    assert not state.waiters, "a cancelled DSR holds no place"
    assert not state.out
    assert len(state.sent) == 1, "the call it made still counts"


class _Receipts:
    """The export storage as the recovery reads it: Graph's receipt, as it stands."""

    def __init__(self, receipts: list[dict[str, object] | None]) -> None:
        self.receipts = receipts
        self.revoked: list[str] = []

    def read_request_info(self, name: str) -> dict[str, object] | None:
        return self.receipts.pop(0) if len(self.receipts) > 1 else self.receipts[0]

    def revoke(self, name: str) -> None:
        self.revoked.append(name)

    def graph_sas_expiry(self, name: str, minted_at: datetime) -> datetime:
        return minted_at + timedelta(days=60)


class _Operations:
    def __init__(self) -> None:
        self.looked_up: list[str] = []

    def operation_url(self, command: str) -> str:
        return f"https://graph.microsoft.com/beta/dataPolicyOperations/{command}"

    def get_operation(self, url: str) -> object:
        from types import SimpleNamespace

        self.looked_up.append(url)
        return SimpleNamespace(user_id=USER_ID, submitted_at=T0)


def _recover(user_function, final: bool) -> steps.ExportRecovered:
    payload = steps.RecoverSubmit(RID, USER_ID, CONTAINER, final=final).to_dict()
    return steps.ExportRecovered.from_dict(user_function(steps.RECOVER_SUBMIT.name)(payload))


def test_a_half_written_receipt_is_looked_at_again_not_a_verdict(user_function, swap) -> None:
    """Graph creates its receipt, then writes it; a host killed in between (or a lookup in
    between) found it empty, and the DSR ended SubmitOutcomeUnknown at the first lookup."""
    storage, graph = _Receipts([None, {"CommandId": "op-1"}]), _Operations()
    swap(export_storage=storage, graph=graph, clock=lambda: T0)
    first = _recover(user_function, final=False)
    assert first.outcome is steps.Outcome.ABSENT, first.error  # before: failed at once
    assert graph.looked_up == []
    second = _recover(user_function, final=False)
    assert second.outcome is steps.Outcome.OK
    assert second.operation_id == "op-1"
    # Still unreadable at the last lookup: the DSR ends rather than risk a second export.
    swap(export_storage=_Receipts([None]), graph=_Operations(), clock=lambda: T0)
    last = _recover(user_function, final=True)
    assert last.outcome is steps.Outcome.FAILED
    assert last.error is not None
    assert last.error["code"] == "SubmitOutcomeUnknown"
