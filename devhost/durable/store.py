"""SQLite persistence for the durable engine.

Everything an orchestration owns (its row, history, inbox, activity work items) lives in one
file so that a host killed at any point resumes from the last committed transaction, the way
the Azure Storage backend resumes from its tables and queues. Every method is one
transaction; the engine never sees a half-applied episode.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost._state import LockHeldError, hold_lock, release_lock

TERMINAL = frozenset({"Completed", "Failed", "Terminated"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 0,
    tasks TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS instances_created ON instances (created_time);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    visible_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    task_id INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (visible_at, id);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT
);
"""


class StoreLockedError(RuntimeError):
    """Another engine already owns this SQLite file."""


class InstanceExistsError(RuntimeError):
    """start_new on an instance id that is still Pending, Running or Suspended."""


@dataclass
class Instance:
    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: str
    last_updated_time: str
    next_seq: int = 0
    tasks: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    id: int
    instance_id: str
    execution_id: str
    visible_at: str
    kind: str
    task_id: int | None
    body: dict[str, Any]


@dataclass(frozen=True)
class NewMessage:
    kind: str
    visible_at: str
    body: dict[str, Any]
    task_id: int | None = None


@dataclass(frozen=True)
class ActivityItem:
    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


@dataclass(frozen=True)
class NewActivity:
    task_id: int
    name: str
    input: str | None


@dataclass(frozen=True)
class Send:
    """A message from one instance to another (an entity operation, an entity's answer);
    ``execution_id`` pins it to that execution of the target (None: whichever is current)."""

    target: str
    message: NewMessage
    execution_id: str | None = None


#: Entities live in the instances table under ``@name@key`` with this execution id; their
#: serialised state is the ``input`` column.
ENTITY_EXECUTION = "entity"


@dataclass
class Episode:
    """Everything one orchestration episode changes, applied atomically."""

    instance: Instance
    consumed_message: int | None
    events: list[dict[str, Any]]
    reset_history: bool = False
    messages: list[NewMessage] = field(default_factory=list)
    activities: list[NewActivity] = field(default_factory=list)
    cancel_timers: list[int] = field(default_factory=list)
    drop_pending: bool = False
    sends: list[Send] = field(default_factory=list)


@dataclass(frozen=True)
class Query:
    statuses: frozenset[str] = frozenset()
    created_from: str | None = None
    created_to: str | None = None
    prefix: str | None = None


class Store:
    """One SQLite connection shared by the engine's threads behind a lock."""

    def __init__(self, db_path: str) -> None:
        self._path = db_path
        self._lock = threading.RLock()
        self._lock_fd = _acquire_file_lock(db_path + ".lock")
        try:
            self._conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except BaseException:
            release_lock(self._lock_fd)
            raise
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
            release_lock(self._lock_fd)

    @property
    def closed(self) -> bool:
        return self._closed

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError("durable store is closed")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- instances -------------------------------------------------------------------------

    def create_instance(self, inst: Instance, start: NewMessage) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT status FROM instances WHERE instance_id = ?", (inst.instance_id,)
            ).fetchone()
            if row is not None:
                if row["status"] not in TERMINAL:
                    raise InstanceExistsError(
                        f"An Orchestration instance with the status {row['status']} already exists."
                    )
                _delete_instance(db, inst.instance_id)
            _write_instance(db, inst, insert=True)
            _insert_messages(db, inst.instance_id, inst.execution_id, [start])

    def get_instance(self, instance_id: str) -> Instance | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM instances WHERE instance_id = ?", (instance_id,)
            ).fetchone()
        return None if row is None else _row_to_instance(row)

    def query(self, q: Query, *, limit: int | None = None, offset: int = 0) -> list[Instance]:
        """The instances ``q`` selects, oldest first; ``limit`` rows from ``offset`` (a page,
        read from the created-time index as the extension's backends page server-side)."""
        sql = "SELECT * FROM instances WHERE 1=1"
        args: list[Any] = []
        if q.statuses:
            sql += f" AND status IN ({','.join('?' * len(q.statuses))})"
            args += sorted(q.statuses)
        if q.created_from:
            sql += " AND created_time >= ?"
            args.append(q.created_from)
        if q.created_to:
            sql += " AND created_time <= ?"
            args.append(q.created_to)
        # Entities are instances of their own kind: an orchestration query never lists them.
        sql += " AND substr(instance_id, 1, 1) != '@'"
        if q.prefix:
            sql += " AND substr(instance_id, 1, ?) = ?"
            args += [len(q.prefix), q.prefix]
        sql += " ORDER BY created_time, instance_id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        with self._tx() as db:
            rows = db.execute(sql, args).fetchall()
        return [_row_to_instance(r) for r in rows]

    def latest_update(self) -> str | None:
        with self._tx() as db:
            row = db.execute("SELECT MAX(last_updated_time) AS latest FROM instances").fetchone()
        return None if row is None or row["latest"] is None else str(row["latest"])

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,)
            ).fetchall()
        return [json.loads(r["event"]) for r in rows]

    def purge(self, instance_ids: Sequence[str]) -> int:
        """Delete terminal instances only; a running one would lose its in-flight work."""
        deleted = 0
        with self._tx() as db:
            for instance_id in instance_ids:
                row = db.execute(
                    "SELECT status FROM instances WHERE instance_id = ?", (instance_id,)
                ).fetchone()
                if row is not None and row["status"] in TERMINAL:
                    _delete_instance(db, instance_id)
                    deleted += 1
        return deleted

    # -- orchestration inbox ---------------------------------------------------------------

    def send(self, instance_id: str, msg: NewMessage, *, allow: frozenset[str]) -> str | None:
        """Queue ``msg`` if the instance's status is in ``allow``; return the status seen."""
        with self._tx() as db:
            row = db.execute(
                "SELECT status, execution_id FROM instances WHERE instance_id = ?",
                (instance_id,),
            ).fetchone()
            if row is None:
                return None
            if row["status"] in allow:
                _insert_messages(db, instance_id, row["execution_id"], [msg])
            return str(row["status"])

    def next_message(self, now: str) -> Message | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT m.* FROM messages m JOIN instances i ON i.instance_id = m.instance_id "
                "WHERE m.visible_at <= ? AND (i.status != 'Suspended' "
                "OR m.kind IN ('terminate', 'resume')) ORDER BY m.visible_at, m.id LIMIT 1",
                (now,),
            ).fetchone()
        if row is None:
            return None
        return Message(
            id=row["id"],
            instance_id=row["instance_id"],
            execution_id=row["execution_id"],
            visible_at=row["visible_at"],
            kind=row["kind"],
            task_id=row["task_id"],
            body=json.loads(row["body"]),
        )

    def next_due(self) -> str | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT MIN(m.visible_at) AS due FROM messages m JOIN instances i "
                "ON i.instance_id = m.instance_id WHERE i.status != 'Suspended' "
                "OR m.kind IN ('terminate', 'resume')"
            ).fetchone()
        return None if row is None or row["due"] is None else str(row["due"])

    def fail_instance(self, instance_id: str, message_id: int, error: str, now: str) -> None:
        """Mark an instance Failed without replaying it: a stuck instance would hide the bug."""
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            row = db.execute(
                "SELECT status FROM instances WHERE instance_id = ?", (instance_id,)
            ).fetchone()
            if row is None or row["status"] in TERMINAL:
                return
            db.execute(
                "UPDATE instances SET status = 'Failed', output = ?, last_updated_time = ? "
                "WHERE instance_id = ?",
                (json.dumps(error), now, instance_id),
            )
            db.execute("DELETE FROM messages WHERE instance_id = ?", (instance_id,))
            db.execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))

    def drop_message(self, message_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def commit_episode(self, ep: Episode) -> None:
        inst = ep.instance
        with self._tx() as db:
            if ep.consumed_message is not None:
                db.execute("DELETE FROM messages WHERE id = ?", (ep.consumed_message,))
            if ep.reset_history:
                db.execute("DELETE FROM history WHERE instance_id = ?", (inst.instance_id,))
            if ep.drop_pending:
                db.execute("DELETE FROM messages WHERE instance_id = ?", (inst.instance_id,))
                db.execute("DELETE FROM activities WHERE instance_id = ?", (inst.instance_id,))
            for timer_id in ep.cancel_timers:
                db.execute(
                    "DELETE FROM messages WHERE instance_id = ? AND execution_id = ? "
                    "AND kind = 'timer' AND task_id = ?",
                    (inst.instance_id, inst.execution_id, timer_id),
                )
            row = db.execute(
                "SELECT COALESCE(MAX(seq), -1) AS last FROM history WHERE instance_id = ?",
                (inst.instance_id,),
            ).fetchone()
            seq = int(row["last"]) + 1
            db.executemany(
                "INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)",
                [(inst.instance_id, seq + i, json.dumps(e)) for i, e in enumerate(ep.events)],
            )
            _write_instance(db, inst, insert=False)
            _insert_messages(db, inst.instance_id, inst.execution_id, ep.messages)
            db.executemany(
                "INSERT INTO activities (instance_id, execution_id, task_id, name, input) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (inst.instance_id, inst.execution_id, a.task_id, a.name, a.input)
                    for a in ep.activities
                ],
            )
            for send in ep.sends:
                _deliver(db, send, inst.last_updated_time)

    # -- activity work items ---------------------------------------------------------------

    def next_activity(self, exclude: Sequence[int]) -> ActivityItem | None:
        sql = "SELECT * FROM activities"
        if exclude:
            sql += f" WHERE id NOT IN ({','.join('?' * len(exclude))})"
        sql += " ORDER BY id LIMIT 1"
        with self._tx() as db:
            row = db.execute(sql, list(exclude)).fetchone()
        if row is None:
            return None
        return ActivityItem(
            id=row["id"],
            instance_id=row["instance_id"],
            execution_id=row["execution_id"],
            task_id=row["task_id"],
            name=row["name"],
            input=row["input"],
        )

    def complete_activity(self, item: ActivityItem, msg: NewMessage) -> bool:
        """Swap the work item for its result message; False if it was cancelled meanwhile."""
        with self._tx() as db:
            gone = db.execute("DELETE FROM activities WHERE id = ?", (item.id,)).rowcount == 0
            if gone:
                return False
            _insert_messages(db, item.instance_id, item.execution_id, [msg])
            return True


def _acquire_file_lock(lock_path: str) -> int:
    try:
        return hold_lock(Path(lock_path))
    except LockHeldError as error:
        raise StoreLockedError(
            f"durable store {lock_path[: -len('.lock')]!r} is already used by another engine "
            f"(holder pid {error.holder}); two engines on one SQLite file would run every "
            "orchestration twice"
        ) from None


def _row_to_instance(row: sqlite3.Row) -> Instance:
    return Instance(
        instance_id=row["instance_id"],
        name=row["name"],
        execution_id=row["execution_id"],
        status=row["status"],
        input=row["input"],
        output=row["output"],
        custom_status=row["custom_status"],
        created_time=row["created_time"],
        last_updated_time=row["last_updated_time"],
        next_seq=row["next_seq"],
        tasks=json.loads(row["tasks"]),
    )


def _write_instance(db: sqlite3.Connection, inst: Instance, *, insert: bool) -> None:
    values = (
        inst.name,
        inst.execution_id,
        inst.status,
        inst.input,
        inst.output,
        inst.custom_status,
        inst.created_time,
        inst.last_updated_time,
        inst.next_seq,
        json.dumps(inst.tasks),
        inst.instance_id,
    )
    if insert:
        db.execute(
            "INSERT INTO instances (name, execution_id, status, input, output, custom_status, "
            "created_time, last_updated_time, next_seq, tasks, instance_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
    else:
        db.execute(
            "UPDATE instances SET name = ?, execution_id = ?, status = ?, input = ?, "
            "output = ?, custom_status = ?, created_time = ?, last_updated_time = ?, "
            "next_seq = ?, tasks = ? WHERE instance_id = ?",
            values,
        )


def _insert_messages(
    db: sqlite3.Connection, instance_id: str, execution_id: str, msgs: Sequence[NewMessage]
) -> None:
    db.executemany(
        "INSERT INTO messages (instance_id, execution_id, visible_at, kind, task_id, body) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (instance_id, execution_id, m.visible_at, m.kind, m.task_id, json.dumps(m.body))
            for m in msgs
        ],
    )


def _deliver(db: sqlite3.Connection, send: Send, now: str) -> None:
    """Queue ``send`` for its target; an entity comes into being with its first message, a
    message for an orchestration that is gone (or for an execution that is over) is dropped
    here or when it is handled, as in the extension."""
    target = send.target
    if target.startswith("@"):
        name = target.split("@", 2)[1]
        db.execute(
            "INSERT OR IGNORE INTO instances (instance_id, name, execution_id, status, input, "
            "output, custom_status, created_time, last_updated_time) "
            "VALUES (?, ?, ?, 'Running', NULL, NULL, NULL, ?, ?)",
            (target, name, ENTITY_EXECUTION, now, now),
        )
    row = db.execute(
        "SELECT execution_id, status FROM instances WHERE instance_id = ?", (target,)
    ).fetchone()
    if row is None or row["status"] in TERMINAL:
        return
    _insert_messages(db, target, send.execution_id or row["execution_id"], [send.message])


def _delete_instance(db: sqlite3.Connection, instance_id: str) -> None:
    for table in ("instances", "history", "messages", "activities"):
        db.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))  # noqa: S608
