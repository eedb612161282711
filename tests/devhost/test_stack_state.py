"""What the stack keeps in ``--state`` survives a kill, and a file it cannot read stops the start.

The fast clock (``clock.json``) is replaced in one step, resumes where it got (never before real
time, never behind a kill), and an empty or torn one refuses the start instead of falling back to
real time. Ports (``ports.json``) come back as they were, or the start fails saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from devhost._state import (
    PortInUseError,
    StateFileError,
    StateInUseError,
    hold_lock,
    release_lock,
    write_atomically,
)
from devhost.azurite import Azurite, AzuriteError
from devhost.stack import (
    CLOCK_FILE,
    LOCK_FILE,
    PORTS_FILE,
    REPO_ROOT,
    DevStack,
    StackOptions,
    resume_clock,
    save_clock,
    start_tenant,
)
from devhost.tls import make_tls_files

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


# -- the clock file ----------------------------------------------------------------------------


def test_the_clock_resumes_where_it_was_saved_and_never_before_real_time(tmp_path: Path) -> None:
    path = tmp_path / CLOCK_FILE
    assert resume_clock(path) is None  # a first start
    save_clock(path, T0)
    assert resume_clock(path) == T0
    past = datetime(2001, 1, 1, tzinfo=UTC)
    save_clock(path, past)
    resumed = resume_clock(path)
    assert resumed is not None
    assert resumed >= datetime.now(UTC) - timedelta(seconds=5)


def test_after_a_kill_the_clock_resumes_where_it_could_have_got_to(tmp_path: Path) -> None:
    """A periodic save says how far time gets before the next one; a kill resumes there."""
    path = tmp_path / CLOCK_FILE
    save_clock(path, T0, up_to=T0 + timedelta(hours=3))
    assert resume_clock(path) == T0 + timedelta(hours=3)
    path.write_text(json.dumps({"now": T0.isoformat()}))  # a file from before upTo existed
    assert resume_clock(path) == T0


@pytest.mark.parametrize(
    "content",
    [
        "",  # what an in-place write leaves when the host dies between truncate and write
        '{"now": "2030-01-01T00:',  # torn
        "[]",
        '{"then": "2030-01-01T00:00:00+00:00"}',
        '{"now": 5}',
        '{"now": "not a time"}',
        '{"now": "2030-01-01T00:00:00"}',  # no time zone
        '{"now": "2030-01-01T00:00:00+00:00", "upTo": "soon"}',
    ],
)
def test_an_unreadable_clock_is_an_error_naming_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / CLOCK_FILE
    path.write_text(content)
    with pytest.raises(StateFileError, match="fast clock") as raised:
        resume_clock(path)
    assert str(path) in str(raised.value)


def test_the_clock_is_replaced_in_one_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host killed while saving leaves the previous time: the new one goes to a temporary
    file in the same directory, flushed to disk before it is renamed over the old one."""
    path = tmp_path / CLOCK_FILE
    save_clock(path, T0)
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    def killed(self: Path, target: Path) -> Path:
        assert self.parent == path.parent  # a rename within the directory: atomic
        assert json.loads(self.read_text())["now"] == (T0 + timedelta(days=1)).isoformat()
        assert synced  # the content reached the disk before the rename
        raise KeyboardInterrupt  # dies here, before the rename

    monkeypatch.setattr(Path, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_clock(path, T0 + timedelta(days=1))
    monkeypatch.undo()
    assert resume_clock(path) == T0
    assert sorted(p.name for p in tmp_path.iterdir()) == [CLOCK_FILE]


def test_a_stack_refuses_to_start_on_an_unreadable_clock_and_keeps_the_file(
    tmp_path: Path,
) -> None:
    (tmp_path / CLOCK_FILE).write_text("")
    stack = DevStack(StackOptions(state_dir=tmp_path, use_local_settings=False), environ={})
    with pytest.raises(StateFileError, match="clock"):
        stack.start()
    assert (tmp_path / CLOCK_FILE).read_text() == ""  # left for a person to look at


def test_serve_says_why_it_does_not_start(tmp_path: Path) -> None:
    (tmp_path / CLOCK_FILE).write_text("")
    command = [sys.executable, "-m", "devhost", "serve", "--state", str(tmp_path), "--port", "0"]
    command += ["--settings", str(tmp_path / "none.json")]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "clock.json is unreadable (empty)" in done.stderr
    assert "Traceback" not in done.stderr
    assert "DEVHOST READY" not in done.stdout


def test_a_stopped_stack_saves_the_clock_exactly(tmp_path: Path) -> None:
    """The last save, when the stack stops (here: a start that fails once the clock runs),
    carries no slack: the next start resumes right there."""
    save_clock(tmp_path / CLOCK_FILE, T0)
    (tmp_path / PORTS_FILE).write_text("{")
    options = StackOptions(state_dir=tmp_path, use_local_settings=False, speed=1000.0)
    with pytest.raises(StateFileError, match="ports"):
        DevStack(options, environ={}).start()
    saved = json.loads((tmp_path / CLOCK_FILE).read_text())
    assert saved["now"] == saved["upTo"]
    assert datetime.fromisoformat(saved["now"]) >= T0


# -- one host per state directory ----------------------------------------------------------


def test_a_second_host_on_the_same_state_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = hold_lock(tmp_path / LOCK_FILE)  # what a running host holds
    try:
        stack = DevStack(StackOptions(state_dir=tmp_path, use_local_settings=False), environ={})
        with pytest.raises(StateInUseError, match=f"pid {os.getpid()}"):
            stack.start()
    finally:
        release_lock(first)
    again = hold_lock(tmp_path / LOCK_FILE)  # free once the first has let go
    release_lock(again)


@pytest.mark.azurite
def test_an_azurite_whose_owner_still_runs_is_left_alone(tmp_path: Path) -> None:
    with Azurite(location=tmp_path / "azurite") as running:
        with pytest.raises(AzuriteError, match="still running"):
            Azurite(location=tmp_path / "azurite").start()
        os.kill(running.pid, 0)  # untouched


# -- ports -------------------------------------------------------------------------------------


def test_an_unreadable_ports_file_stops_the_start(tmp_path: Path) -> None:
    for content in ("", '{"graphSimulator": "x"}', '{"azurite": {"blob": 99999}}'):
        (tmp_path / PORTS_FILE).write_text(content)
        stack = DevStack(StackOptions(state_dir=tmp_path, use_local_settings=False), environ={})
        with pytest.raises(StateFileError, match="ports"):
            stack.start()


def test_the_graph_simulator_does_not_move_off_a_taken_port(
    tmp_path: Path, taken_port: int
) -> None:
    (tmp_path / PORTS_FILE).write_text(json.dumps({"graphSimulator": taken_port}))
    environ = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}  # no Azurite needed
    stack = DevStack(StackOptions(state_dir=tmp_path, use_local_settings=False), environ=environ)
    with pytest.raises(PortInUseError) as raised:
        stack.start()
    message = str(raised.value)
    assert f"port {taken_port}" in message
    assert "Graph simulator" in message
    assert "still running" in message
    assert str(tmp_path / PORTS_FILE) in message
    assert json.loads((tmp_path / PORTS_FILE).read_text()) == {"graphSimulator": taken_port}


def test_the_local_tenant_keeps_its_port_and_keys_or_moves_off_a_taken_port(
    tmp_path: Path, taken_port: int
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    first = start_tenant(tls, 0, tmp_path / "entra.json")
    port, kid = first.port, first.signing_kid
    first.stop()
    again = start_tenant(tls, port, tmp_path / "entra.json")
    try:
        assert (again.port, again.signing_kid) == (port, kid), "a restart changes nothing"
    finally:
        again.stop()
    moved = start_tenant(tls, taken_port, tmp_path / "entra.json")
    try:
        assert moved.port != taken_port
        assert moved.signing_kid == kid, "the keys are kept; only the issuer's port moved"
    finally:
        moved.stop()


@pytest.mark.azurite
def test_azurite_comes_back_on_its_ports_or_says_which_is_taken(
    tmp_path: Path, taken_port: int
) -> None:
    with Azurite(location=tmp_path / "a") as first:
        ports = first.ports
    assert set(ports) == {"blob", "queue", "table"}
    with Azurite(location=tmp_path / "a", ports=ports) as again:
        assert again.ports == ports
    with pytest.raises(PortInUseError, match=f"blob port {taken_port} is in use"):
        Azurite(location=tmp_path / "b", ports={"blob": taken_port}).start()


@pytest.mark.azurite
def test_an_azurite_left_by_a_killed_host_is_ended_with_its_data_kept(tmp_path: Path) -> None:
    """SIGKILL the host: its Azurite (own session) lives on, writes lost in its log pipe, and
    must neither lose what it acknowledged nor block the next start's ports."""
    location = tmp_path / "azurite"
    child = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from azure.storage.blob import BlobServiceClient\n"
        "from devhost.azurite import Azurite\n"
        "a = Azurite(location=Path(sys.argv[1])).start()\n"
        "BlobServiceClient.from_connection_string(a.connection_string)"
        ".create_container('before-the-kill')\n"
        "print(a.pid, *a.ports.values(), flush=True)\n"
        "time.sleep(120)\n"
    )
    host = subprocess.Popen(
        [sys.executable, "-c", child, str(location)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert host.stdout is not None
    pid, *ports = (int(n) for n in host.stdout.readline().split())
    host.kill()
    host.wait(timeout=30)
    time.sleep(0.3)  # the orphan logs into a broken pipe now
    os.kill(pid, 0)  # still alive
    try:
        wanted = dict(zip(("blob", "queue", "table"), ports, strict=True))
        with Azurite(location=location, ports=wanted) as again:
            assert again.ports == wanted
            names = [
                c.name
                for c in BlobServiceClient.from_connection_string(
                    again.connection_string
                ).list_containers()
            ]
        assert "before-the-kill" in names
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_state_files_are_written_owner_only_when_asked(tmp_path: Path) -> None:
    write_atomically(tmp_path / "open.json", "{}")
    write_atomically(tmp_path / "private.json", "{}", private=True)
    assert (tmp_path / "open.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
