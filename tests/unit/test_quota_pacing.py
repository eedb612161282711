"""A 429 without Retry-After from exportPersonalData or dataPolicyOperation is Graph's documented
quota, spent: the client does not repeat it inline, and the orchestration waits for the quota
(``pacing.QUOTA_WAIT_SECONDS``), not a blind minute. Through the real client, the activities'
mapping and the orchestrator, replayed through the SDK.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pytest_httpserver import HTTPServer

from activities.export_steps import _graph_failure
from dsr_export.adapters.graph_errors import GraphError
from dsr_export.domain import pacing, steps
from dsr_export.domain.errors import classify, quota_refused
from dsr_export.domain.job import ExportJob
from tests import answers
from tests.replay import Driver
from tests.unit.test_graph_client import SAS, USER, _client, _graph_error

pytest_plugins = ["tests.unit.test_graph_client"]

QUOTA = timedelta(seconds=pacing.QUOTA_WAIT_SECONDS)
STRETCH = 1 + pacing.SPREAD


def _driver() -> Driver:
    job = ExportJob(request_id="RITM0042", user=USER, user_id=USER)
    return Driver("export_personal_data", job.to_input())


def test_a_quota_429_on_the_submit_is_not_repeated_inline(graph: HTTPServer) -> None:
    graph.expect_request(f"/beta/users/{USER}/exportPersonalData").respond_with_response(
        _graph_error(429, "TooManyRequests")
    )
    with pytest.raises(GraphError) as caught:
        _client(graph)[0].submit_export(USER, SAS)
    assert len(graph.log) == 1, "a blind retry may count against the day's quota"
    assert caught.value.retry_after is None
    assert quota_refused(caught.value, subject="submit")


def test_a_quota_429_on_a_poll_is_not_repeated_inline(graph: HTTPServer) -> None:
    op = "/beta/dataPolicyOperations/op-1"
    graph.expect_request(op).respond_with_response(_graph_error(429, "TooManyRequests"))
    with pytest.raises(GraphError) as caught:
        _client(graph)[0].get_operation(graph.url_for(op))
    assert len(graph.log) == 1
    verdict = classify(caught.value, subject="poll")
    assert (verdict.retry, verdict.retry_after_seconds) == (True, pacing.QUOTA_WAIT_SECONDS)
    assert "10,000" in verdict.error["hint"]


def test_only_the_quota_routes_read_a_bare_429_as_the_quota() -> None:
    bare = GraphError(429, "TooManyRequests", "m")
    with_retry_after = GraphError(429, "TooManyRequests", "m", retry_after=120)
    assert classify(bare, subject="user").retry_after_seconds == 60  # identity limits: a minute
    assert classify(with_retry_after, subject="submit").retry_after_seconds == 120
    assert not quota_refused(GraphError(503, "ServiceUnavailable", "m"), subject="submit")


def test_a_quota_refused_submit_waits_for_the_quota_not_a_minute() -> None:
    refused = _graph_failure(
        steps.SUBMIT_EXPORT, "RITM0042", GraphError(429, "TooManyRequests", "m"), subject="submit"
    )
    assert refused.outcome is steps.Outcome.RETRY
    assert "1,000" in (refused.error or {}).get("hint", "")
    d = _driver()
    d.episode()
    d.complete(answers.prepared(settle_seconds=0))
    assert d.pending().name == steps.SUBMIT_EXPORT.name
    d.complete(refused.to_dict())
    wait = d.pending().fire_at - d.now
    assert QUOTA <= wait <= QUOTA * STRETCH
    d.fire_timer()
    assert d.pending().name == steps.SUBMIT_EXPORT.name, "then tried again, once"


def test_a_quota_refused_poll_waits_for_the_quota_not_a_minute() -> None:
    refused = _graph_failure(
        steps.CHECK_EXPORT, "RITM0042", GraphError(429, "TooManyRequests", "m"), subject="poll"
    )
    d = _driver()
    d.episode()
    d.complete(answers.prepared(settle_seconds=0))
    d.complete(answers.accepted(60), name=steps.SUBMIT_EXPORT.name)
    d.fire_timer()  # the submit's Retry-After
    assert d.pending().name == steps.CHECK_EXPORT.name
    d.complete(refused.to_dict())
    wait = d.pending().fire_at - d.now
    assert QUOTA <= wait <= QUOTA * STRETCH
    d.fire_timer()
    assert d.pending().name == steps.CHECK_EXPORT.name
