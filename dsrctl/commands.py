"""The ``dsrctl`` commands (click): options, one function per command, exit statuses.

Connection options go before the command (``dsrctl --url URL ls``) or come from the
environment (``DSRCTL_URL``, ``DSRCTL_FUNCTION_KEY``, ``DSRCTL_TOKEN``, ``DSRCTL_SCOPE``,
``DSRCTL_CA_BUNDLE``); ``--json`` goes either side. Every refusal of the API is printed one line
per field at fault and exits 1; a service out of reach exits 3 (see :mod:`dsrctl.output`).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from dsr_export.domain.status import Phase
from dsrctl import __version__, csv_import, download, evidence_check, output, verify, watch
from dsrctl.client import ApiClient, ApiError, CredentialError, NetworkError, TokenSource
from dsrctl.output import is_interactive

#: The phases a DSR can be in, as the API names them (the ``--phase`` filter's choices).
PHASES = tuple(phase.value for phase in Phase)
#: The status document's fields in the order ``show`` prints them (the rest follow).
SHOW_ORDER = (
    "requestId",
    "phase",
    "terminal",
    "attempt",
    "deadline",
    "originalDeadline",
    "daysLeft",
    "deadlineWarning",
    "overdue",
    "receivedAt",
    "regulation",
    "acceptedAt",
    "submittedAt",
    "completedAt",
    "updatedAt",
    "nextCheckAt",
    "pollRound",
    "container",
    "operationId",
    "manifest",
    "error",
    "sas",
    "callbacks",
    "submittedBy",
)
_TIMES = {
    "deadline",
    "originalDeadline",
    "receivedAt",
    "acceptedAt",
    "submittedAt",
    "completedAt",
    "updatedAt",
    "nextCheckAt",
}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Settings:
    """The group's options, handed to every command."""

    url: str | None
    function_key: str | None
    token: str | None
    scope: str | None
    timeout: float
    ca_bundle: str | None
    json_mode: bool

    def client(self) -> ApiClient:
        if not self.url:
            raise click.UsageError("give the service's URL: --url or DSRCTL_URL")
        if self.token and self.scope:
            raise click.UsageError("give --token or --scope, not both")
        return ApiClient(
            self.url,
            function_key=self.function_key,
            tokens=TokenSource(token=self.token, scope=self.scope),
            timeout=self.timeout,
            verify=self.ca_bundle or True,
        )


def _json_option(function: F) -> F:
    return click.option(
        "--json", "json_here", is_flag=True, default=False, help="Print raw JSON (for scripts)."
    )(function)


def _handled(function: Callable[..., int | None]) -> Callable[..., None]:
    """Run a command: its exit status, and every expected failure as a message (no
    traceback)."""

    @functools.wraps(function)
    @click.pass_context
    def run(ctx: click.Context, /, *args: Any, json_here: bool = False, **kwargs: Any) -> None:
        settings: Settings = ctx.obj
        settings.json_mode = settings.json_mode or json_here
        out = output.Output(json_mode=settings.json_mode)
        try:
            code = function(settings, out, *args, **kwargs)
        except ApiError as exc:
            out.refusal(exc)
            code = output.EXIT_FAILED
        except (NetworkError, CredentialError) as exc:
            out.error(str(exc))
            code = output.EXIT_UNREACHABLE
        except download.DownloadFailed as exc:
            out.error(str(exc))
            code = output.EXIT_FAILED
        except csv_import.CsvFileError as exc:
            out.error(str(exc))
            code = output.EXIT_FAILED
        except verify.VerifyFailed as exc:
            out.error(str(exc))
            code = output.EXIT_FAILED
        except KeyboardInterrupt:
            out.error("interrupted")
            code = 130
        ctx.exit(code or output.EXIT_OK)

    return run


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--url", envvar="DSRCTL_URL", help="The app's base URL, e.g. http://127.0.0.1:7071.")
@click.option(
    "--function-key",
    envvar="DSRCTL_FUNCTION_KEY",
    help="A function key, sent as x-functions-key.",
)
@click.option("--token", envvar="DSRCTL_TOKEN", help="A raw bearer token (Entra or offline host).")
@click.option(
    "--scope",
    envvar="DSRCTL_SCOPE",
    help="Get an Entra token for this scope (api://<app-id>/.default) via DefaultAzureCredential.",
)
@click.option(
    "--http-timeout",
    "timeout",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for one HTTP answer.",
)
@click.option(
    "--ca-bundle",
    envvar="DSRCTL_CA_BUNDLE",
    type=click.Path(exists=True, dir_okay=False),
    help="CA certificates to trust (a self-signed service or storage emulator).",
)
@click.option("--json", "json_mode", is_flag=True, help="Print raw JSON (for scripts).")
@click.version_option(__version__, prog_name="dsrctl")
@click.pass_context
def cli(
    ctx: click.Context,
    url: str | None,
    function_key: str | None,
    token: str | None,
    scope: str | None,
    timeout: float,
    ca_bundle: str | None,
    json_mode: bool,
) -> None:
    """Operate dsr-export: submit, import, list, watch, cancel, retry, extend, download, erase
    DSRs and verify their evidence, through the app's HTTP API; verify a subject's package
    (offline, with the organisation's public keys).

    Exit status: 0 done, 1 refused or failed (the reason is printed), 2 wrong usage, 3 the
    service could not be reached, 4 watch gave up waiting.
    """
    ctx.obj = Settings(url, function_key, token, scope, timeout, ca_bundle, json_mode)


# -- submit and import ---------------------------------------------------------------------
def _regulation(value: str | None) -> str | int | None:
    if value is None:
        return None
    return int(value) if value.strip().isdigit() else value


@cli.command()
@click.option("--request-id", required=True, help="The ticket's id (the idempotency key).")
@click.option("--user", required=True, help="The data subject: a UPN or an Entra object id.")
@click.option("--regulation", help="gdpr (default), ccpa, or a number of days.")
@click.option("--received-at", help="When the request was received (RFC 3339 with an offset).")
@click.option("--callback-url", help="Where signed events about the DSR go (https).")
@click.option("--requested-by", help="Who filed it (audit trail only).")
@_json_option
@_handled
def submit(
    settings: Settings,
    out: output.Output,
    request_id: str,
    user: str,
    regulation: str | None,
    received_at: str | None,
    callback_url: str | None,
    requested_by: str | None,
) -> int:
    """Submit one DSR (POST /api/exports); the same request again is the same DSR."""
    body: dict[str, Any] = {"requestId": request_id, "user": user}
    optional = {
        "regulation": _regulation(regulation),
        "receivedAt": received_at,
        "callbackUrl": callback_url,
        "requestedBy": requested_by,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    answer = settings.client().submit(body)
    if out.json_mode:
        out.json(answer.body)
        return output.EXIT_OK
    doc = answer.body
    if csv_import.existed_before(doc):
        out.line(f"{doc.get('requestId')}: already submitted (phase {doc.get('phase')})")
    else:
        due = output.moment(doc.get("deadline"))
        out.line(f"{doc.get('requestId')}: accepted (deadline {due})")
    return output.EXIT_OK


@cli.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Only read the file and say what would be sent.")
@_json_option
@_handled
def import_(settings: Settings, out: output.Output, file: Path, dry_run: bool) -> int:
    """Submit many DSRs from a CSV file (columns: requestId,user,regulation,receivedAt,
    callbackUrl,requestedBy); safe to run again."""
    items = list(csv_import.parse(csv_import.read_text(file)))
    if dry_run:
        return _dry_run(out, items)
    client = settings.client()
    to_send = sum(1 for item in items if isinstance(item, csv_import.Row))
    if out.interactive and not out.json_mode:
        summary = _import_with_bar(out, client, items, to_send)
    else:

        def plain(result: csv_import.RowResult) -> None:
            if not out.json_mode:
                for text in csv_import.describe(result):
                    out.line(text)

        summary = csv_import.send(client, items, on_result=plain)
    if out.json_mode:
        out.json(summary.to_dict())
    else:
        _import_report(out, summary)
    if summary.stopped:
        out.error(f"stopped at {summary.stopped}; run the import again (it is idempotent)")
        return output.EXIT_UNREACHABLE
    return output.EXIT_FAILED if summary.refused else output.EXIT_OK


def _dry_run(out: output.Output, items: Sequence[csv_import.Row | csv_import.RowResult]) -> int:
    refused = [item for item in items if isinstance(item, csv_import.RowResult)]
    rows = [item for item in items if isinstance(item, csv_import.Row)]
    if out.json_mode:
        out.json(
            {
                "send": [{"line": row.line, "request": row.request} for row in rows],
                "refused": [result.to_dict() for result in refused],
            }
        )
    else:
        for item in items:
            if isinstance(item, csv_import.Row):
                out.line(f"line {item.line} ({item.request_id}): would be sent")
            else:
                for text in csv_import.describe(item):
                    out.line(text)
        out.line(f"{len(rows)} row(s) to send, {len(refused)} refused")
    return output.EXIT_FAILED if refused else output.EXIT_OK


def _import_with_bar(
    out: output.Output,
    client: ApiClient,
    items: Sequence[csv_import.Row | csv_import.RowResult],
    to_send: int,
) -> csv_import.Summary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        console=out.console,
    ) as bar:
        task = bar.add_task("import", total=len(items), counts="")
        tally = dict.fromkeys(csv_import.Verdict, 0)

        def step(result: csv_import.RowResult) -> None:
            tally[result.verdict] += 1
            counts = ", ".join(f"{tally[v]} {v.value}" for v in csv_import.Verdict)
            bar.update(task, advance=1, counts=counts)

        summary = csv_import.send(client, items, on_result=step)
    return summary


def _import_report(out: output.Output, summary: csv_import.Summary) -> None:
    if summary.refused:
        out.line("refused:")
        for result in summary.refused:
            for text in csv_import.describe(result):
                out.line(f"  {text}")
    out.line(summary.line())


# -- reading -------------------------------------------------------------------------------
def _bool_choice(value: str | None) -> bool | None:
    return None if value is None else value.lower() == "true"


@cli.command(name="ls")
@click.option("--phase", type=click.Choice(PHASES), help="Only DSRs in this phase.")
@click.option(
    "--overdue",
    type=click.Choice(["true", "false"], case_sensitive=False),
    help="Only DSRs past (true) or within (false) their deadline.",
)
@click.option("--top", type=click.IntRange(1, 200), help="Page size (the service's default: 50).")
@click.option("--all", "every", is_flag=True, help="Follow continuationToken: every page.")
@click.option("--tenant", help="Only this tenant's DSRs (a tenant id; TENANCY=multi).")
@_json_option
@_handled
def list_(
    settings: Settings,
    out: output.Output,
    phase: str | None,
    overdue: str | None,
    top: int | None,
    every: bool,
    tenant: str | None,
) -> int:
    """List DSRs, oldest first (GET /api/exports)."""
    client = settings.client()
    more: str | None = None
    over = _bool_choice(overdue)
    if every:
        items = client.list_all(phase=phase, overdue=over, top=top, tenant=tenant)
    else:
        page = client.list_page(phase=phase, overdue=over, top=top, tenant=tenant)
        items = [item for item in page.get("items") or [] if isinstance(item, dict)]
        more = page.get("continuationToken")
        if out.json_mode:
            out.json(page)
            return output.EXIT_OK
    if out.json_mode:
        out.json({"items": items, "continuationToken": None})
        return output.EXIT_OK
    rows = [
        [
            str(doc.get("requestId")),
            str(doc.get("phase")),
            output.moment(doc.get("deadline")),
            output.days_left(doc),
            output.graph(doc),
        ]
        for doc in items
    ]
    out.table(["REQUEST ID", "PHASE", "DEADLINE", "DAYS LEFT", "GRAPH"], rows)
    count = len(items)
    tail = " (more: --all for every page)" if more else ""
    out.info(f"{count} DSR{'' if count == 1 else 's'}{tail}")
    return output.EXIT_OK


@cli.command()
@click.argument("request_id")
@_json_option
@_handled
def show(settings: Settings, out: output.Output, request_id: str) -> int:
    """Show one DSR's status document (GET /api/exports/{id})."""
    doc = settings.client().get(request_id)
    if out.json_mode:
        out.json(doc)
        return output.EXIT_OK
    out.pairs(status_pairs(doc))
    return output.EXIT_OK


def status_pairs(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The status document as ``name: value`` lines, the important first."""
    names = [name for name in SHOW_ORDER if name in doc]
    names += sorted(name for name in doc if name not in SHOW_ORDER)
    pairs: list[tuple[str, str]] = []
    for name in names:
        value = doc[name]
        if name in _TIMES:
            text = output.moment(value)
        elif name == "manifest" and isinstance(value, Mapping):
            text = f"{value.get('blobCount')} blobs, {output.size(value.get('totalBytes'))}" + (
                f", {output.compact(value['products'])}" if value.get("products") else ""
            )
        else:
            text = output.compact(value)
        pairs.append((name, text))
        if name == "phase" and (doc.get("graphStatus") or doc.get("progress") is not None):
            pairs.append(("graph", output.graph(doc)))
    return [(name, text) for name, text in pairs if name not in {"graphStatus", "progress"}]


@cli.command(name="watch")
@click.argument("request_ids", nargs=-1, required=True)
@click.option(
    "--interval", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
    help="Seconds between two polls.",
)  # fmt: skip
@click.option(
    "--timeout", "wait", type=click.FloatRange(min=0), default=3600.0, show_default=True,
    help="Give up after this many seconds (0: never).",
)  # fmt: skip
@_json_option
@_handled
def watch_(
    settings: Settings,
    out: output.Output,
    request_ids: tuple[str, ...],
    interval: float,
    wait: float,
) -> int:
    """Follow DSRs until all are terminal; non-zero if any did not complete."""
    client = settings.client()
    view: watch.View
    if out.json_mode:
        view = watch.JsonView()
    elif out.interactive:
        view = watch.LiveView(list(dict.fromkeys(request_ids)), out.console)
    else:
        view = watch.PlainView()
    outcome = watch.watch(
        client, request_ids, view, interval=interval, timeout=wait if wait > 0 else None
    )
    if not out.json_mode:
        if out.interactive:
            for tracked in outcome.tracked:
                out.line(watch.describe(tracked))
        if outcome.timed_out:
            waiting = [t.request_id for t in outcome.tracked if not t.done]
            out.info(f"gave up waiting after {wait:g} s: {', '.join(waiting)} still running")
        out.line(outcome.summary())
    return outcome.exit_code


# -- acting --------------------------------------------------------------------------------
_REASON = click.option(
    "--reason", required=True, help="Why (sent with the action; see docs/dsrctl.md)."
)


@cli.command()
@click.argument("request_id")
@_REASON
@_json_option
@_handled
def cancel(settings: Settings, out: output.Output, request_id: str, reason: str) -> int:
    """Cancel a DSR still running (POST /api/exports/{id}/cancel)."""
    doc = settings.client().cancel(request_id, reason)
    if out.json_mode:
        out.json(doc)
    else:
        out.line(f"{doc.get('requestId')}: cancel requested (was {doc.get('phase')})")
    return output.EXIT_OK


@cli.command()
@click.argument("request_id")
@_REASON
@_json_option
@_handled
def retry(settings: Settings, out: output.Output, request_id: str, reason: str) -> int:
    """Start a failed or timed-out DSR again (POST /api/exports/{id}/retry)."""
    doc = settings.client().retry(request_id, reason)
    if out.json_mode:
        out.json(doc)
    else:
        attempt = doc.get("attempt")
        out.line(
            f"{doc.get('requestId')}: retry accepted"
            + (f" (attempt {attempt})" if attempt is not None else "")
            + f", phase {doc.get('phase')}"
        )
    return output.EXIT_OK


@cli.command()
@click.argument("request_id")
@_REASON
@click.option("--days", type=click.IntRange(min=1), help="Extend the deadline by N days.")
@click.option("--months", type=click.IntRange(min=1), help="Extend the deadline by N months.")
@click.option("--reason-code", help="A short code for the reason (for reports).")
@_json_option
@_handled
def extend(
    settings: Settings,
    out: output.Output,
    request_id: str,
    reason: str,
    days: int | None,
    months: int | None,
    reason_code: str | None,
) -> int:
    """Extend a DSR's legal deadline (POST /api/exports/{id}/extend)."""
    if (days is None) == (months is None):
        raise click.UsageError("give either --days N or --months N")
    doc = settings.client().extend(
        request_id, reason, days=days, months=months, reason_code=reason_code
    )
    if out.json_mode:
        out.json(doc)
    else:
        # Accepted, pending: the DSR applies asks in turn, so the new deadline shows in its
        # status (``dsrctl show``), not here.
        asked = doc.get("asked") if isinstance(doc.get("asked"), dict) else {}
        amount = ", ".join(
            f"{value} {unit[:-1] if value == 1 else unit}" for unit, value in (asked or {}).items()
        )
        out.line(
            f"{doc.get('requestId')}: extension {doc.get('askId')} ({amount}) accepted, "
            f"pending; see `dsrctl show {doc.get('requestId')}` for the new deadline"
        )
    return output.EXIT_OK


@cli.command(name="download")
@click.argument("request_id")
@click.option(
    "--to",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to download into (created if need be).",
)
@_json_option
@_handled
def download_(settings: Settings, out: output.Output, request_id: str, folder: Path) -> int:
    """Download a completed export and verify it against its manifest
    (POST /api/exports/{id}/download)."""
    grant = settings.client().download_grant(request_id)
    if isinstance(grant.get("links"), list):
        return _download_package(settings, out, grant, folder)
    url = grant.get("url")
    if not isinstance(url, str) or not url:
        raise ApiError(201, "Unexpected answer", "the download answer carries no url")
    if not out.json_mode:
        out.info(
            f"container {grant.get('container')}, link valid until "
            f"{output.moment(grant.get('expiresAt'))}"
        )
    source = download.open_container(url, verify=settings.ca_bundle or True)
    del url, grant["url"]  # the secret goes no further
    report = _download_with_display(out, source, folder)
    if out.json_mode:
        out.json({**grant, "requestId": grant.get("requestId", request_id), **report.to_dict()})
    else:
        for check in report.checks:
            if not check.ok:
                out.line(f"FAILED {check.name}: {check.problem}")
        out.line(report.summary())
    return output.EXIT_OK if report.ok else output.EXIT_FAILED


def _download_package(
    settings: Settings, out: output.Output, grant: dict[str, Any], folder: Path
) -> int:
    """The subject's package: each part's file, checked against the SHA-256 the service
    recorded (``dsrctl verify`` then checks the package itself)."""
    links = [link for link in grant.pop("links") if isinstance(link, dict)]
    grant.pop("url", None)  # the secrets go no further than the fetch
    results = []
    for link in links:
        part = str(link.get("part") or "")
        got = download.fetch_part(
            str(link.get("url") or ""),
            folder,
            part,
            link.get("sha256") if isinstance(link.get("sha256"), str) else None,
            verify=settings.ca_bundle or True,
        )
        results.append(got)
        if not out.json_mode:
            state = "ok" if got.ok else f"FAILED: {got.problem}"
            out.line(f"{output.printable(part)}: {got.size} bytes, {state}")
    ok = all(item.ok for item in results)
    if out.json_mode:
        out.json({**grant, "parts": [item.to_dict() for item in results], "ok": ok})
    elif ok:
        out.line(f"package saved in {output.printable(folder)}; check it: dsrctl verify")
    return output.EXIT_OK if ok else output.EXIT_FAILED


@cli.command(name="review")
@click.argument("request_id")
@click.option(
    "--withhold",
    "withhold",
    multiple=True,
    metavar="SHA256=REASON",
    help="Withhold the file of this SHA-256 with a reason code (OTHERS_RIGHTS, "
    "LEGAL_PRIVILEGE, NOT_SUBJECT_DATA); repeatable; the list replaces the one before.",
)
@click.option("--keep-all", is_flag=True, help="Withhold nothing (clears the list).")
@click.option("--approve", is_flag=True, help="Approve the package for release.")
@_json_option
@_handled
def review_(
    settings: Settings,
    out: output.Output,
    request_id: str,
    withhold: tuple[str, ...],
    keep_all: bool,
    approve: bool,
) -> int:
    """List the package's files for review; withhold files; approve it
    (GET/POST /api/exports/{id}/package/review, PACKAGE_REVIEW=required)."""
    client = settings.client()
    if withhold and keep_all:
        raise click.UsageError("give --withhold or --keep-all, not both")
    chosen: list[dict[str, str]] | None = [] if keep_all else None
    for item in withhold:
        sha, sep, code = item.partition("=")
        if not sep or not sha or not code:
            raise click.UsageError(f"--withhold {item!r}: expected SHA256=REASON")
        chosen = (chosen or []) + [{"sha256": sha.strip().lower(), "reasonCode": code.strip()}]
    if chosen is None and not approve:
        doc = client.review(request_id)
    else:
        doc = client.decide_review(request_id, withhold=chosen, approve=approve)
    if out.json_mode:
        out.json(doc)
        return output.EXIT_OK
    held = {str(w.get("sha256")): str(w.get("reasonCode")) for w in doc.get("withheld") or []}
    rows = [
        [
            output.printable(f.get("path")),
            output.printable(f.get("size")),
            output.printable(f.get("product") or "-"),
            output.printable(f.get("sha256")),
            output.printable(held.get(str(f.get("sha256")), "")),
        ]
        for f in doc.get("files") or []
        if isinstance(f, dict)
    ]
    out.table(["PATH", "SIZE", "PRODUCT", "SHA256", "WITHHELD"], rows)
    out.line(
        f"{output.printable(doc.get('requestId'))}: review {output.printable(doc.get('state'))}, "
        f"{output.printable(doc.get('withheldCount'))} file(s) withheld"
        + (f", approved {output.moment(doc.get('approvedAt'))}" if doc.get("approved") else "")
    )
    return output.EXIT_OK


def _download_with_display(
    out: output.Output, source: download.BlobSource, folder: Path
) -> download.Report:
    if not out.interactive or out.json_mode:

        def plain(check: download.BlobCheck) -> None:
            if not out.json_mode and check.ok:
                state = "kept" if check.kept else "ok"
                out.line(f"{state:<5} {check.name}  {output.size(check.size)}")

        return download.download_all(source, folder, on_blob=plain)
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("downloading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]}"),
        console=out.console,
    ) as bar:
        task = bar.add_task("download", total=None, files="")
        done = [0, 0]

        def start(files: int, total: int) -> None:
            done[1] = files
            bar.update(task, total=total, files=f"0/{files} files")

        def blob(check: download.BlobCheck) -> None:
            done[0] += 1
            bar.update(task, files=f"{done[0]}/{done[1]} files")

        return download.download_all(
            source,
            folder,
            on_start=start,
            on_bytes=lambda count: bar.update(task, advance=count),
            on_blob=blob,
        )


@cli.command(name="evidence")
@click.argument("request_id")
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the evidence document (JSON) here, e.g. for python -m dsr_export.evidence_cli.",
)
@click.option("--head", help="The hash the log must end at (kept from an earlier check).")
@_json_option
@_handled
def evidence_(
    settings: Settings,
    out: output.Output,
    request_id: str,
    out_file: Path | None,
    head: str | None,
) -> int:
    """Fetch a DSR's evidence log and verify its hash chain here too
    (GET /api/exports/{id}/evidence); non-zero if it is broken."""
    document = settings.client().evidence(request_id)
    if out_file is not None:
        out_file.write_text(output.json_text(document) + "\n")
    result = evidence_check.check(document, request_id, head=head)
    if out.json_mode:
        out.json(document)
        return output.EXIT_OK if result.ok else output.EXIT_FAILED
    out.table(["SEQ", "AT", "KIND", "DATA"], evidence_check.rows(document))
    for text in result.lines():
        out.line(text)
    if out_file is not None:
        out.info(f"saved to {out_file}")
    return output.EXIT_OK if result.ok else output.EXIT_FAILED


@cli.command()
@click.argument("request_id")
@_REASON
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@_handled
def erase(settings: Settings, out: output.Output, request_id: str, reason: str, yes: bool) -> int:
    """Delete a DSR's exported data for good (DELETE /api/exports/{id}/data); the evidence
    log and a deletion receipt remain."""
    if not yes:
        if not out.interactive or not is_interactive(sys.stdin):
            raise click.UsageError("erase deletes the exported data for good: add --yes")
        click.confirm(
            f"Delete the exported data of {output.printable(request_id)} for good?", abort=True
        )
    receipt = settings.client().erase(request_id, reason)
    if out.json_mode:
        out.json(receipt)
        return output.EXIT_OK
    out.line(
        f"{receipt.get('requestId')}: erased {receipt.get('blobCount')} blob(s), "
        f"{output.size(receipt.get('totalBytes'))} at {output.moment(receipt.get('deletedAt'))}"
    )
    out.pairs([(name, output.compact(value)) for name, value in receipt.items()])
    return output.EXIT_OK


@cli.command("verify")
@click.argument("package", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--jwks",
    metavar="URL|FILE",
    help="The organisation's public keys (a JWK Set): a file kept offline, or a URL such as "
    "https://<app>/api/.well-known/jwks.json. Default: the service --url names.",
)
@_json_option
@_handled
def verify_(settings: Settings, out: output.Output, package: Path, jwks: str | None) -> int:
    """Check a subject's package: every file against manifest.json, the manifest against
    receipt.jws, and the receipt's signature against the public keys. Exit 0 when all hold,
    1 naming each difference. Needs no account; works offline with --jwks FILE."""
    outcome = verify.verify(
        package, jwks=jwks, service_url=settings.url, verify_tls=settings.ca_bundle or True
    )
    if out.json_mode:
        out.json(outcome.document())
    else:
        for text in outcome.lines():
            out.line(text)
    return output.EXIT_OK if outcome.check.ok else output.EXIT_FAILED


def main() -> None:
    """The console script's entry point."""
    # The Azure SDKs log to the root logger's last resort (standard error) when nothing is
    # configured; what matters is printed by the commands themselves, one line per failure.
    logging.getLogger("azure").setLevel(logging.ERROR)
    cli(prog_name="dsrctl")


# The tenant registry's commands live in their own module, which registers them on ``cli``
# (imported last: it builds on the group and helpers above).
from dsrctl.tenant_commands import bindings as _bindings  # noqa: E402
from dsrctl.tenant_commands import tenants as _tenants  # noqa: E402

cli.add_command(_tenants)
cli.add_command(_bindings)

# The submit gate's view (``dsrctl gate``), likewise in its own module.
from dsrctl.gate_command import gate as _gate  # noqa: E402

cli.add_command(_gate)
