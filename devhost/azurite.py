"""Run the real Azurite storage emulator (from ``node_modules``) for the offline host and tests.

Azurite rather than a fake: it enforces SAS permissions, container scope, ``spr=https``, stored
access policies and bearer tokens, which is exactly what the export flow depends on.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Self

from devhost._service import Service
from devhost._state import PortInUseError, write_atomically
from devhost.tls import TlsFiles

__all__ = ["ACCOUNT_KEY", "ACCOUNT_NAME", "Azurite", "AzuriteError", "outage_ports"]

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
_PRELOAD = Path(__file__).with_name("azurite_preload.js")
_PID_NAME = "azurite.pid"
_IN_USE = re.compile(r"EADDRINUSE[^\n]*?:(\d+)\b")


class AzuriteError(RuntimeError):
    """Azurite did not start; the message carries the tail of its log."""


class Azurite(Service):
    """One Azurite process (blob, queue, table) on loopback ports.

    Ports are passed as ``0`` so the OS picks them without a bind-then-release race; the real
    ports are read from Azurite's own "listening at" lines. ``ports`` asks for given ones
    instead (a restart keeps the account's endpoints, as an Azure account's never change); one
    that is taken raises ``PortInUseError``. Azurite runs in its own process group so ``stop()``
    can end it and anything it spawned in one go.

    With a kept ``location``, Azurite's process id is written there; a start finds an Azurite
    left running on that same location by a host that was killed (it runs in its own session,
    so it outlives a SIGKILL of its parent) and ends it first: one location, one Azurite.
    """

    def __init__(
        self,
        tls: TlsFiles | None = None,
        *,
        location: Path | None = None,
        keep_location: bool = False,
        start_timeout: float = 30.0,
        executable: Path | None = None,
        ports: Mapping[str, int] | None = None,
    ) -> None:
        unknown = set(ports or {}) - set(_SERVICES)
        if unknown:
            raise ValueError(f"ports: unknown services {sorted(unknown)}")
        self._tls = tls
        self._wanted_ports = dict(ports or {})
        self._given_location = location.resolve() if location is not None else None
        self._keep_location = keep_location or location is not None
        self._start_timeout = start_timeout
        self._executable = executable or _REPO_ROOT / "node_modules" / ".bin" / "azurite"
        self._location: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._ports: dict[str, int] = {}
        self._ports_lock = threading.Lock()
        #: Set while interrupted (an outage): the ports to come back on.
        self._interrupted: dict[str, int] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._process is not None:
            raise RuntimeError("Azurite already started")
        if not self._executable.exists():
            raise AzuriteError(f"{self._executable} not found: run `make node` (npm ci)")
        self._location = self._given_location or Path(tempfile.mkdtemp(prefix="azurite-"))
        self._location.mkdir(parents=True, exist_ok=True)
        if self._given_location is not None:
            _end_leftover(self._location)
        return self._launch(self._wanted_ports)

    def interrupt(self) -> None:
        """Stop answering, as a storage outage: Azurite ends (gracefully: what it acknowledged
        is saved) and its data and ports are kept for :meth:`resume`. Clients get "connection
        refused" meanwhile."""
        process = self._running()
        with self._ports_lock:
            self._interrupted = dict(self._ports)
        self._process = None
        atexit.unregister(self.stop)
        _kill_group(process)
        if self._pump is not None:
            self._pump.join(timeout=5)
            self._pump = None

    def resume(self, timeout: float = 15.0) -> Self:
        """End an outage: Azurite again, on the same location and ports, with its data.

        A port the OS lent meanwhile to someone's outgoing connection is waited for (those are
        short-lived); start it with :func:`outage_ports` to keep out of that range at all.
        """
        if self._interrupted is None or self._location is None:
            raise RuntimeError("Azurite is not interrupted")
        ports, self._interrupted = self._interrupted, None
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._launch(ports, keep_on_failure=True)
            except PortInUseError:
                if time.monotonic() > deadline:
                    self._interrupted = None
                    self.stop()
                    raise
                time.sleep(0.2)

    @property
    def interrupted(self) -> bool:
        """True during an outage made by :meth:`interrupt`."""
        return self._interrupted is not None

    def _launch(self, ports: Mapping[str, int], *, keep_on_failure: bool = False) -> Self:
        assert self._location is not None
        log = (self._location / _LOG_NAME).open("ab")
        self._process = subprocess.Popen(
            self._command(self._location, ports),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self._location,
            env=_node_env(),
            start_new_session=True,
        )
        assert self._process.stdout is not None
        self._pump = threading.Thread(
            target=self._pump_output, args=(self._process.stdout, log), daemon=True
        )
        self._pump.start()
        atexit.register(self.stop)  # a crashed test run must not leave Azurite behind
        if self._given_location is not None:
            owner = f"{self._process.pid} {os.getpid()}"  # Azurite's pid, and its owner's
            write_atomically(self._location / _PID_NAME, owner)
        try:
            self._wait_ready(ports)
        except PortInUseError:
            if not keep_on_failure:
                self.stop()
                raise
            process, self._process = self._process, None  # try again on the same location
            if process is not None:
                atexit.unregister(self.stop)
                _kill_group(process)
            if self._pump is not None:
                self._pump.join(timeout=5)
                self._pump = None
            raise
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End Azurite's whole process group and wait for it; idempotent."""
        process, self._process = self._process, None
        self._interrupted = None
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
    def ports(self) -> dict[str, int]:
        """The port of each service (blob, queue, table), as it listens now."""
        self._running()
        with self._ports_lock:
            return dict(self._ports)

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};TableEndpoint={self.table_endpoint};"
        )

    # -- internals -------------------------------------------------------------------------

    def _command(self, location: Path, ports: Mapping[str, int]) -> list[str]:
        command = [str(self._executable), "--skipApiVersionCheck", "--disableTelemetry"]
        command += ["--location", str(location)]
        for service in _SERVICES:
            port = str(ports.get(service, 0))
            command += [f"--{service}Host", "127.0.0.1", f"--{service}Port", port]
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

    def _wait_ready(self, wanted: Mapping[str, int]) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            process = self._running()
            if process.poll() is not None:
                if self._pump is not None:
                    self._pump.join(timeout=2)  # let the last lines reach the log
                tail = self._log_tail()
                in_use = _IN_USE.search(tail)
                if in_use and int(in_use.group(1)) in wanted.values():
                    port = int(in_use.group(1))
                    service = next(k for k, v in wanted.items() if v == port)
                    raise PortInUseError(port, f"Azurite {service} port {port} is in use")
                raise AzuriteError(f"Azurite exited with {process.returncode}: {tail}")
            with self._ports_lock:
                ports = dict(self._ports)
            if len(ports) == len(_SERVICES) and all(_accepts(p) for p in ports.values()):
                return
            time.sleep(0.05)
        raise AzuriteError(f"Azurite not ready after {self._start_timeout}s: {self._log_tail()}")

    def _endpoint(self, service: str) -> str:
        if self._interrupted is None:  # an outage keeps the account's address
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


def outage_ports() -> dict[str, int]:
    """Free ports for blob, queue and table below the OS's ephemeral range, for an Azurite that
    will be interrupted and resumed: the ephemeral ports it would get from the OS may be lent to
    an outgoing connection while it is down, and then it cannot come back on its address."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()  # noqa: S311 - spreading, not secrecy
    chosen: dict[str, int] = {}
    while len(chosen) < len(_SERVICES):
        port = rng.randrange(max(1024, low - 12000), low)
        if port in chosen.values():
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen[_SERVICES[len(chosen)]] = port
    return chosen


def _node_env() -> dict[str, str]:
    """The environment, with the preload that keeps Azurite alive (and its data) when the
    host that reads its output is killed (see azurite_preload.js)."""
    env = dict(os.environ)
    preload = f"--require {json.dumps(str(_PRELOAD))}"
    env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} {preload}".strip()
    return env


def _end_leftover(location: Path) -> None:
    """End the Azurite a killed host left running on ``location``, if its pid file names one.

    Only a process whose command line is Azurite's on this very location is touched (a
    recycled pid belonging to anything else is left alone), and only once its owner is gone:
    one still owned by a live process is in use, and that is an error.
    """
    try:
        pid, owner = (int(n) for n in (location / _PID_NAME).read_text("ascii").split())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return
    mine = str(location).encode()
    if not any(arg.endswith(b"azurite") for arg in argv) or mine not in argv:
        return
    if parent == owner:
        raise AzuriteError(
            f"Azurite (pid {pid}) of process {owner}, still running, uses {location}: "
            "one location, one Azurite"
        )
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


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
