"""Legal deadline arithmetic: month ends, leap years, offsets, and the view at read time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsr_export.domain.deadlines import (
    CCPA,
    GDPR,
    Regulation,
    add_month,
    deadline,
    parse_received_at,
    parse_regulation,
    view,
    warning_at,
)

CET = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("received", "due"),
    [
        ("2026-01-15T10:00:00Z", "2026-02-15T10:00:00+00:00"),
        ("2026-01-31T10:00:00Z", "2026-02-28T10:00:00+00:00"),  # clamped to Feb's last day
        ("2028-01-31T10:00:00Z", "2028-02-29T10:00:00+00:00"),  # leap year
        ("2028-02-29T10:00:00Z", "2028-03-29T10:00:00+00:00"),
        ("2026-03-31T10:00:00Z", "2026-04-30T10:00:00+00:00"),
        ("2026-12-31T23:00:00Z", "2027-01-31T23:00:00+00:00"),  # year end
        ("2026-08-31T00:00:00Z", "2026-09-30T00:00:00+00:00"),
    ],
)
def test_gdpr_is_one_calendar_month_clamped_to_the_month_end(received, due):
    assert deadline(parse_received_at(received), GDPR).isoformat() == due


def test_gdpr_month_is_counted_in_the_local_time_of_the_receipt():
    # 31 Jan 00:30 in Berlin is still 30 Jan in UTC; the month runs from Berlin's 31 Jan.
    received = parse_received_at("2026-01-31T00:30:00+01:00")
    due = deadline(received, GDPR)
    assert due == datetime(2026, 2, 28, 0, 30, tzinfo=CET)
    assert due.tzinfo is UTC
    assert due.isoformat() == "2026-02-27T23:30:00+00:00"
    # The same instant stated in UTC is a 30 January receipt: a different (later) month end.
    same_instant_utc = parse_received_at("2026-01-30T23:30:00Z")
    assert deadline(same_instant_utc, GDPR).isoformat() == "2026-02-28T23:30:00+00:00"


def test_negative_offsets_and_fractions():
    received = parse_received_at("2026-03-31T22:15:30.123456789-05:00")
    assert deadline(received, GDPR).isoformat() == "2026-05-01T03:15:30.123456+00:00"


def test_ccpa_is_45_days_and_custom_periods_are_days():
    received = parse_received_at("2026-01-31T10:00:00Z")
    assert deadline(received, CCPA).isoformat() == "2026-03-17T10:00:00+00:00"
    leap = parse_received_at("2028-02-01T10:00:00Z")
    assert deadline(leap, CCPA).isoformat() == "2028-03-17T10:00:00+00:00"
    assert deadline(received, parse_regulation({"days": 30})) == datetime(
        2026, 3, 2, 10, tzinfo=UTC
    )
    assert deadline(received, parse_regulation(10)) == datetime(2026, 2, 10, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, GDPR),
        ("gdpr", GDPR),
        ("GDPR", GDPR),
        ("ccpa", CCPA),
        ({"days": 30}, Regulation("days", 30)),
        (30, Regulation("days", 30)),
    ],
)
def test_regulations_accepted(raw, expected):
    assert parse_regulation(raw) == expected


@pytest.mark.parametrize(
    "raw", ["hipaa", "", True, 0, -1, 367, 1.5, {"days": "30"}, {"days": 30, "x": 1}, [], {}]
)
def test_regulations_refused(raw):
    with pytest.raises(ValueError, match=r"days|gdpr"):
        parse_regulation(raw)


def test_regulation_round_trips_through_its_json_form():
    for regulation in (GDPR, CCPA, Regulation("days", 12)):
        assert parse_regulation(regulation.to_json()) == regulation


@pytest.mark.parametrize(
    "raw",
    [
        "2026-01-31",  # a date, not a moment
        "2026-01-31T10:00:00",  # no offset: the month would depend on a guess
        "2026-02-30T10:00:00Z",  # no such day
        "2026-01-31T10:00:00+24:00",
        "31/01/2026 10:00",
        "2026-01-31T10:00:00Z ",
        "\u0662\u0660\u0662\u0666-01-31T10:00:00Z",  # non-ASCII digits
    ],
)
def test_unusable_received_at_is_refused(raw):
    with pytest.raises(ValueError, match="date-time"):
        parse_received_at(raw)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="offset"):
        deadline(datetime(2026, 1, 1), GDPR)


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1)))
def test_add_month_lands_in_the_next_month_never_past_the_same_day(moment):
    later = add_month(moment)
    assert (later.year * 12 + later.month) - (moment.year * 12 + moment.month) == 1
    assert later.day <= moment.day
    assert later.time() == moment.time()
    assert 28 <= (later - moment).days <= 31


def test_warning_and_view_at_read_time():
    due = datetime(2026, 3, 1, 12, tzinfo=UTC)
    warn = warning_at(due, 7)
    assert warn == datetime(2026, 2, 22, 12, tzinfo=UTC)
    early = view(due, warn, datetime(2026, 2, 1, 12, tzinfo=UTC))
    assert (early.days_left, early.warning, early.overdue) == (28, False, False)
    near = view(due, warn, datetime(2026, 2, 28, 23, tzinfo=UTC))
    assert (near.days_left, near.warning, near.overdue) == (1, True, False)  # 13 hours: 1 day
    late = view(due, warn, datetime(2026, 3, 3, 13, tzinfo=UTC))
    assert (late.days_left, late.warning, late.overdue) == (-2, False, True)
    assert late.to_dict() == {
        "deadline": "2026-03-01T12:00:00+00:00",
        "daysLeft": -2,
        "deadlineWarning": False,
        "overdue": True,
    }
    at_the_second = view(due, warn, due)
    assert (at_the_second.days_left, at_the_second.overdue) == (0, True)
    just_late = view(due, warn, due + timedelta(minutes=1))
    assert (just_late.days_left, just_late.overdue) == (0, True)
