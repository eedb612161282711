"""``/api/exports/{id}/package`` against the fake task hub: built once for a completed DSR, 409
naming why otherwise, the language checked, and the orchestration's two steps in order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from dsr_export.adapters.package_builder import PackageResult
from dsr_export.domain.evidence import Kind
from dsr_export.domain.package_manifest import PACKAGE_ORCHESTRATOR, package_instance_id
from tests.unit.intake_fakes import (
    T0,
    FakeDurableClient,
    MemoryEvidence,
    body,
    call,
    intake_settings,
    request,
)

RESULT = PackageResult(
    container="dsr-r-1-abc-pkg",
    parts=({"name": "package.zip", "size": 10, "sha256": "a" * 64},),
    package_sha256="a" * 64,
    manifest_sha256="b" * 64,
    export_manifest_sha256="c" * 64,
    file_count=4,
    total_bytes=100,
    packaged_at="2026-12-07T18:00:00Z",
    generation=1,
    language="en",
)


class Client(FakeDurableClient):
    """The fake task hub (it records the purge the route does before rebuilding)."""


class FakeBuilder:
    def __init__(self) -> None:
        self.built: PackageResult | None = None

    def find(self, request_id: str) -> PackageResult | None:
        return self.built


@pytest.fixture
def builder(swap: Callable[..., None]) -> FakeBuilder:
    fake = FakeBuilder()
    swap(package_builder=fake, clock=lambda: T0)
    return fake


@pytest.fixture(autouse=True)
def _settings() -> Iterator[None]:
    with intake_settings():
        yield


def _completed(client: FakeDurableClient, phase: str = "completed", input_: Any = None) -> None:
    client.add(
        "R-1",
        runtime="Completed" if phase == "completed" else "Running",
        output={
            "phase": phase,
            "requestId": "R-1",
            "container": "dsr-r-1-abc",
            "completedAt": T0.isoformat(),
            "deadline": (T0 + timedelta(days=30)).isoformat(),
        },
        input_=input_,
    )


def _post(user_function, client: FakeDurableClient, payload: Any = None, method: str = "POST"):
    req = request(method, "exports/R-1/package", payload, route_params={"requestId": "R-1"})
    return call(user_function("export_package"), client, req=req)


def test_a_completed_dsr_starts_one_build_then_answers_the_package(user_function, builder):
    client = Client()
    _completed(client)
    first = _post(user_function, client, {"language": "de"})
    assert first.status_code == 202
    assert body(first)["state"] == "building"
    [(name, instance, payload)] = client.started
    assert (name, instance) == (PACKAGE_ORCHESTRATOR, package_instance_id("R-1"))
    assert payload["build"]["language"] == "de"
    assert payload["build"]["container"] == "dsr-r-1-abc"
    client.add(instance, runtime="Running")
    assert _post(user_function, client).status_code == 202
    assert len(client.started) == 1
    builder.built = RESULT
    # Written but not yet recorded (the build's last step): still building.
    assert _post(user_function, client).status_code == 202
    client.add(instance, runtime="Completed")
    done = _post(user_function, client)
    assert done.status_code == 200
    assert body(done)["packageSha256"] == "a" * 64
    assert _post(user_function, client, method="GET").status_code == 200


@pytest.mark.parametrize("phase", ["exporting", "failed", "cancelled"])
def test_a_dsr_that_did_not_complete_is_a_409_naming_its_phase(user_function, builder, phase):
    client = Client()
    _completed(client, phase)
    answer = _post(user_function, client)
    assert answer.status_code == 409
    assert phase in body(answer)["detail"]
    assert client.started == []


def test_erased_data_is_a_409_naming_the_receipt(
    user_function, builder, evidence_log: MemoryEvidence
):
    client = Client()
    _completed(client)
    evidence_log.append(
        "R-1",
        Kind.ERASED,
        T0,
        {"receiptId": "rcpt_1", "container": "dsr-r-1-abc", "blobCount": 1, "actorKind": "key"},
    )
    answer = _post(user_function, client)
    assert answer.status_code == 409
    assert "erased" in body(answer)["detail"]
    assert "rcpt_1" in body(answer)["detail"]


def test_an_export_that_changed_is_a_409_saying_so(user_function, builder):
    client = Client()
    _completed(client)
    client.add(
        package_instance_id("R-1"),
        runtime="Completed",
        output={
            "state": "failed",
            "error": {"code": "ExportChangedAfterCompletion", "message": "1 added"},
        },
    )
    answer = _post(user_function, client)
    assert answer.status_code == 409
    assert "changed after it completed" in body(answer)["detail"]


def test_a_language_without_a_catalogue_is_a_400_naming_the_field(user_function, builder):
    client = Client()
    _completed(client)
    answer = _post(user_function, client, {"language": "fr"})
    assert answer.status_code == 400
    assert body(answer)["errors"][0]["pointer"] == "/language"


def test_an_unknown_dsr_is_a_404_and_get_starts_nothing(user_function, builder):
    client = Client()
    assert _post(user_function, client).status_code == 404
    _completed(client)
    assert _post(user_function, client, method="GET").status_code == 404
    assert client.started == []


def test_a_build_that_failed_is_named_by_get_and_rebuilt_by_post(user_function, builder):
    client = Client()
    _completed(client)
    client.add(
        package_instance_id("R-1"),
        runtime="Completed",
        output={"state": "failed", "error": {"code": "Misconfigured", "message": "no key"}},
        input_={"build": {"container": "dsr-r-1-abc"}},
    )
    shown = _post(user_function, client, method="GET")
    assert shown.status_code == 409
    assert "Misconfigured" in body(shown)["detail"]
    again = _post(user_function, client)
    assert again.status_code == 202
    assert len(client.started) == 1
    assert client.purged == [package_instance_id("R-1")]


def test_a_refusal_from_an_earlier_attempts_container_does_not_block(user_function, builder):
    client = Client()
    _completed(client)
    client.add(
        package_instance_id("R-1"),
        runtime="Completed",
        output={"state": "failed", "error": {"code": "ExportChangedAfterCompletion"}},
        input_={"build": {"container": "dsr-r-1-old"}},
    )
    assert _post(user_function, client).status_code == 202


def test_the_language_the_dsr_asked_for_is_the_packages_default(user_function, builder):
    client = Client()
    _completed(client, input_={"requestId": "R-1", "user": "u", "language": "de"})
    assert _post(user_function, client).status_code == 202
    assert client.started[0][2]["build"]["language"] == "de"


def test_a_package_written_but_never_recorded_is_built_again_not_answered(user_function, builder):
    """The build wrote the package, then the evidence account stopped answering its record
    step until the build failed: answering the package then would leave it out of the
    evidence for good. Asked again, the build runs (it reuses the package) and records it."""
    client = Client()
    _completed(client)
    builder.built = RESULT
    instance = package_instance_id("R-1")
    client.add(instance, runtime="Failed", input_={"build": {"container": "dsr-r-1-abc"}})
    shown = _post(user_function, client, method="GET")
    assert shown.status_code == 409, body(shown)  # before: 200, never recorded
    assert "ask again" in body(shown)["detail"]
    again = _post(user_function, client)
    assert again.status_code == 202, body(again)
    assert [started[1] for started in client.started] == [instance]
