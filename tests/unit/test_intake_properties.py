"""Property-based: arbitrary bytes and JSON at both intakes never yield a 500 (or a raised
queue message) and never start an orchestration for input the validation refuses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta, timezone
from typing import Any

import pytest
from azure.functions.queue import QueueMessage as WorkerQueueMessage
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dsr_export import composition
from dsr_export.adapters.outbound import check_url
from dsr_export.domain.request import ExportRequest, InvalidRequest, decode_body
from dsr_export.settings import CallbackSettings
from tests.unit.intake_fakes import (
    T0,
    USER_ID,
    FakeDurableClient,
    ListSink,
    intake_settings,
    request,
)

_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_FIELD_VALUES = st.one_of(
    _JSON,
    st.sampled_from(
        [
            USER_ID,
            "ada@contoso.com",
            "RITM0001",
            "gdpr",
            "ccpa",
            {"days": 30},
            "2026-02-29T10:00:00Z",
            "2026-01-31T10:00:00+01:00",
            "https://tickets.example.com/cb",
            "http://tickets.example.com/cb",
            "https://169.254.169.254/",
            # What the hostile review sent: dates at the calendar's ends, odd Unicode, bypasses.
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "1900-01-01T00:00:00Z",
            "9999-12-31T23:59:59-23:59",
            {"days": 1},
            {"days": 366},
            "ada\u0000@contoso.com",
            "ada\u200b@contoso.com",
            "ada\u202e@contoso.com",
            "ad\ud800a@contoso.com",
            '"ada"@contoso.com',
            "alice_contoso.com#EXT#@fabrikam.onmicrosoft.com",
            "https://localhost\\.tickets.example.com/x",
            "https://tickets.example.com\n.evil/x",
            "https://tickets.example.com:8443/cb",
        ]
    ),
)
#: Dates anywhere in the calendar, with any offset: near datetime.min and max included.
_DATES = st.datetimes(
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))])
).map(lambda moment: moment.isoformat())
#: Objects shaped like requests, with every field sometimes right, sometimes anything.
_REQUESTS = st.dictionaries(
    st.sampled_from(
        ["requestId", "user", "callbackUrl", "receivedAt", "regulation", "requestedBy", "x"]
    ),
    _FIELD_VALUES,
)
#: Requests right in their required fields, anything in the optional ones.
_NEAR_VALID = st.fixed_dictionaries(
    {
        "requestId": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True),
        "user": st.sampled_from([USER_ID, "ada@contoso.com"]),
    },
    optional={
        "callbackUrl": _FIELD_VALUES,
        "receivedAt": _FIELD_VALUES | _DATES,
        "regulation": _FIELD_VALUES,
        "requestedBy": _FIELD_VALUES | st.text(),
    },
)
_BODIES = st.one_of(
    st.binary(max_size=300),
    # Other encodings of valid-looking JSON, and a key given twice.
    _NEAR_VALID.map(lambda v: json.dumps(v).encode("utf-16")),
    _NEAR_VALID.map(lambda v: json.dumps(v)[:-1].encode() + b', "user": "x@contoso.com"}'),
    _JSON.map(lambda v: json.dumps(v).encode()),
    _REQUESTS.map(lambda v: json.dumps(v).encode()),
    _NEAR_VALID.map(lambda v: json.dumps(v).encode()),
)


@pytest.fixture(autouse=True)
def _configured(swap: Callable[..., None]) -> Iterator[None]:
    swap(clock=lambda: T0)
    with intake_settings():
        yield


def _valid(raw: bytes) -> bool:
    """The oracle: the core's strict decoding and validation, called directly.

    Independently of both intakes' plumbing; also a second check that neither the decoder nor
    the validation raises anything but InvalidRequest.
    """
    try:
        payload: Any = decode_body(raw)
        hosts = CallbackSettings.from_env().allowed_hosts
        ExportRequest.parse(payload, now=T0, callback_check=lambda url: check_url(url, hosts))
    except InvalidRequest:
        return False
    return True


@_SETTINGS
@given(raw=_BODIES, content_type=st.sampled_from(["application/json", "text/plain"]))
def test_http_submit_never_500s_and_starts_only_valid_requests(user_function, raw, content_type):
    client = FakeDurableClient()
    entry = user_function("submit_dsr")
    req = request("POST", "exports", raw, content_type=content_type)
    response = asyncio.run(entry.client_function(req=req, client=client))
    assert response.status_code in {202, 400, 409, 413, 415}
    event(f"status {response.status_code}")
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        assert client.started == []
    else:
        assert content_type == "application/json"
        assert _valid(raw)
        assert len(client.started) == 1


@_SETTINGS
@given(raw=_BODIES)
def test_queue_intake_never_raises_for_bad_input_and_records_each_refusal(user_function, raw):
    client, sink = FakeDurableClient(), ListSink()
    msg = WorkerQueueMessage(id="m-1", body=raw, dequeue_count=1)
    entry = user_function("intake_dsr_message")
    with composition.override(rejections=sink):
        asyncio.run(entry.client_function(msg=msg, client=client))  # never raises
    if _valid(raw):
        assert len(client.started) == 1
        assert sink.records == []
    else:
        assert client.started == []
        assert len(sink.records) == 1
        assert sink.records[0]["messageId"] == "m-1"


@_SETTINGS
@given(path_id=st.text(max_size=120), reason=_JSON)
def test_cancel_and_get_never_500(user_function, path_id, reason):
    client = FakeDurableClient()
    client.add("RITM0001")
    params = {"requestId": path_id}
    get = asyncio.run(
        user_function("get_dsr").client_function(
            req=request("GET", "exports/x", route_params=params), client=client
        )
    )
    assert get.status_code in {200, 400, 404}
    body = json.dumps({"reason": reason}).encode()
    cancel = asyncio.run(
        user_function("cancel_dsr").client_function(
            req=request("POST", "exports/x/cancel", body, route_params=params), client=client
        )
    )
    assert cancel.status_code in {202, 400, 404, 409}
    if cancel.status_code != 202:
        assert client.events == []
