"""Run the real Azurite storage emulator (from ``node_modules``) for the offline host and tests.

Azurite rather than a fake: it enforces SAS permissions, container scope, ``spr=https``, stored
access policies and bearer tokens, which is exactly what the export flow depends on.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Self

from devhost._service import Service
from devhost.tls import TlsFiles

__all__ = ["ACCOUNT_KEY", "ACCOUNT_NAME", "Azurite", "AzuriteError"]

ACCOUNT_NAME = "devstoreaccount1"
# The published, well-known development key (it is in Microsoft's docs; not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SERVICES = ("blob", "queue", "table")
_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at https?://[^\s:]+:(\d+)"
)
# Azurite's access log prints request URLs, and with them any SAS signature.
_SIG = re.compile(r"(?i)\bsig=[^&\s\"']*")
_LOG_NAME = "azurite.log"


class AzuriteError(RuntimeError):
    """Azurite did not start; the message carries the tail of its log."""


class Azurite(Service):
    """One Azurite process (blob, queue, table) on OS-chosen loopback ports.

    Ports are passed as ``0`` so the OS picks them without a bind-then-release race; the real
    ports are read from Azurite's own "listening at" lines. Azurite runs in its own process
    group so ``stop()`` can end it and anything it spawned in one go.
    """

    def __init__(
        self,
        tls: TlsFiles | None = None,
        *,
        location: Path | None = None,
        keep_location: bool = False,
        start_timeout: float = 30.0,
        executable: Path | None = None,
    ) -> None:
        self._tls = tls
        self._given_location = location
        self._keep_location = keep_location or location is not None
        self._start_timeout = start_timeout
        self._executable = executable or _REPO_ROOT / "node_modules" / ".bin" / "azurite"
        self._location: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._ports: dict[str, int] = {}
        self._ports_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._process is not None:
            raise RuntimeError("Azurite already started")
        if not self._executable.exists():
            raise AzuriteError(f"{self._executable} not found: run `make node` (npm ci)")
        self._location = self._given_location or Path(tempfile.mkdtemp(prefix="azurite-"))
        self._location.mkdir(parents=True, exist_ok=True)
        log = (self._location / _LOG_NAME).open("ab")
        self._process = subprocess.Popen(
            self._command(self._location),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self._location,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        self._pump = threading.Thread(
            target=self._pump_output, args=(self._process.stdout, log), daemon=True
        )
        self._pump.start()
        atexit.register(self.stop)  # a crashed test run must not leave Azurite behind
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End Azurite's whole process group and wait for it; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            atexit.unregister(self.stop)
            _kill_group(process)
        if self._pump is not None:
            self._pump.join(timeout=5)
            self._pump = None
        if self._location is not None and not self._keep_location:
            shutil.rmtree(self._location, ignore_errors=True)
        self._location = None

    # -- what clients need -----------------------------------------------------------------

    @property
    def pid(self) -> int:
        """Process (and process group) id, for tests that check nothing is left behind."""
        return self._running().pid

    @property
    def location(self) -> Path:
        if self._location is None:
            raise RuntimeError("Azurite is not running")
        return self._location

    @property
    def log_path(self) -> Path:
        return self.location / _LOG_NAME

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def blob_endpoint(self) -> str:
        return self._endpoint("blob")

    @property
    def queue_endpoint(self) -> str:
        return self._endpoint("queue")

    @property
    def table_endpoint(self) -> str:
        return self._endpoint("table")

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};TableEndpoint={self.table_endpoint};"
        )

    # -- internals -------------------------------------------------------------------------

    def _command(self, location: Path) -> list[str]:
        command = [str(self._executable), "--skipApiVersionCheck", "--disableTelemetry"]
        command += ["--location", str(location)]
        for service in _SERVICES:
            command += [f"--{service}Host", "127.0.0.1", f"--{service}Port", "0"]
        if self._tls is not None:
            command += ["--cert", str(self._tls.cert_path), "--key", str(self._tls.key_path)]
            command += ["--oauth", "basic"]
        return command

    def _pump_output(self, stream: IO[bytes], log: IO[bytes]) -> None:
        """Copy Azurite's output into the log (signatures redacted) and note its ports."""
        with log, stream:
            for raw in iter(stream.readline, b""):
                line = _SIG.sub("[sig removed]", raw.decode("utf-8", "replace"))
                log.write(line.encode())
                log.flush()
                match = _LISTENING.search(line)
                if match:
                    with self._ports_lock:
                        self._ports[match.group(1).lower()] = int(match.group(2))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            process = self._running()
            if process.poll() is not None:
                if self._pump is not None:
                    self._pump.join(timeout=2)  # let the last lines reach the log
                raise AzuriteError(f"Azurite exited with {process.returncode}: {self._log_tail()}")
            with self._ports_lock:
                ports = dict(self._ports)
            if len(ports) == len(_SERVICES) and all(_accepts(p) for p in ports.values()):
                return
            time.sleep(0.05)
        raise AzuriteError(f"Azurite not ready after {self._start_timeout}s: {self._log_tail()}")

    def _endpoint(self, service: str) -> str:
        self._running()
        with self._ports_lock:
            port = self._ports[service]
        return f"{self.scheme}://127.0.0.1:{port}/{ACCOUNT_NAME}"

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("Azurite is not running")
        return self._process

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _kill_group(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the group, then SIGKILL whatever is still there after ``grace`` seconds."""
    pgid = process.pid  # start_new_session made the child a group leader
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if process.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
