"""The step contract: every activity's name, its input and its result, in one place.

The orchestrator and the activities meet only through these types. Each input and result is a
frozen dataclass whose camelCase JSON form is its wire shape: activity inputs travel in the
task hub's queues, results are stored in its history (so nothing here may hold a secret), and a
replay reads results written by an earlier version of this code, so reading is lenient: an
unknown key is ignored, a missing optional one takes its default.

Graph steps answer with an :class:`Outcome`: ``ok`` (``accepted`` for the submit), ``retry``
(Graph throttled or was unavailable: wait ``retryAfterSeconds`` on a durable timer) or
``failed`` (a permanent error with its fix); the submit may also answer ``unknown`` (the
container holds Graph's receipt from an earlier attempt whose answer was lost) and the recovery
lookup ``absent`` (Graph knows no operation for that receipt: the command was never posted).
The submit answers ``resubmit`` when Graph could not use the container and the app could not
reach it either (an export storage outage, not a refused SAS): wait ``retryAfterSeconds``, then
submit again into a fresh container.
Anything an activity raises is unexpected and retried by the orchestrator's retry options.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, Self, TypeVar

from dsr_export.domain.errors import ErrorDoc


class Outcome(enum.StrEnum):
    """How a Graph-facing step ended."""

    OK = "ok"
    ACCEPTED = "accepted"
    RETRY = "retry"
    FAILED = "failed"
    UNKNOWN = "unknown"
    ABSENT = "absent"
    RESUBMIT = "resubmit"


class Wire:
    """camelCase JSON for a dataclass: the one mapping of a step's shape to the wire."""

    #: Fields left out of the JSON when they hold None (keeps history small and readable).
    _omit_none: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON object this value travels as."""
        data: dict[str, Any] = {}
        for item in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if value is None and self._omit_none:
                continue
            data[_camel(item.name)] = value.value if isinstance(value, enum.Enum) else value
        return data

    @classmethod
    def from_dict(cls, raw: object) -> Self:
        """Read the JSON object back; unknown keys are ignored."""
        if not isinstance(raw, dict):
            raise TypeError(f"{cls.__name__} must be a JSON object, got {type(raw).__name__}")
        kwargs: dict[str, Any] = {}
        for item in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = _camel(item.name)
            if key in raw:
                kwargs[item.name] = raw[key]
        if "outcome" in kwargs:
            kwargs["outcome"] = Outcome(kwargs["outcome"])
        return cls(**kwargs)


#: The orchestrations, by name: the intake starts them through the task hub (and the task hub
#: answers with their names) without importing them.
ORCHESTRATOR: Final = "export_personal_data"
NOTICE_ORCHESTRATOR: Final = "deliver_notice"
#: The external event that cancels a DSR.
CANCEL_EVENT: Final = "cancel"
#: The external event that tells a DSR an extension was asked. Only a nudge: the ask itself is
#: in the DSR's evidence (``extension_asked``), where the orchestrator reads it, so an event the
#: SDK or a continue-as-new drops loses nothing.
EXTEND_EVENT: Final = "extend"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# -- inputs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolveUser(Wire):
    """Look a UPN up: exportPersonalData takes object ids only."""

    request_id: str
    user: str


@dataclass(frozen=True)
class PrepareContainer(Wire):
    """Create the DSR's own container (and its stored access policy); ``attempt`` > 1 is a
    fresh container for a submit that must start over (the old one holds Graph's receipt)."""

    request_id: str
    attempt: int = 1


@dataclass(frozen=True)
class SubmitExport(Wire):
    """Mint the SAS and POST exportPersonalData for ``user_id`` into ``container``."""

    request_id: str
    user_id: str
    container: str


@dataclass(frozen=True)
class RecoverSubmit(Wire):
    """Find the export an earlier submit into ``container`` started, from Graph's receipt.

    ``final``: the last lookup; when Graph still knows no such operation, the container's SAS
    is revoked (nothing may write there any more) before answering ``absent``.
    """

    request_id: str
    user_id: str
    container: str
    final: bool = False


@dataclass(frozen=True)
class CheckExport(Wire):
    """GET the dataPolicyOperation at ``operation_url`` once; ``last_status`` is what Graph said
    before (a change goes to the evidence)."""

    request_id: str
    operation_url: str
    last_status: str | None = None


@dataclass(frozen=True)
class FinalizeExport(Wire):
    """Manifest (when ``write_manifest``), SAS revocation and the evidence of the ending.

    (Histories of earlier versions also carry ``audit``, the record they wrote as
    ``audit.json``; reading ignores it.)
    """

    request_id: str
    container: str
    write_manifest: bool
    sas_expires_at: str | None = None
    #: How the DSR ends (its phase and error code and category), for the evidence.
    ending: str | None = None
    error_code: str | None = None
    error_category: str | None = None
    operation_id: str | None = None
    #: Which attempt of the DSR ends: each attempt's records have event ids of their own.
    attempt: int = 1


@dataclass(frozen=True)
class RecordFinished(Wire):
    """Write how a DSR that never had a container ended (``finished``): every DSR that ends
    says so in its evidence, or the retention run could not tell it ended."""

    request_id: str
    phase: str
    error_code: str | None = None
    error_category: str | None = None
    operation_id: str | None = None
    attempt: int = 1


@dataclass(frozen=True)
class ReadExtensionAsks(Wire):
    """The extension asks the API recorded in the DSR's evidence after record ``after_seq``."""

    request_id: str
    after_seq: int = -1


@dataclass(frozen=True)
class SendCallback(Wire):
    """Sign ``event`` and POST it to ``url``; ``message_id`` is stable across attempts."""

    request_id: str
    url: str
    message_id: str
    event: dict[str, Any]


@dataclass(frozen=True)
class RecordExtension(Wire):
    """Write an applied extension of the legal deadline to the DSR's evidence (``number``: the
    how-manieth extension, its idempotency key)."""

    request_id: str
    number: int
    previous_deadline: str
    deadline: str
    original_deadline: str
    extension_days: int
    reason_code: str
    reason_sha256: str | None = None
    actor_kind: str | None = None
    actor_id: str | None = None
    #: The ask the API recorded (its idempotency key); None in histories of earlier versions.
    ask_id: str | None = None


@dataclass(frozen=True)
class BuildPackage(Wire):
    """Build the subject's package from ``container`` (the completed attempt's), in
    ``language``; the times are what the first page shows (ISO 8601, UTC)."""

    request_id: str
    container: str
    language: str
    completed_at: str | None = None
    received_at: str | None = None
    deadline: str | None = None
    regulation: str | None = None
    #: The files a reviewer withheld (``{"sha256", "reasonCode"}``): the final, approved build.
    withheld: list[dict[str, str]] | None = None


@dataclass(frozen=True)
class RecordPackage(Wire):
    """Write how packaging ended to the DSR's evidence: ``packaged`` (with ``package``, the
    builder's state document) or ``refused`` (the export changed: ``changed`` counts)."""

    request_id: str
    ending: str
    package: dict[str, Any] | None = None
    changed: dict[str, int] | None = None
    export_manifest_sha256: str | None = None
    actor_kind: str | None = None
    actor_id: str | None = None


# -- results ------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class GraphStepResult(Wire):
    """What every Graph-facing step answers: its outcome and, unless ok, why and how long to
    wait before trying again."""

    _omit_none: ClassVar[bool] = True
    outcome: Outcome = Outcome.OK
    error: ErrorDoc | None = None
    retry_after_seconds: int | None = None

    @classmethod
    def failed(cls, error: ErrorDoc) -> Self:
        """A permanent failure with its fix."""
        return cls(outcome=Outcome.FAILED, error=error)

    @classmethod
    def retry(cls, seconds: int, error: ErrorDoc) -> Self:
        """Graph throttled or was unavailable: try again after ``seconds``."""
        return cls(outcome=Outcome.RETRY, retry_after_seconds=seconds, error=error)

    @classmethod
    def resubmit(cls, seconds: int, error: ErrorDoc) -> Self:
        """The storage did not answer Graph nor the app: after ``seconds``, a fresh container."""
        return cls(outcome=Outcome.RESUBMIT, retry_after_seconds=seconds, error=error)


@dataclass(frozen=True, kw_only=True)
class UserResolved(GraphStepResult):
    """The object id behind the UPN."""

    user_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContainerPrepared(GraphStepResult):
    """The container's name; whether Graph already accepted a SAS for it; how long to let a
    new stored access policy settle before Graph may check it."""

    container: str | None = None
    request_info_exists: bool = False
    settle_seconds: int = 0


@dataclass(frozen=True, kw_only=True)
class ExportSubmitted(GraphStepResult):
    """What the submit told us: the operation to poll and the SAS's expiry (never the SAS)."""

    operation_id: str | None = None
    operation_url: str | None = None
    submitted_at: str | None = None
    sas_expires_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExportRecovered(GraphStepResult):
    """The export found behind Graph's receipt (``ok``), or ``absent``: never posted."""

    operation_id: str | None = None
    operation_url: str | None = None
    submitted_at: str | None = None
    sas_expires_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExportChecked(GraphStepResult):
    """The operation's status and progress as Graph reported them."""

    status: str | None = None
    progress: float | None = None


@dataclass(frozen=True, kw_only=True)
class PackageBuilt(GraphStepResult):
    """The package built (or found built): the builder's state document (hashes, parts,
    counts; no file names); ``failed`` with the reason when it could not be (``changed``: the
    counts of an export that changed after it completed)."""

    package: dict[str, Any] | None = None
    changed: dict[str, int] | None = None
    export_manifest_sha256: str | None = None


@dataclass(frozen=True)
class ExportFinalized(Wire):
    """The manifest summary (completed exports) and what became of the SAS."""

    manifest: dict[str, Any] | None
    sas: dict[str, Any]


@dataclass(frozen=True)
class Recorded(Wire):
    """An evidence record written (or found written by an earlier try): its number."""

    seq: int


#: Most asks one read returns; the orchestrator reads again while a read comes back full.
ASKS_PER_READ: Final = 20


@dataclass(frozen=True)
class ExtensionAsks(Wire):
    """Asks in the order the evidence holds them (the order they arrived), each
    ``{"askId", "seq", "ask": {days|months, reasonCode, reasonSha256}, "actor": {kind, id}}``,
    and the extension limit the settings give a days regulation."""

    asks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    custom_max_days: int = 0


@dataclass(frozen=True)
class CallbackDelivery(Wire):
    """What became of one delivery; ``permanent`` failures are not worth retrying."""

    delivered: bool
    status: int | None
    permanent: bool = False
    reason: str | None = None


# -- the steps ----------------------------------------------------------------------------------
In = TypeVar("In", bound=Wire)
Out = TypeVar("Out", bound=Wire)


@dataclass(frozen=True)
class Step(Generic[In, Out]):
    """One activity: its registered name and the types of its input and result."""

    name: str
    input_type: type[In]
    result_type: type[Out]


RESOLVE_USER: Final = Step("resolve_user", ResolveUser, UserResolved)
PREPARE_CONTAINER: Final = Step("prepare_container", PrepareContainer, ContainerPrepared)
SUBMIT_EXPORT: Final = Step("submit_export", SubmitExport, ExportSubmitted)
RECOVER_SUBMIT: Final = Step("recover_submit", RecoverSubmit, ExportRecovered)
CHECK_EXPORT: Final = Step("check_export", CheckExport, ExportChecked)
FINALIZE_EXPORT: Final = Step("finalize_export", FinalizeExport, ExportFinalized)
SEND_CALLBACK: Final = Step("send_callback", SendCallback, CallbackDelivery)
RECORD_EXTENSION: Final = Step("record_extension", RecordExtension, Recorded)
READ_EXTENSION_ASKS: Final = Step("read_extension_asks", ReadExtensionAsks, ExtensionAsks)
RECORD_FINISHED: Final = Step("record_finished", RecordFinished, Recorded)
BUILD_PACKAGE: Final = Step("build_package", BuildPackage, PackageBuilt)
RECORD_PACKAGE: Final = Step("record_package", RecordPackage, Recorded)

#: Every activity of the app, by name.
STEPS: Final[dict[str, Step[Any, Any]]] = {
    step.name: step
    for step in (
        RESOLVE_USER,
        PREPARE_CONTAINER,
        SUBMIT_EXPORT,
        RECOVER_SUBMIT,
        CHECK_EXPORT,
        FINALIZE_EXPORT,
        SEND_CALLBACK,
        RECORD_EXTENSION,
        READ_EXTENSION_ASKS,
        RECORD_FINISHED,
        BUILD_PACKAGE,
        RECORD_PACKAGE,
    )
}
