"""Files in the ``--state`` directory: written in one step, read strictly.

What the offline host keeps between runs (the fast clock, the ports of the services it starts,
the Graph simulator's operations) must survive a kill at any instant. Each file is therefore
replaced atomically (a temporary file beside it, flushed to disk, then renamed over it), so a
kill leaves the old content or the new, never a torn file. A file that is there but cannot be
read is an error, never a silent fresh start: what it held (virtual time, an operation Graph
accepted) is what the DSRs in the task hub depend on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "LockHeldError",
    "PortInUseError",
    "StateFileError",
    "StateInUseError",
    "hold_lock",
    "read_json",
    "release_lock",
    "write_atomically",
]


class StateFileError(RuntimeError):
    """A state file exists but cannot be used; the message names it and what to do."""


class PortInUseError(RuntimeError):
    """A service must come back on the port it had, and something else holds that port."""

    def __init__(self, port: int, message: str) -> None:
        super().__init__(message)
        self.port = port


class StateInUseError(RuntimeError):
    """Another running host holds the state directory."""


class LockHeldError(RuntimeError):
    """Another process holds a lock file; ``holder`` is the pid written in it."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by pid {holder}")
        self.holder = holder


def hold_lock(path: Path) -> int:
    """Take the lock file ``path`` for this process (its pid written in it); the descriptor.

    An advisory ``flock``: the kernel drops it when the process ends, however it ends, so a
    killed host never leaves anything locked. Raises LockHeldError while another holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LockHeldError(path, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def write_atomically(path: Path, text: str, *, private: bool = False) -> None:
    """Replace ``path`` with ``text`` in one step; ``private`` keeps it owner-only (0600)."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        if not private:
            tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def read_json(path: Path, *, what: str) -> Any | None:
    """The JSON in ``path``; None when there is no such file (a first start).

    Raises StateFileError when the file is there but unreadable or not JSON: ``what`` says
    what it holds, for the message.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise unreadable(path, what, str(error)) from None
    try:
        return json.loads(text)
    except ValueError as error:
        reason = "empty" if not text.strip() else f"not JSON: {error}"
        raise unreadable(path, what, reason) from None


def unreadable(path: Path, what: str, reason: str) -> StateFileError:
    return StateFileError(
        f"{path} is unreadable ({reason}). It holds {what}; starting without it would "
        "silently break the DSRs kept in this state directory, so the host does not start. "
        f"If the state is disposable, delete {path.parent} (or start with another --state)."
    )


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
