"""Extending a legal deadline: each regulation's cap, month arithmetic across month ends, and
the notices re-armed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dsr_export.domain.deadlines import CCPA, GDPR, Regulation, deadline
from dsr_export.domain.extensions import (
    ExtensionAsk,
    ExtensionRefused,
    add_months,
    cap,
    extended,
)
from dsr_export.domain.job import ExportJob

CET = timezone(timedelta(hours=1))


def _extend(regulation: Regulation, received: datetime, ask: ExtensionAsk, **kw) -> datetime:
    original = deadline(received, regulation)
    return extended(
        ask,
        regulation=regulation,
        received_at=received,
        original=original,
        current=kw.pop("current", original),
        earlier=kw.pop("earlier", ()),
        custom_max_days=kw.pop("custom_max_days", 0),
    )


@pytest.mark.parametrize(
    ("moment", "months", "expected"),
    [
        (datetime(2026, 1, 31, 9), 1, datetime(2026, 2, 28, 9)),
        (datetime(2028, 1, 31, 9), 1, datetime(2028, 2, 29, 9)),  # leap year
        (datetime(2026, 2, 28, 9), 2, datetime(2026, 4, 28, 9)),
        (datetime(2026, 11, 30, 9), 2, datetime(2027, 1, 30, 9)),  # across the year
        (datetime(2026, 12, 31, 9), 2, datetime(2027, 2, 28, 9)),
        (datetime(2026, 10, 31, 9), 4, datetime(2027, 2, 28, 9)),
    ],
)
def test_months_are_added_from_the_day_clamped_to_the_months_end(moment, months, expected):
    assert add_months(moment, months) == expected


def test_gdpr_extends_by_two_further_months_counted_from_the_original_deadline():
    received = datetime(2026, 1, 31, 9, tzinfo=UTC)  # due 28 Feb: the cap is 28 Apr, not 30 Apr
    assert deadline(received, GDPR) == datetime(2026, 2, 28, 9, tzinfo=UTC)
    assert _extend(GDPR, received, ExtensionAsk(months=2)) == datetime(2026, 4, 28, 9, tzinfo=UTC)
    with pytest.raises(ExtensionRefused) as beyond:
        _extend(GDPR, received, ExtensionAsk(days=60))  # 29 Apr
    assert beyond.value.pointer == "/days"
    assert "2026-04-28T09:00:00+00:00" in beyond.value.detail


def test_gdpr_months_are_counted_in_the_receipts_local_time():
    # 31 Jan 23:30 CET is a January receipt though it is 22:30 UTC: due 28 Feb 23:30 CET.
    received = datetime(2026, 1, 31, 23, 30, tzinfo=CET)
    new = _extend(GDPR, received, ExtensionAsk(months=2))
    assert new == datetime(2026, 4, 28, 23, 30, tzinfo=CET)


def test_gdpr_allows_several_extensions_within_the_two_months():
    received = datetime(2026, 3, 31, 9, tzinfo=UTC)  # due 30 Apr, cap 30 Jun
    first = _extend(GDPR, received, ExtensionAsk(months=1))
    assert first == datetime(2026, 5, 30, 9, tzinfo=UTC)
    second = _extend(GDPR, received, ExtensionAsk(months=1), current=first, earlier=[{}])
    assert second == datetime(2026, 6, 30, 9, tzinfo=UTC)
    with pytest.raises(ExtensionRefused):
        _extend(GDPR, received, ExtensionAsk(days=1), current=second, earlier=[{}, {}])


def test_ccpa_extends_once_by_at_most_45_days_in_days():
    received = datetime(2026, 1, 1, tzinfo=UTC)
    original = deadline(received, CCPA)
    assert _extend(CCPA, received, ExtensionAsk(days=45)) == original + timedelta(days=45)
    with pytest.raises(ExtensionRefused, match="45 days"):
        _extend(CCPA, received, ExtensionAsk(days=46))
    with pytest.raises(ExtensionRefused, match="one extension"):
        _extend(CCPA, received, ExtensionAsk(days=5), earlier=[{}])
    with pytest.raises(ExtensionRefused) as months:
        _extend(CCPA, received, ExtensionAsk(months=1))
    assert months.value.pointer == "/months"


def test_a_days_regulation_extends_only_as_far_as_the_setting_allows():
    received, regime = datetime(2026, 1, 1, tzinfo=UTC), Regulation("days", 30)
    with pytest.raises(ExtensionRefused, match="CUSTOM_EXTENSION_MAX_DAYS"):
        _extend(regime, received, ExtensionAsk(days=1))
    original = deadline(received, regime)
    assert _extend(
        regime, received, ExtensionAsk(days=30), custom_max_days=30
    ) == original + timedelta(days=30)
    with pytest.raises(ExtensionRefused):
        _extend(regime, received, ExtensionAsk(days=31), custom_max_days=30)
    assert cap(regime, original, received, 10) == original + timedelta(days=10)


@pytest.mark.parametrize(
    ("payload", "pointer"),
    [
        ({}, "/days"),
        ({"days": 5, "months": 1}, "/days"),
        ({"days": 0}, "/days"),
        ({"days": True}, "/days"),
        ({"months": "2"}, "/months"),
        ({"days": 5, "reasonCode": "because"}, "/reasonCode"),
    ],
)
def test_a_bad_ask_names_its_field(payload, pointer):
    with pytest.raises(ExtensionRefused) as refused:
        ExtensionAsk.parse(payload)
    assert refused.value.pointer == pointer


def test_the_reason_travels_as_its_hash_only():
    ask = ExtensionAsk.parse({"days": 3, "reason": "Ada's request is complex"})
    assert ask.reason_sha256 is not None
    assert "Ada" not in str(ask.to_dict())
    assert ExtensionAsk.from_dict(ask.to_dict()) == ask


def _job(**fields) -> ExportJob:
    base = {
        "request_id": "RITM1",
        "user": "u",
        "received_at": "2026-03-01T09:00:00+00:00",
        "regulation": "gdpr",
        "legal_deadline": "2026-04-01T09:00:00+00:00",
        "warning_at": "2026-03-25T09:00:00+00:00",
    }
    return ExportJob(**{**base, **fields})


def test_an_extension_moves_the_warning_with_the_deadline_and_rearms_both_notices():
    job = _job(warned=True, overdue_noted=True)
    now = datetime(2026, 4, 2, 9, tzinfo=UTC)  # overdue and warned already
    moved = job.extended_by(
        ExtensionAsk(months=1, reason_code="complexity"), now, custom_max_days=0
    )
    assert moved.legal_deadline == "2026-05-01T09:00:00+00:00"
    assert moved.warning_at == "2026-04-24T09:00:00+00:00", "the same lead before the deadline"
    assert moved.original_deadline == "2026-04-01T09:00:00+00:00"
    assert (moved.warned, moved.overdue_noted) == (False, False), "both owed again"
    [record] = moved.extensions
    assert record == {
        "previousDeadline": "2026-04-01T09:00:00+00:00",
        "deadline": "2026-05-01T09:00:00+00:00",
        "days": 30,
        "reasonCode": "complexity",
        "extendedAt": now.isoformat(),
    }
    again = moved.extended_by(ExtensionAsk(months=1), now, custom_max_days=0)
    assert again.original_deadline == "2026-04-01T09:00:00+00:00", "the first deadline stays"
    assert len(again.extensions) == 2
    assert ExportJob.from_input(again.to_input()) == again


def test_a_notice_whose_new_moment_is_already_past_is_not_owed_again():
    job = _job(warned=True)
    now = datetime(2026, 3, 30, 9, tzinfo=UTC)  # inside the new warning window too
    moved = job.extended_by(ExtensionAsk(days=3), now, custom_max_days=0)
    assert moved.warned is True


def test_a_retried_dsr_keeps_its_deadline_and_extensions_and_takes_a_fresh_container():
    job = _job(user_id="oid", submit_attempt=1)
    ended = {
        "phase": "failed",
        "error": {"code": "StorageLocationInvalid"},
        "container": "dsr-ritm1-abc",
        "completedAt": "2026-03-02T09:00:00+00:00",
        "deadline": "2026-05-01T09:00:00+00:00",
        "warningAt": "2026-04-24T09:00:00+00:00",
        "originalDeadline": "2026-04-01T09:00:00+00:00",
        "extensions": [{"days": 30}],
        "submitAttempt": 2,
    }
    attempt = job.next_attempt(ended)
    assert attempt.attempt == 2
    assert attempt.legal_deadline == "2026-05-01T09:00:00+00:00"
    assert attempt.original_deadline == "2026-04-01T09:00:00+00:00"
    assert attempt.extensions == ({"days": 30},)
    assert (attempt.submit_attempt, attempt.submit_base) == (3, 2), "after every container used"
    assert attempt.earlier_attempts == (
        {
            "attempt": 1,
            "phase": "failed",
            "errorCode": "StorageLocationInvalid",
            "container": "dsr-ritm1-abc",
            "endedAt": "2026-03-02T09:00:00+00:00",
        },
    )
    assert attempt.started_at is None
    assert attempt.operation_id is None
    third = attempt.next_attempt({"phase": "timed_out", "attempt": 2, "submitAttempt": 3})
    assert third.attempt == 3
    assert [a["attempt"] for a in third.earlier_attempts] == [1, 2]


def test_a_retried_dsr_keeps_the_language_its_package_was_asked_in():
    """The package of a retried DSR is built in the language the request named, not in
    ``PACKAGE_LANGUAGE``: the retry's input carries it on."""
    job = _job(user_id="oid").replace(language="de")
    attempt = job.next_attempt({"phase": "failed", "completedAt": "2026-03-02T09:00:00+00:00"})
    assert attempt.language == "de"
    assert ExportJob.from_input(attempt.to_input()).language == "de"


def test_json_whole_numbers_are_taken_as_json_schema_takes_them():
    # JSON Schema's "integer" includes 30.0; a reasonCode that is not text is a field error.
    assert ExtensionAsk.parse({"months": 2.0}).months == 2
    with pytest.raises(ExtensionRefused) as fraction:
        ExtensionAsk.parse({"days": 2.5})
    assert fraction.value.pointer == "/days"
    with pytest.raises(ExtensionRefused) as code:
        ExtensionAsk.parse({"days": 2, "reasonCode": {}})
    assert code.value.pointer == "/reasonCode"
