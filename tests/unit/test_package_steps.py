"""The package's activities and orchestration: the build answers its result (or ``failed``
with the counts of an export that changed), the evidence gets ``packaged`` once per package
and ``package_refused`` with counts only; the orchestration records what the build found."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dsr_export.adapters.package_builder import ExportChanged, PackageResult
from dsr_export.domain import steps
from dsr_export.domain.evidence import Kind
from dsr_export.domain.package_manifest import PACKAGE_ORCHESTRATOR
from tests.package_fixtures import TestSigner
from tests.replay import Driver
from tests.unit.intake_fakes import T0, MemoryEvidence
from tests.unit.test_package_route import RESULT


class Builder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[Any, Any]] = []

    def build(self, job: Any, signer: Any, **kwargs: Any) -> PackageResult:
        self.calls.append((job, signer))
        if self.fail is not None:
            raise self.fail
        return RESULT


@pytest.fixture
def signer(swap: Callable[..., None]) -> TestSigner:
    test_signer = TestSigner()
    swap(receipt_signer=test_signer, clock=lambda: T0)
    return test_signer


def _run(user_function: Callable[[str], Any], step: steps.Step[Any, Any], ask: steps.Wire) -> Any:
    return step.result_type.from_dict(user_function(step.name)(payload=ask.to_dict()))


ASK = steps.BuildPackage(
    request_id="R-1", container="dsr-r-1-abc", language="de", completed_at=T0.isoformat()
)


def test_the_build_is_sealed_by_the_signer_from_composition(user_function, swap, signer):
    builder = Builder()
    swap(package_builder=builder)
    built = _run(user_function, steps.BUILD_PACKAGE, ASK)
    assert built.outcome is steps.Outcome.OK
    assert built.package["packageSha256"] == "a" * 64
    [(job, used)] = builder.calls
    assert used is signer
    assert job.language == "de"
    assert job.facts.completed_at == T0


def test_an_export_that_changed_fails_the_build_with_counts(user_function, swap, signer):
    swap(package_builder=Builder(ExportChanged(1, 0, 2)))
    built = _run(user_function, steps.BUILD_PACKAGE, ASK)
    assert built.outcome is steps.Outcome.FAILED
    assert built.error["code"] == "ExportChangedAfterCompletion"
    assert built.changed == {"added": 1, "removed": 0, "altered": 2}


def test_packaged_is_recorded_once_with_the_zip_hash(
    user_function, evidence_log: MemoryEvidence, signer
):
    record = steps.RecordPackage(request_id="R-1", ending="packaged", package=RESULT.to_dict())
    first = _run(user_function, steps.RECORD_PACKAGE, record)
    again = _run(user_function, steps.RECORD_PACKAGE, record)
    assert first.seq == again.seq
    [packaged] = evidence_log.records["R-1"]
    assert packaged.kind is Kind.PACKAGED
    assert packaged.data["packageSha256"] == "a" * 64
    assert packaged.data["partCount"] == 1


def test_a_refusal_is_recorded_with_counts_only(
    user_function, evidence_log: MemoryEvidence, signer
):
    record = steps.RecordPackage(
        request_id="R-1", ending="refused", changed={"added": 1, "removed": 0, "altered": 0}
    )
    _run(user_function, steps.RECORD_PACKAGE, record)
    [refused] = evidence_log.records["R-1"]
    assert refused.kind is Kind.PACKAGE_REFUSED
    assert dict(refused.data) == {
        "eventId": "package-refused-1-0-0",
        "reasonCode": "EXPORT_CHANGED",
        "added": 1,
        "removed": 0,
        "altered": 0,
    }


def _drive(built: steps.PackageBuilt) -> tuple[Driver, dict[str, Any]]:
    driver = Driver(
        PACKAGE_ORCHESTRATOR, {"build": ASK.to_dict(), "actor": {"kind": "key", "id": "k1"}}
    )
    driver.episode()
    driver.complete(built.to_dict(), name=steps.BUILD_PACKAGE.name)
    reply = driver.complete({"seq": 0}, name=steps.RECORD_PACKAGE.name)
    assert reply["isDone"]
    return driver, reply["output"]


def test_the_orchestration_records_what_the_build_found():
    driver, result = _drive(steps.PackageBuilt(package=RESULT.to_dict()))
    [record] = driver.activities(steps.RECORD_PACKAGE.name)
    assert record.input["ending"] == "packaged"
    assert record.input["actorId"] == "k1"
    assert result["state"] == "complete"
    changed = steps.PackageBuilt(
        outcome=steps.Outcome.FAILED,
        error={"code": "ExportChangedAfterCompletion"},
        changed={"added": 1, "removed": 0, "altered": 0},
    )
    driver, result = _drive(changed)
    [record] = driver.activities(steps.RECORD_PACKAGE.name)
    assert record.input["ending"] == "refused"
    assert result["state"] == "failed"
