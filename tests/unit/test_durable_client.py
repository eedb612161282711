"""The Durable client adapter: the SDK's failures, as the 1.x SDK raises them, become the app's
own errors, and its payloads are decoded in one place (the offline host's extension checks the
same against the real SDK client in tests/devhost and tests/e2e)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from dsr_export.adapters.durable_client import (
    DurableTaskHub,
    InstanceGone,
    InstanceUnknown,
    decode_payload,
)


class Sdk:
    """The SDK client's surface, failing as the 1.x SDK does (bare Exception texts)."""

    def __init__(self, failure: BaseException | None = None, status: Any = None) -> None:
        self.failure = failure
        self.found = status

    async def start_new(self, *_: Any) -> str:
        if self.failure:
            raise self.failure
        return "R-1"

    async def get_status(self, *_: Any, **__: Any) -> Any:
        if self.failure:
            raise self.failure
        return self.found

    async def raise_event(self, *_: Any) -> None:
        if self.failure:
            raise self.failure

    async def purge_instance_history(self, *_: Any) -> Any:
        return type("Purged", (), {"instances_deleted": 1})()


def _hub(sdk: Sdk) -> DurableTaskHub:
    return DurableTaskHub(sdk)


def test_start_is_once_an_instance_that_already_exists_starts_nothing():
    exists = Exception("An Orchestration instance with the ID R-1 already exists.")
    assert asyncio.run(_hub(Sdk()).start("x", "R-1", {})) is True
    assert asyncio.run(_hub(Sdk(exists)).start("x", "R-1", {})) is False


def test_any_other_start_failure_passes_as_it_came():
    with pytest.raises(ConnectionError):
        asyncio.run(_hub(Sdk(ConnectionError("down"))).start("x", "R-1", {}))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("Instance with ID R-1 is gone: either completed or failed", InstanceGone),
        ("No instance with ID R-1 found.", InstanceUnknown),
    ],
)
def test_an_event_to_an_ended_or_unknown_instance_is_the_apps_error(text, error):
    with pytest.raises(error):
        asyncio.run(_hub(Sdk(Exception(text))).raise_event("R-1", "cancel", {}))


def test_a_status_read_of_an_unknown_instance_is_none():
    # The extension's 404 has an empty body, which the SDK fails to parse (a TypeError).
    assert asyncio.run(_hub(Sdk(TypeError("NoneType"))).status("R-1")) is None
    assert asyncio.run(_hub(Sdk(status=DurableOrchestrationStatus())).status("R-1")) is None
    running = DurableOrchestrationStatus(instanceId="R-1", runtimeStatus="Running")
    assert asyncio.run(_hub(Sdk(status=running)).status("R-1")) is running


def test_purge_counts_the_instances_deleted():
    assert asyncio.run(_hub(Sdk()).purge("R-1")) == 1


def test_payloads_arrive_as_text_or_decoded():
    assert decode_payload('{"a": 1}') == {"a": 1}
    assert decode_payload({"a": 1}) == {"a": 1}
    assert decode_payload("not json") is None
    assert decode_payload(None) is None
