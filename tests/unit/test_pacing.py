"""Every back-off of the app lives in :mod:`dsr_export.domain.pacing`; these pin its values, so
moving a policy there (or changing one) shows here."""

from __future__ import annotations

import inspect

from dsr_export.adapters.callback_sender import CallbackSender
from dsr_export.adapters.graph import GraphClient
from dsr_export.domain import pacing
from orchestrations import package_export
from orchestrations.export_personal_data import ACTIVITY_RETRY


def test_activity_retries_are_the_pacing_policy() -> None:
    assert ACTIVITY_RETRY.first_retry_interval_in_milliseconds == 30_000
    assert ACTIVITY_RETRY.max_number_of_attempts == 5
    assert package_export.RETRY.first_retry_interval_in_milliseconds == 15_000
    assert package_export.RETRY.max_number_of_attempts == 3


def test_retry_and_storage_waits_double_to_their_caps_then_spread() -> None:
    unspread = [min(3600, 30 * 2 ** max(n - 1, 0)) for n in range(0, 10)]
    for attempt, base in enumerate(unspread):
        wait = pacing.retry_wait("r1", attempt)
        assert base <= wait <= base * 1.5
    assert pacing.retry_wait("r1", 1, retry_after=900) >= 900
    assert pacing.storage_outage_ridden_out() == 300 + 600 + 1200 + 2400 + 4800 + 3 * 7200


def test_lost_submit_lookups_wait_60_to_480_seconds_spread() -> None:
    assert pacing.RECOVERY_WAITS == (60, 120, 240, 480)
    assert pacing.SUBMIT_ATTEMPTS == 5
    for lookup, base in enumerate(pacing.RECOVERY_WAITS, start=1):
        wait = pacing.recovery_wait("r1", lookup)
        assert wait == pacing.spread(base, "r1", lookup, "recovery")
        assert base <= wait <= base * 1.5


def test_polls_double_to_the_cap_and_a_refused_check_is_spread() -> None:
    assert pacing.FIRST_POLL_SECONDS == 60
    assert pacing.poll_wait(60, cap=3600) == 120
    assert pacing.poll_wait(0, cap=3600) == 1
    assert pacing.poll_retry_wait("r1", 3, 60, 600, None) == pacing.spread(120, "r1", 3, "poll")
    assert pacing.poll_retry_wait("r1", 3, 60, 600, 900) == pacing.spread(900, "r1", 3, "poll")


def test_callback_and_inline_retries_are_the_pacing_policy() -> None:
    assert pacing.CALLBACK_WAITS == (30, 120, 600)
    sender = inspect.signature(CallbackSender.__init__).parameters["backoff_factor"]
    assert sender.default == 0.5
    graph = inspect.signature(GraphClient.__init__).parameters["backoff_factor"]
    assert graph.default == 2.0
    assert pacing.INLINE_WAIT_MAX_SECONDS == 30.0
    assert pacing.DEFAULT_RETRY_AFTER_SECONDS == 60


def test_transient_and_evidence_append_waits_are_the_pacing_policy() -> None:
    from dsr_export.adapters import evidence_log
    from dsr_export.domain import errors

    assert errors.TRANSIENT_WAIT_SECONDS == pacing.TRANSIENT_WAIT_SECONDS == 60
    assert evidence_log.APPEND_ATTEMPTS == 8
    assert pacing.evidence_append_pause(0, 0.5) == 0.05 * 0.5
    assert pacing.evidence_append_pause(3, 0.0) == 0.05 * 3
