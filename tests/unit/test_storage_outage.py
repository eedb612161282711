"""An export storage outage at the moment of submit: Graph's catch-all ``StorageLocationInvalid``
is a configuration error only when the app itself reaches the container; when the storage does
not answer the app either, the DSR waits and submits again into a fresh container."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dsr_export.adapters.graph_errors import GraphError
from dsr_export.domain import pacing, steps
from dsr_export.domain.job import ExportJob
from dsr_export.domain.request import container_name
from tests import answers
from tests.replay import Driver

USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
REFUSED = GraphError(400, "StorageLocationInvalid", "The storage location is invalid.", "g-1")


class _Storage:
    """The export account as the activity uses it; ``down`` says why it does not answer."""

    policy_settle_seconds = 0

    def __init__(self, down: str | None) -> None:
        self.down = down
        self.probed: list[str] = []
        self.revoked: list[str] = []

    def request_info_exists(self, name: str) -> bool:
        return False

    def mint_graph_sas(self, name: str, now: datetime) -> tuple[str, datetime]:
        return f"https://acct.blob.core.windows.net/{name}?sig=secret", now + timedelta(days=60)

    def unanswered(self, name: str) -> str | None:
        self.probed.append(name)
        return self.down

    def prepare(self, name: str, now: datetime) -> bool:
        return False

    def revoke(self, name: str) -> bool:
        self.revoked.append(name)
        return True


class _Graph:
    def __init__(self, error: GraphError) -> None:
        self.error = error
        self.submits = 0

    def submit_export(self, user_id: str, sas_url: str) -> Any:
        self.submits += 1
        raise self.error


@pytest.fixture
def export_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from dsr_export import settings

    monkeypatch.setenv("EXPORT_STORAGE_BLOB_ENDPOINT", "https://acct.blob.core.windows.net")
    monkeypatch.setenv("EXPORT_SAS_MODE", "stored-policy")
    monkeypatch.setenv("EXPORT_STORAGE_ACCOUNT_KEY", "a2V5")
    settings.clear_cache()
    yield
    settings.clear_cache()


def _submit(
    user_function: Callable[[str], Any], swap: Callable[..., None], storage: _Storage
) -> steps.ExportSubmitted:
    swap(export_storage=storage, graph=_Graph(REFUSED), clock=lambda: T0)
    payload = steps.SubmitExport("RITM0001", USER_ID, "dsr-ritm0001-x").to_dict()
    return steps.ExportSubmitted.from_dict(user_function(steps.SUBMIT_EXPORT.name)(payload))


def test_storage_down_when_graph_checks_the_sas_is_a_resubmit_not_a_configuration_error(
    user_function, swap, export_env, caplog
):
    storage = _Storage(down="connection")
    with caplog.at_level(logging.INFO):
        answer = _submit(user_function, swap, storage)
    assert answer.outcome.value == "resubmit", answer.error  # today: "failed", configuration
    assert storage.probed == ["dsr-ritm0001-x"], "the app asked the container itself"
    assert answer.error is not None
    assert (answer.error["code"], answer.error["category"]) == ("StorageLocationInvalid", "storage")
    assert answer.error.get("graphRequestId") == "g-1"
    assert answer.retry_after_seconds == pacing.STORAGE_BASE_SECONDS
    lines = [r.getMessage() for r in caplog.records if "storage_unavailable" in r.getMessage()]
    assert lines, "the log says the submit waits for the export storage"
    assert "export storage" in lines[0]
    assert "sig=" not in caplog.text


def test_graph_refusing_a_sas_while_the_storage_answers_stays_a_configuration_error(
    user_function, swap, export_env
):
    storage = _Storage(down=None)
    answer = _submit(user_function, swap, storage)
    assert answer.outcome is steps.Outcome.FAILED
    assert answer.error is not None
    assert (answer.error["code"], answer.error["category"]) == (
        "StorageLocationInvalid",
        "configuration",
    )
    assert "EXPORT_SAS_MODE" in answer.error.get("hint", "")
    assert storage.probed == ["dsr-ritm0001-x"]


def test_other_sas_refusals_are_not_second_guessed(user_function, swap, export_env):
    storage = _Storage(down="connection")
    swap(export_storage=storage, graph=_Graph(GraphError(400, "StorageLocationNotServiceSAS", "m")))
    payload = steps.SubmitExport("RITM0001", USER_ID, "c").to_dict()
    answer = steps.ExportSubmitted.from_dict(user_function(steps.SUBMIT_EXPORT.name)(payload))
    assert answer.outcome is steps.Outcome.FAILED
    assert storage.probed == [], "only the catch-all is ambiguous"


def test_a_fresh_container_revokes_the_one_before_it(user_function, swap):
    storage = _Storage(down=None)
    swap(export_storage=storage, clock=lambda: T0)
    prepare = user_function(steps.PREPARE_CONTAINER.name)
    prepare(steps.PrepareContainer("RITM0001", 1).to_dict())
    assert storage.revoked == [], "a first container has none before it"
    prepare(steps.PrepareContainer("RITM0001", 3).to_dict())
    assert storage.revoked == [container_name("RITM0001", 2)]


# -- the orchestration -----------------------------------------------------------------------


def _resubmit() -> dict[str, Any]:
    error = {"code": "StorageLocationInvalid", "category": "storage", "message": "m"}
    return steps.ExportSubmitted.resubmit(300, error).to_dict()  # type: ignore[arg-type]


def _driver() -> Driver:
    job = ExportJob(request_id="RITM0001", user=USER_ID, user_id=USER_ID)
    return Driver("export_personal_data", job.to_input())


def test_the_dsr_waits_then_submits_into_a_fresh_container(caplog):
    d = _driver()
    d.episode()
    d.complete(answers.prepared("dsr-ritm0001-x", settle_seconds=0))
    with caplog.at_level(logging.INFO):
        reply = d.complete(_resubmit(), name=steps.SUBMIT_EXPORT.name)
    assert reply["customStatus"]["phase"] == "submitting"
    assert "error" not in reply["customStatus"], "a wait, not a failure"
    wait = d.pending().fire_at - d.now
    assert timedelta(minutes=5) <= wait <= timedelta(minutes=7.5)
    assert "submit_waits_for_storage" in caplog.text
    d.fire_timer()
    again = steps.PrepareContainer.from_dict(d.pending().input)
    assert (d.pending().name, again.attempt) == (steps.PREPARE_CONTAINER.name, 2)
    d.complete(answers.prepared("dsr-ritm0001-x-a2", settle_seconds=0))
    assert steps.SubmitExport.from_dict(d.pending().input).container == "dsr-ritm0001-x-a2"
    reply = d.complete(answers.accepted(), name=steps.SUBMIT_EXPORT.name)
    assert reply["customStatus"]["phase"] == "exporting"
    assert reply["customStatus"]["container"] == "dsr-ritm0001-x-a2"


def test_an_outage_longer_than_the_waits_fails_as_storage_unavailable_after_hours():
    d = _driver()
    d.episode()
    started, submits = d.now, 0
    for _ in range(200):
        pending = d.pending()
        if pending.kind == "timer":
            d.fire_timer()
        elif pending.name == steps.PREPARE_CONTAINER.name:
            attempt = steps.PrepareContainer.from_dict(pending.input).attempt
            d.complete(answers.prepared(f"c-{attempt}", settle_seconds=0))
        elif pending.name == steps.SUBMIT_EXPORT.name:
            submits += 1
            d.complete(_resubmit())
        else:
            break
    assert d.pending().name == steps.FINALIZE_EXPORT.name
    reply = d.complete(answers.finalized())
    assert reply["output"]["phase"] == "failed"
    assert reply["output"]["error"]["code"] == "ExportStorageUnavailable"
    assert reply["output"]["error"]["category"] == "storage"
    assert submits == pacing.STORAGE_RESUBMITS + 1
    ridden = d.now - started
    assert timedelta(seconds=pacing.storage_outage_ridden_out()) <= ridden
    assert ridden <= timedelta(seconds=pacing.storage_outage_ridden_out() * 1.5 + 600)
    assert timedelta(hours=8) < ridden < timedelta(hours=13.5)


def test_storage_resubmits_do_not_use_up_the_never_posted_budget():
    d = _driver()
    d.episode()
    d.complete(answers.prepared("c-1", settle_seconds=0))
    d.complete(_resubmit())
    d.fire_timer()
    d.complete(answers.prepared("c-2", settle_seconds=0))
    d.complete(steps.ExportSubmitted(outcome=steps.Outcome.UNKNOWN).to_dict())
    absent = steps.ExportRecovered(outcome=steps.Outcome.ABSENT).to_dict()
    never_posted = 0
    for _ in range(300):
        pending = d.pending()
        if pending.kind == "timer":
            d.fire_timer()
        elif pending.name == steps.RECOVER_SUBMIT.name:
            d.complete(absent)
        elif pending.name == steps.PREPARE_CONTAINER.name:
            attempt = steps.PrepareContainer.from_dict(pending.input).attempt
            d.complete(answers.prepared(f"c-{attempt}", settle_seconds=0))
        elif pending.name == steps.SUBMIT_EXPORT.name:
            never_posted += 1
            d.complete(steps.ExportSubmitted(outcome=steps.Outcome.UNKNOWN).to_dict())
        else:
            break
    reply = d.complete(answers.finalized(), name=steps.FINALIZE_EXPORT.name)
    assert reply["output"]["error"]["code"] == "SubmitNotPosted"
    assert never_posted + 1 == 5, "five submits Graph never posted, besides the spoilt one"


def test_each_wait_of_the_storage_sdk_says_for_which_dsr_step_and_account(caplog):
    from types import SimpleNamespace

    from azure.core.exceptions import ServiceRequestError

    from dsr_export.adapters.failures import in_step, logged_retry

    slept: list[float] = []
    transport = SimpleNamespace(sleep=slept.append)
    refused = SimpleNamespace(error=ServiceRequestError("refused"), http_response=None)
    settings = {"count": 1, "history": [refused], "hook": None}
    with caplog.at_level(logging.INFO), in_step("RITM0001", steps.FINALIZE_EXPORT.name):
        logged_retry("evidence").sleep(settings, transport)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("storage_retry")]
    assert "request_id=RITM0001" in line
    assert "step=finalize_export" in line
    assert "account=evidence" in line
    assert "reason=connection" in line
    [waited] = slept
    assert 15 <= waited <= 21, "the SDK's own back-off, unchanged"
    assert f"retry_in_seconds={round(slept[0], 1)}" in line
