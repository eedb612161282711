"""``dsrctl watch ID...``: poll DSRs until every one is terminal (or the wait's deadline).

On a terminal a live table shows each DSR's phase, Graph's progress bar and its days left; with
no terminal (CI, a pipe) it prints one plain line per change instead, and with ``--json`` one
status document per change (JSON lines). The poll loop is the same for all three.

A DSR the service does not know (404) is given up at once; a network error or a 5xx while
polling is reported and polled again (a long watch outlives a host restart); any other refusal
(no key, no role) ends the watch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from dsrctl import output
from dsrctl.client import ApiClient, ApiError, NetworkError


@dataclass
class Tracked:
    """One watched DSR: its last status document, or why it was given up."""

    request_id: str
    doc: dict[str, Any] | None = None
    lost: str | None = None

    @property
    def done(self) -> bool:
        return self.lost is not None or bool(self.doc and self.doc.get("terminal"))

    @property
    def phase(self) -> str:
        if self.lost is not None:
            return "unknown"
        return str(self.doc.get("phase")) if self.doc else "?"

    @property
    def succeeded(self) -> bool:
        return self.lost is None and self.phase == "completed"


class View(Protocol):
    """How the watch shows what it sees."""

    def update(self, tracked: Tracked) -> None: ...

    def problem(self, text: str) -> None: ...

    def close(self) -> None: ...


def signature(doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """What counts as a change worth a line."""
    return (
        doc.get("phase"),
        doc.get("graphStatus"),
        doc.get("progress"),
        doc.get("daysLeft"),
        doc.get("overdue"),
        (doc.get("error") or {}).get("code") if isinstance(doc.get("error"), dict) else None,
    )


def describe(tracked: Tracked) -> str:
    """``RITM1: exporting  graph running 40%  days left 27`` (and the error when it failed)."""
    if tracked.lost is not None:
        return f"{tracked.request_id}: {tracked.lost}"
    doc = tracked.doc or {}
    text = f"{tracked.request_id}: {doc.get('phase')}"
    if doc.get("graphStatus") or doc.get("progress") is not None:
        text += f"  graph {output.graph(doc)}"
    left = output.days_left(doc)
    if left != "-":
        text += f"  days left {left}"
    error = doc.get("error")
    if isinstance(error, dict) and error.get("code"):
        text += f"  error {error.get('code')}"
        if error.get("message"):
            text += f": {error.get('message')}"
    return text


class PlainView:
    """One line per change: what CI logs show."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Any, ...]] = {}

    def update(self, tracked: Tracked) -> None:
        key = signature(tracked.doc or {}) if tracked.lost is None else ("lost", tracked.lost)
        if self._seen.get(tracked.request_id) != key:
            self._seen[tracked.request_id] = key
            output.echo(describe(tracked))

    def problem(self, text: str) -> None:
        output.echo(f"warning: {text}", err=True)

    def close(self) -> None:
        return None


class JsonView(PlainView):
    """One status document per change, as JSON lines."""

    def update(self, tracked: Tracked) -> None:
        key = signature(tracked.doc or {}) if tracked.lost is None else ("lost", tracked.lost)
        if self._seen.get(tracked.request_id) != key:
            self._seen[tracked.request_id] = key
            body = tracked.doc or {"requestId": tracked.request_id, "error": tracked.lost}
            output.echo_json(body, indent=False)


class LiveView:
    """A live table on a terminal: a row per DSR with Graph's progress as a bar. Its fields
    are escaped and its columns read no markup (a phase or an id is the service's text)."""

    def __init__(self, ids: Sequence[str], console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.fields[request_id]}", style="bold", markup=False),
            TextColumn("{task.fields[phase]}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[graph]}", markup=False),
            TextColumn("days left {task.fields[days]}", markup=False),
            console=console,
            auto_refresh=False,
        )
        self._tasks: dict[str, TaskID] = {
            request_id: self._progress.add_task(
                request_id,
                total=100,
                request_id=output.printable(request_id),
                phase="...",
                graph="-",
                days="-",
            )
            for request_id in ids
        }
        self._live = Live(self._progress, console=console, refresh_per_second=4)
        self._live.start()

    def update(self, tracked: Tracked) -> None:
        doc = tracked.doc or {}
        progress = doc.get("progress")
        completed = float(progress) if isinstance(progress, int | float) else 0.0
        if tracked.phase == "completed":
            completed = 100.0
        self._progress.update(
            self._tasks[tracked.request_id],
            completed=completed,
            phase=output.printable(tracked.lost or tracked.phase),
            graph=output.printable(output.graph(doc)),
            days=output.printable(output.days_left(doc)),
        )
        self._live.refresh()

    def problem(self, text: str) -> None:
        output.console_line(self._live.console, f"warning: {text}")

    def close(self) -> None:
        self._live.stop()


@dataclass
class WatchResult:
    """The watch's end: every DSR as last seen, and whether the wait ran out first."""

    tracked: list[Tracked] = field(default_factory=list)
    timed_out: bool = False

    @property
    def exit_code(self) -> int:
        if any(t.done and not t.succeeded for t in self.tracked):
            return output.EXIT_FAILED
        if self.timed_out:
            return output.EXIT_STILL_RUNNING
        return output.EXIT_OK

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for tracked in self.tracked:
            phase = tracked.phase if tracked.done else "still running"
            counts[phase] = counts.get(phase, 0) + 1
        listed = ", ".join(f"{count} {phase}" for phase, count in sorted(counts.items()))
        total = len(self.tracked)
        return f"{total} DSR{'' if total == 1 else 's'}: {listed}"


def watch(
    client: ApiClient,
    ids: Sequence[str],
    view: View,
    *,
    interval: float,
    timeout: float | None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> WatchResult:
    """Poll every DSR of ``ids`` each ``interval`` seconds until all are terminal, or
    ``timeout`` seconds passed (None: no limit). Raises :class:`ApiError` for a refusal that
    polling again cannot mend (401, 403, 400)."""
    outcome = WatchResult([Tracked(request_id) for request_id in dict.fromkeys(ids)])
    deadline = None if timeout is None else clock() + timeout
    try:
        while True:
            for tracked in outcome.tracked:
                if not tracked.done:
                    _poll(client, tracked, view)
            if all(tracked.done for tracked in outcome.tracked):
                return outcome
            if deadline is not None and clock() + interval > deadline:
                outcome.timed_out = True
                return outcome
            sleep(interval)
    finally:
        view.close()


def _poll(client: ApiClient, tracked: Tracked, view: View) -> None:
    try:
        tracked.doc = client.get(tracked.request_id)
    except NetworkError as exc:
        view.problem(f"{tracked.request_id}: {exc} (polling again)")
        return
    except ApiError as exc:
        if exc.status == 404:
            tracked.lost = f"unknown DSR ({exc.detail or exc.title})"
        elif exc.status >= 500 or exc.status == 429:
            view.problem(f"{tracked.request_id}: {exc} (polling again)")
            return
        else:
            raise
    view.update(tracked)
