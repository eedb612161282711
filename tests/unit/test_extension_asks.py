"""Extension asks through the SDK's real replay: each ask applied exactly once, in the order it
arrived, whenever its ``extend`` event lands (issue 17, F-1), and a DSR that ends before it
has a container still records how it ended (F-3).

The ``extend`` event only announces an ask; the ask itself is in the DSR's evidence, which the
orchestrator reads through ``read_extension_asks``. Here ``Asks`` plays that evidence: the
tests answer every read from it, as the activity would. The events also carry the ask in the
form the API sent before asks had ids, so the same tests drive older orchestrator code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from dsr_export.domain import steps
from dsr_export.domain.errors import ErrorDoc
from dsr_export.domain.job import ExportJob, ExportPolicy
from tests import answers
from tests.replay import Driver, Kind

USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
DEADLINE = "2026-04-01T09:00:00+00:00"
ACTOR = {"kind": "user", "id": "oid-privacy-officer"}

# The SDK warns when it keeps an event nobody waits for yet: that is the case under test.
pytestmark = pytest.mark.filterwarnings("ignore:Potential duplicate Task completion")


@dataclass
class Asks:
    """The asks the API recorded in the DSR's evidence, with their record numbers."""

    recorded: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 10
    #: What the DSR wrote with ``record_extension``, across its executions.
    extended: list[steps.RecordExtension] = field(default_factory=list)

    def add(self, ask_id: str, **ask: Any) -> dict[str, Any]:
        self.seq += 1
        entry = {"askId": ask_id, "seq": self.seq, "ask": ask, "actor": ACTOR}
        self.recorded.append(entry)
        return entry

    def read(self, after: int) -> dict[str, Any]:
        found = [a for a in self.recorded if a["seq"] > after][: steps.ASKS_PER_READ]
        return steps.ExtensionAsks(asks=found).to_dict()


def _driver(**changes: Any) -> Driver:
    job = ExportJob(
        request_id="RITM0017",
        user=USER_ID,
        user_id=USER_ID,
        received_at="2026-03-01T09:00:00+00:00",
        regulation="gdpr",
        legal_deadline=DEADLINE,
        warning_at="2026-03-25T09:00:00+00:00",
    ).replace(**changes)
    return Driver("export_personal_data", job.to_input())


def _nudge(d: Driver, entry: dict[str, Any]) -> None:
    """The API's ``extend`` event for a recorded ask (with the ask itself, as older APIs sent)."""
    d.raise_event(
        "extend",
        {"askId": entry["askId"], "ask": entry["ask"], "customMaxDays": 0, "actor": ACTOR},
    )


def _settle(d: Driver, asks: Asks, *, limit: int = 40) -> None:
    """Answer whatever the DSR asks for (reads from ``asks``, records, zero-length waits, a
    continue-as-new) until it waits for a poll timer ahead: what a host does between events."""
    for _ in range(limit):
        if d.actions and d.actions[-1].kind == Kind.CONTINUE_AS_NEW:
            d.continue_as_new()
            continue
        action = d.pending()
        if action.kind == Kind.TIMER:
            if action.fire_at > d.now:
                return
            d.fire_timer()
        elif action.name == steps.READ_EXTENSION_ASKS.name:
            read = steps.ReadExtensionAsks.from_dict(action.input)
            d.complete(asks.read(read.after_seq))
        elif action.name == steps.RECORD_EXTENSION.name:
            asks.extended.append(steps.RecordExtension.from_dict(action.input))
            d.complete(steps.Recorded(seq=99).to_dict())
        else:
            raise AssertionError(f"unexpected {action}")
    raise AssertionError(f"the DSR never settled into a wait in {limit} steps: {d.actions[-5:]}")


def _exporting(d: Driver) -> None:
    d.episode()
    d.complete(answers.prepared("dsr-ritm0017-x"))
    d.fire_timer()  # the policy settles, the first submit is held back
    d.complete(answers.accepted(), name=steps.SUBMIT_EXPORT.name)
    assert d.pending().kind == Kind.TIMER, "polling"


def _recorded(asks: Asks) -> list[steps.RecordExtension]:
    return asks.extended


def _deadline(d: Driver) -> str:
    return str(d.replies[-1]["customStatus"]["deadline"])


def _plus_days(days: int) -> str:
    return (datetime.fromisoformat(DEADLINE) + timedelta(days=days)).isoformat()


def test_an_ask_whose_event_lands_while_no_waiter_is_open_is_applied_once():
    asks = Asks()
    d = _driver()
    _exporting(d)
    _nudge(d, asks.add("ask_1", days=1, reasonCode="complexity"))
    assert d.pending().kind == Kind.ACTIVITY, "the first ask is being applied"
    # The second lands while the DSR runs an activity: no extend waiter is open now.
    _nudge(d, asks.add("ask_2", days=1, reasonCode="complexity"))
    _settle(d, asks)

    recorded = _recorded(asks)
    assert [r.deadline for r in recorded] == [_plus_days(1), _plus_days(2)]
    assert [r.ask_id for r in recorded] == ["ask_1", "ask_2"]
    assert _deadline(d) == _plus_days(2)
    # Later waits are not completed by the old event again: the poll goes on.
    d.fire_timer()
    d.complete(answers.checked("complete", 100), name=steps.CHECK_EXPORT.name)
    assert d.pending().name == steps.FINALIZE_EXPORT.name
    assert len(_recorded(asks)) == 2


def test_a_storm_of_asks_and_repeated_events_moves_the_deadline_by_exactly_what_was_asked():
    asks = Asks()
    d = _driver()
    _exporting(d)
    entries = [asks.add(f"ask_{n}", days=1) for n in range(6)]
    for entry in entries:  # six events back to back, and each of them twice
        _nudge(d, entry)
        _nudge(d, entry)
    _settle(d, asks)
    _nudge(d, entries[0])  # a late repeat of an ask already applied
    _settle(d, asks)

    recorded = _recorded(asks)
    assert [r.ask_id for r in recorded] == [e["askId"] for e in entries]
    assert [r.deadline for r in recorded] == [_plus_days(n) for n in range(1, 7)]
    assert _deadline(d) == _plus_days(6)
    assert [e["askId"] for e in d.replies[-1]["customStatus"]["extensions"]] == [
        e["askId"] for e in entries
    ]


def test_an_ask_whose_event_was_dropped_is_applied_by_the_next_execution():
    asks = Asks()
    d = _driver(policy=ExportPolicy(rounds_per_history=2))
    _exporting(d)
    asks.add("ask_lost", months=1)  # recorded by the API; its event never arrives
    for _ in range(2):
        d.fire_timer()
        d.complete(answers.checked("running", 10), name=steps.CHECK_EXPORT.name)
    d.fire_timer()  # the zero-length race for a late cancel
    reply = d.continue_as_new()
    assert d.pending().name == steps.READ_EXTENSION_ASKS.name, "read first"
    assert reply["customStatus"]["phase"] == "exporting", "not 'accepted' while it reads"
    _settle(d, asks)
    assert [r.ask_id for r in _recorded(asks)] == ["ask_lost"]
    assert _deadline(d) == "2026-05-01T09:00:00+00:00"


def test_asks_past_the_cap_once_earlier_ones_applied_are_refused_in_turn():
    asks = Asks()
    d = _driver()
    _exporting(d)
    first, second = asks.add("ask_a", months=2), asks.add("ask_b", days=1)
    _nudge(d, first)
    _nudge(d, second)
    _settle(d, asks)
    assert [r.ask_id for r in _recorded(asks)] == ["ask_a"]
    status = d.replies[-1]["customStatus"]
    assert status["deadline"] == "2026-06-01T09:00:00+00:00"
    assert status["refusedExtensions"] == ["ask_b"]


def _lookup_failed(request_id: str) -> Driver:
    d = Driver("export_personal_data", ExportJob(request_id, "nobody@contoso.example").to_input())
    d.episode()
    error: ErrorDoc = {"code": "UserNotFound", "category": "user", "hint": "check the UPN"}
    d.complete(steps.UserResolved.failed(error).to_dict(), name=steps.RESOLVE_USER.name)
    return d


def test_a_dsr_whose_user_lookup_fails_records_how_it_ended():
    d = _lookup_failed("RITM0018")
    finished = d.pending()
    assert finished.name == steps.RECORD_FINISHED.name, "every DSR that ends says so"
    recorded = steps.RecordFinished.from_dict(finished.input)
    assert (recorded.phase, recorded.error_code) == ("failed", "UserNotFound")
    reply = d.complete(steps.Recorded(seq=1).to_dict())
    assert reply["isDone"] is True
    assert reply["output"]["phase"] == "failed"
    assert reply["output"]["error"]["code"] == "UserNotFound"


def test_a_dsr_ends_even_when_its_ending_cannot_be_recorded():
    d = _lookup_failed("RITM0019")
    reply: dict[str, Any] = {}
    for _ in range(5):
        reply = d.fail_attempt("evidence account unreachable")
    assert reply["isDone"] is True
    assert reply["output"]["error"]["code"] == "UserNotFound", "the ending stays what it was"


def test_an_ask_that_lands_during_the_last_check_is_applied_before_the_dsr_ends():
    asks = Asks()
    d = _driver()
    _exporting(d)
    d.fire_timer()
    assert d.pending().name == steps.CHECK_EXPORT.name
    _nudge(d, asks.add("ask_late", days=2))  # the extend waiter is open: it fires now
    d.complete(answers.checked("complete", 100), name=steps.CHECK_EXPORT.name)
    read = d.pending()
    assert read.name == steps.READ_EXTENSION_ASKS.name, "before finalising"
    d.complete(asks.read(-1))
    d.complete(steps.Recorded(seq=12).to_dict(), name=steps.RECORD_EXTENSION.name)
    finalize = steps.FinalizeExport.from_dict(d.pending().input)
    assert finalize.ending == "completed"
    reply = d.complete(answers.finalized({"blobCount": 1, "totalBytes": 2, "products": {}}))
    assert reply["output"]["deadline"] == _plus_days(2)
    assert [e["askId"] for e in reply["output"]["extensions"]] == ["ask_late"]


def test_asks_that_cannot_be_read_wait_for_a_later_read_and_the_export_goes_on(caplog):
    caplog.set_level("WARNING", logger="dsr_export")
    asks = Asks()
    d = _driver()
    _exporting(d)
    _nudge(d, asks.add("ask_1", days=1))
    for _ in range(5):
        d.fail_attempt("evidence account unreachable")
    assert any("extensions_unread" in r.getMessage() for r in caplog.records)
    d.fire_timer()  # the zero-length race for a cancel: then a fresh execution
    d.continue_as_new()
    d.complete(asks.read(-1), name=steps.READ_EXTENSION_ASKS.name)  # its first read
    assert steps.RecordExtension.from_dict(d.pending().input).ask_id == "ask_1"
    d.complete(steps.Recorded(seq=1).to_dict(), name=steps.RECORD_EXTENSION.name)
    if d.pending().kind == Kind.TIMER:  # the poll that was due: at once, its moment is past
        d.fire_timer()
    d.complete(answers.checked("complete", 100), name=steps.CHECK_EXPORT.name)
    assert d.pending().name == steps.FINALIZE_EXPORT.name, "the export went on"


def test_an_ask_during_a_storage_outage_wait_applies_and_the_dsr_submits_again():
    """An ask whose event ends the wait for the export storage is applied, and the next
    execution submits into a fresh container: the DSR is neither cancelled nor broken."""
    asks = Asks()
    d = _driver()
    d.episode()
    d.complete(answers.prepared("dsr-ritm0017-x", settle_seconds=0))
    error = {"code": "StorageLocationInvalid", "category": "storage", "message": "m"}
    resubmit = steps.ExportSubmitted.resubmit(300, error)  # type: ignore[arg-type]
    d.complete(resubmit.to_dict(), name=steps.SUBMIT_EXPORT.name)
    assert d.pending().kind == Kind.TIMER, "waiting for the storage"
    _nudge(d, asks.add("ask_1", days=1, reasonCode="complexity"))
    for _ in range(20):
        if d.actions and d.actions[-1].kind == Kind.CONTINUE_AS_NEW:
            d.continue_as_new()
        elif d.pending().kind == Kind.TIMER and d.pending().fire_at <= d.now:
            d.fire_timer()  # the zero-length race for a cancel
        elif d.pending().name == steps.READ_EXTENSION_ASKS.name:
            read = steps.ReadExtensionAsks.from_dict(d.pending().input)
            d.complete(asks.read(read.after_seq))
        elif d.pending().name == steps.RECORD_EXTENSION.name:
            asks.extended.append(steps.RecordExtension.from_dict(d.pending().input))
            d.complete(steps.Recorded(seq=99).to_dict())
        else:
            break
    assert [r.ask_id for r in _recorded(asks)] == ["ask_1"]
    assert _deadline(d) == _plus_days(1)
    assert d.replies[-1]["customStatus"]["phase"] == "preparing_storage"
    again = steps.PrepareContainer.from_dict(d.pending().input)
    assert (d.pending().name, again.attempt) == (steps.PREPARE_CONTAINER.name, 2)
