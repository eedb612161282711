"""The evidence log against Azurite: one append blob per DSR that only ever grows, one valid
chain under concurrent writers, one record per event id, and no request that could overwrite
or delete anything.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER, EvidenceLog, EvidenceLogError
from dsr_export.domain import evidence
from dsr_export.domain.evidence import EvidenceRefused, Kind

pytestmark = pytest.mark.azurite

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
OBJECT_ID = "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b"
OPERATION = "0a1b2c3d-0000-4000-8000-123456789abc"


@dataclass
class Requests:
    """Every request the app's client sent: method, path, query and the headers that matter."""

    seen: list[tuple[str, str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, pipeline_request) -> None:
        request = pipeline_request.http_request
        url = urlsplit(request.url)
        headers = {key.lower(): value for key, value in request.headers.items()}
        with self.lock:
            self.seen.append((request.method, url.path, parse_qs(url.query), headers))

    def writes(self) -> list[tuple[str, str, dict[str, list[str]], dict[str, str]]]:
        return [entry for entry in self.seen if entry[0] not in ("GET", "HEAD")]


@pytest.fixture
def trust_azurite(tls_files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)


@pytest.fixture
def requests_sent() -> Requests:
    return Requests()


@pytest.fixture
def service(azurite: Azurite, trust_azurite, requests_sent: Requests) -> BlobServiceClient:
    """The app's view of the evidence account, every request it sends recorded."""
    return BlobServiceClient(
        azurite.blob_endpoint,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
        raw_request_hook=requests_sent,
    )


@pytest.fixture
def outside(azurite: Azurite, trust_azurite) -> BlobServiceClient:
    """Someone else's client: the test's own eyes and hands, not recorded."""
    return BlobServiceClient(
        azurite.blob_endpoint,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
    )


@pytest.fixture
def container() -> str:
    return f"dsr-evidence-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def log(service: BlobServiceClient, container: str) -> EvidenceLog:
    return EvidenceLog(service, container)


def _request_id() -> str:
    return f"ritm-{uuid.uuid4().hex[:10]}"


def _content(outside: BlobServiceClient, container: str, request_id: str) -> bytes:
    blob = outside.get_blob_client(container, evidence.blob_name(request_id))
    return bytes(blob.download_blob().readall())


@pytest.fixture
def no_overwrite_or_delete(requests_sent: Requests) -> Iterator[Requests]:
    """After the test: every write the app sent could only add, never replace or remove."""
    yield requests_sent
    writes = requests_sent.writes()
    assert writes, "the test wrote something"
    for method, path, query, headers in writes:
        assert method == "PUT", (method, path)
        if query.get("restype") == ["container"]:
            assert "comp" not in query, "creating the container, nothing else at its level"
        elif query.get("comp") == ["appendblock"]:
            assert "x-ms-blob-condition-appendpos" in headers, "appends only at the known end"
        else:
            assert headers.get("x-ms-blob-type") == "AppendBlob", (path, query)
            assert headers.get("if-none-match") == "*", "a log is created only if none exists"
            assert headers.get("content-length") in (None, "0")


def test_a_dsr_s_life_appends_one_verified_chain(
    log: EvidenceLog, outside: BlobServiceClient, container: str, no_overwrite_or_delete
):
    request_id = _request_id()
    assert outside.get_container_client(container).exists() is False
    assert log.read(request_id) == []
    assert log.verify(request_id).summary().startswith("BROKEN at record 0: empty: ")
    steps: list[tuple[Kind, dict[str, object]]] = [
        (Kind.RECEIVED, {"regulation": "gdpr", "submitterKind": "application"}),
        (Kind.SUBMITTED, {"operationId": OPERATION, "sasMode": "user-delegation"}),
        (Kind.GRAPH_STATUS, {"operationId": OPERATION, "graphStatus": "running"}),
        (Kind.COMPLETED, {"operationId": OPERATION, "blobCount": 3, "totalBytes": 8}),
        (Kind.SAS_REVOKED, {"sasMode": "user-delegation", "revoked": False}),
        (Kind.CALLBACK, {"eventType": "dsr.completed", "attempts": 1, "httpStatus": 204}),
    ]
    written = []
    lengths = []
    for minute, (kind, data) in enumerate(steps):
        written.append(log.append(request_id, kind, T0 + timedelta(minutes=minute), data))
        lengths.append(_content(outside, container, request_id))
    assert [record.seq for record in written] == list(range(len(steps)))
    for shorter, longer in itertools.pairwise(lengths):
        assert longer.startswith(shorter), "the log only ever grows"
    lines = log.read(request_id.upper())
    assert lines == [record.to_line().decode().rstrip("\n") for record in written]
    result = log.verify(request_id)
    assert result.ok, result.summary()
    assert result.count == len(steps)
    assert result.head == written[-1].hash
    properties = outside.get_blob_client(container, evidence.blob_name(request_id))
    assert properties.get_blob_properties().blob_type == "AppendBlob"
    assert b"@" not in _content(outside, container, request_id)


def test_the_default_container_and_a_container_client(service: BlobServiceClient, outside):
    assert EvidenceLog(service).container_name == EVIDENCE_CONTAINER == "dsr-evidence"
    name = f"dsr-evidence-{uuid.uuid4().hex[:12]}"
    outside.create_container(name)
    log = EvidenceLog(service.get_container_client(name), container="ignored")
    record = log.append(_request_id(), Kind.RECEIVED, T0, {"source": "queue"})
    assert record.seq == 0, "an existing container is used as it is"


def test_concurrent_writers_keep_one_chain(
    service: BlobServiceClient, container: str, no_overwrite_or_delete
):
    """Two workers (two logs, two caches) and a third thread sharing one of them, all at once."""
    request_id = _request_id()
    first, second = EvidenceLog(service, container), EvidenceLog(service, container)
    first.append(request_id, Kind.RECEIVED, T0, {"source": "http"})
    per_writer = 8
    start = threading.Barrier(3)
    failures: list[BaseException] = []

    def write(log: EvidenceLog, writer: int) -> None:
        start.wait()
        try:
            for round_ in range(per_writer):
                log.append(
                    request_id,
                    Kind.GRAPH_STATUS,
                    T0 + timedelta(seconds=round_),
                    {"eventId": f"w{writer}-{round_}", "progress": round_},
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [
        threading.Thread(target=write, args=(log, writer))
        for writer, log in enumerate((first, second, second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    result = first.verify(request_id)
    assert result.ok, result.summary()
    assert result.count == 1 + 3 * per_writer
    ids = sorted(record.event_id or "" for record in result.records[1:])
    assert ids == sorted(f"w{w}-{r}" for w in range(3) for r in range(per_writer))


def test_a_stale_writer_reads_the_tail_again(service: BlobServiceClient, container: str):
    request_id = _request_id()
    first, second = EvidenceLog(service, container), EvidenceLog(service, container)
    first.append(request_id, Kind.RECEIVED, T0, {})
    second.append(request_id, Kind.SUBMITTED, T0, {"operationId": OPERATION})
    third = first.append(request_id, Kind.GRAPH_STATUS, T0, {"graphStatus": "running"})
    assert third.seq == 2, "first's cached end was stale: it lost the position and re-read"
    assert first.verify(request_id).ok


def test_an_event_id_is_recorded_once(
    log: EvidenceLog, service: BlobServiceClient, container: str, no_overwrite_or_delete
):
    """A Durable retry of an activity that already wrote its record writes nothing more."""
    request_id = _request_id()
    data = {"eventId": "submit:1", "operationId": OPERATION, "submitAttempt": 1}
    once = log.append(request_id, Kind.SUBMITTED, T0, data)
    again = log.append(request_id, Kind.SUBMITTED, T0 + timedelta(minutes=1), data)
    elsewhere = EvidenceLog(service, container).append(
        request_id, Kind.SUBMITTED, T0 + timedelta(minutes=2), data
    )
    assert once == again == elsewhere
    assert len(log.read(request_id)) == 1
    with pytest.raises(EvidenceRefused, match="eventId already names"):
        log.append(request_id, Kind.COMPLETED, T0, {"eventId": "submit:1"})
    other = log.append(request_id, Kind.SUBMITTED, T0, {**data, "eventId": "submit:2"})
    assert other.seq == 1


def test_an_append_whose_answer_was_lost_is_not_repeated(
    log: EvidenceLog, monkeypatch: pytest.MonkeyPatch
):
    """The append reached storage but the writer saw a failure (a dropped answer, retried into
    412): the record found at its place is taken as written, and not appended again."""
    request_id = _request_id()
    log.append(request_id, Kind.RECEIVED, T0, {})
    real = log._append_at

    def lost_answer(name: str, position: int, line: bytes) -> bool:
        assert real(name, position, line)
        return False

    monkeypatch.setattr(log, "_append_at", lost_answer)
    record = log.append(request_id, Kind.GRAPH_STATUS, T0, {"graphStatus": "running"})
    assert record.seq == 1
    assert len(log.read(request_id)) == 2
    assert log.verify(request_id).ok


def test_a_writer_that_always_loses_gives_up(log: EvidenceLog, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(log, "_append_at", lambda name, position, line: False)
    monkeypatch.setattr("dsr_export.adapters.evidence_log._BACKOFF_SECONDS", 0.0)
    with pytest.raises(EvidenceLogError, match="other writers kept moving its end"):
        log.append(_request_id(), Kind.RECEIVED, T0, {})


def test_personal_data_is_refused_before_any_request(log: EvidenceLog, requests_sent: Requests):
    request_id = _request_id()
    with pytest.raises(EvidenceRefused):
        log.append(request_id, Kind.RECEIVED, T0, {"submitterId": "adele@contoso.com"})
    with pytest.raises(EvidenceRefused):
        log.append(request_id, Kind.RECEIVED, T0, {"requestedBy": "Adele Vance"})
    with pytest.raises(EvidenceRefused):
        log.append("adele@contoso.com", Kind.RECEIVED, T0, {})
    assert requests_sent.seen == []


def test_a_broken_log_is_named_and_its_broken_tail_not_chained_onto(
    log: EvidenceLog, outside: BlobServiceClient, container: str
):
    request_id = _request_id()
    log.append(request_id, Kind.RECEIVED, T0, {})
    log.append(request_id, Kind.SUBMITTED, T0, {"operationId": OPERATION})
    blob = outside.get_blob_client(container, evidence.blob_name(request_id))
    blob.append_block(b'{"seq": 2, "forged": true}\n')  # someone with more rights than the app
    result = log.verify(request_id)
    assert result.summary() == (
        "BROKEN at record 2 (line 3): "
        "not an evidence record (its fields are not seq, kind, at, ...)"
    )
    fresh = EvidenceLog(outside, container)
    with pytest.raises(EvidenceLogError, match="last record is broken"):
        fresh.append(request_id, Kind.GRAPH_STATUS, T0, {})


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b'{"seq": 2, "x": NaN}', "not JSON: NaN is not a number JSON allows"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON: nested too deeply"),
        (b'"a string"', "not an evidence record (its fields are not seq, kind, at, ...)"),
        (b'{"seq": 2, "kind": "\xff"}', "not UTF-8"),
    ],
)
def test_a_malformed_line_is_named_by_the_services_readers(
    log: EvidenceLog, outside: BlobServiceClient, container: str, line: bytes, why: str
):
    """F-8: the app's readers raised ValueError or RecursionError on such a line."""
    request_id = _request_id()
    log.append(request_id, Kind.RECEIVED, T0, {})
    blob = outside.get_blob_client(container, evidence.blob_name(request_id))
    blob.append_block(line + b"\n")
    assert log.verify(request_id).summary() == f"BROKEN at record 1 (line 2): {why}"
    document = evidence.evidence_document(request_id, log.read(request_id))
    assert document["verification"]["broken"] == {"record": 1, "line": 2, "reason": why}
    with pytest.raises(EvidenceLogError, match="last record is broken"):
        EvidenceLog(outside, container).append(request_id, Kind.GRAPH_STATUS, T0, {})


def test_the_log_is_kept_apart_by_request_id(log: EvidenceLog):
    one, two = _request_id(), _request_id()
    log.append(one, Kind.RECEIVED, T0, {})
    log.append(two, Kind.RECEIVED, T0, {})
    log.append(one.upper(), Kind.SUBMITTED, T0, {})
    assert (len(log.read(one)), len(log.read(two))) == (2, 1)
    assert log.verify(one).ok
    assert log.verify(two).ok
    assert {record.request_id for record in log.verify(one).records} == {one.upper()}
