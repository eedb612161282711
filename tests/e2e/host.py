"""The offline host as the end-to-end tests run it: a child process and the settings it gets.

``python -m devhost serve`` runs the real ``function_app.py`` with the app settings Azure would
set (:func:`host_env`), wired to services that live in the test process. The fixtures that
start those services and a host per test module are in conftest.py; a test that needs a host of
its own (other roles, a restart) builds one from here.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from devhost.graph import GraphSimulator
from devhost.identity import GRAPH_RESOURCE, ManagedIdentityEndpoint
from devhost.tls import TlsFiles
from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
from dsr_export.domain import evidence
from tests.secret_scan import SECRET

REPO = Path(__file__).resolve().parents[2]
#: One Graph day passes in about 4.3 real seconds.
SPEED = 20_000.0
EXPORT_DURATION = timedelta(days=1)
GRAPH_ROLES = ("User.Export.All", "User.Read.All")
FUNCTION_KEY = "e2e-function-key"
#: A Standard Webhooks secret for the tests' callback receiver (not a real secret).
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"e2e-callback-signing-key-32-bytes").decode()
TERMINAL = {"completed", "failed", "timed_out", "cancelled"}
#: Both Graph API versions the app supports (GRAPH_API_VERSION).
API_VERSIONS = ("beta", "v1.0")
#: The version every host of the session gets unless a test says otherwise: pytest's
#: ``--graph-api-version`` (tests/conftest.py), set by tests/e2e/conftest.py at start-up.
API_VERSION = "beta"

#: Everything the suite showed a ticket or an operator (HTTP answers, callbacks received).
SEEN: list[str] = []
#: Every UPN the suite sent, so the session can check none came back (see personal_data_found).
PERSONAL: set[str] = set()
#: Every host the session started: their task hubs and logs are scanned too.
HOSTS: list[HostProcess] = []


def note_personal(*upns: str) -> None:
    """Remember UPNs the suite sends another way than through ``HostProcess.post``."""
    PERSONAL.update(upn.lower() for upn in upns)


def record_seen(text: str) -> None:
    """Remember what a ticket saw that did not come through ``HostProcess`` (callbacks)."""
    SEEN.append(text)


def personal_data_found() -> list[str]:
    """Where a UPN sent by the suite shows up outside the orchestration input and history.

    Scanned: every HTTP answer and callback, and in every host's task hub each instance's
    custom status and output (what status documents, lists and callbacks are built from), and
    the host log. The orchestration input and the user lookup's activity input are allowed to
    hold the UPN: the app needs it to resolve the user.
    """
    places: list[tuple[str, str]] = [(f"answer {i}", text) for i, text in enumerate(SEEN)]
    for host in HOSTS:
        db = Path(host.endpoints.get("taskHub", ""))
        if db.is_file():
            with sqlite3.connect(db) as connection:
                rows = connection.execute(
                    "SELECT instance_id, custom_status, output FROM instances"
                ).fetchall()
            for instance_id, custom, output in rows:
                places.append(
                    (f"{db.name}:{instance_id} custom status/output", f"{custom} {output}")
                )
        if host.log_path.exists():
            places.append((str(host.log_path), host.log_path.read_text(errors="replace")))
    return [
        f"{where}: {upn}"
        for where, text in places
        for upn in sorted(PERSONAL)
        if upn in text.lower()
    ]


def secrets_in_host_logs() -> list[str]:
    """Lines of any host's log (its own process: the pytest secret scan never sees them) that
    carry a SAS signature or a bearer token."""
    found: list[str] = []
    for host in HOSTS:
        if host.log_path.exists():
            text = host.log_path.read_text(errors="replace")
            found += [
                f"{host.log_path}: {line[:200]}"
                for line in text.splitlines()
                if SECRET.search(line)
            ]
    return found


#: The task hub's tables and the columns that may hold what the app was sent.
_TASK_HUB_TEXT = {
    "instances": ("input", "output", "custom_status"),
    "history": ("event",),
    "messages": ("body",),
    "activities": ("input",),
}


def task_hub_rows(instance_ids: set[str] | None = None) -> list[tuple[str, str, str]]:
    """Every row of every host's task hub as (where, instance id, text), all tables: the
    instances, their histories, queued messages and activity work items (only those of
    ``instance_ids`` when given)."""
    rows: list[tuple[str, str, str]] = []
    for host in HOSTS:
        db = Path(host.endpoints.get("taskHub", ""))
        if not db.is_file():
            continue
        with sqlite3.connect(db) as connection:
            for table, columns in _TASK_HUB_TEXT.items():
                query = f"SELECT instance_id, {', '.join(columns)} FROM {table}"  # noqa: S608
                for instance_id, *texts in connection.execute(query).fetchall():
                    if instance_ids is None or instance_id in instance_ids:
                        text = " ".join(str(t) for t in texts if t is not None)
                        rows.append((f"{db.name}:{table}", instance_id, text))
    return rows


def evidence_problems(azurite: Azurite, tls: TlsFiles) -> tuple[int, list[str], set[str]]:
    """Every evidence log in the session's storage: how many there are, what is wrong with
    them (a chain that does not verify, a log that does not start with the DSR's receipt, a UPN
    the suite sent), and the DSRs whose history they say was purged."""
    logs = export_container(azurite, tls, EVIDENCE_CONTAINER)
    if not logs.exists():  # no DSR ran in this session's storage (one module run alone)
        return 0, [], set()
    broken, checked, purged = [], 0, set()
    for blob in logs.list_blobs():
        text = logs.download_blob(blob.name).readall().decode()
        verification = evidence.verify(text.splitlines())
        checked += 1
        if not verification.ok:
            broken.append(f"{blob.name}: {verification.summary()}")
        elif verification.records and verification.records[0].kind is not evidence.Kind.RECEIVED:
            broken.append(f"{blob.name}: does not start with its receipt")
        broken += [f"{blob.name}: holds {upn}" for upn in PERSONAL if upn in text.lower()]
        purged |= {
            record.request_id
            for record in verification.records
            if record.kind is evidence.Kind.HISTORY_PURGED
        }
    return checked, broken, purged


def purged_personal_data_found(purged: set[str]) -> list[str]:
    """What the task hubs still hold after the retention run: any row of a DSR whose history
    was purged (its evidence says so), and any UPN the suite sent in a row of an instance that
    no longer exists (orphaned history, messages or work items)."""
    found = [
        f"{where}: a row of {instance_id}, whose history was purged"
        for where, instance_id, _ in task_hub_rows(purged)
    ]
    existing = {instance_id for where, instance_id, _ in task_hub_rows() if "instances" in where}
    for where, instance_id, text in task_hub_rows():
        if instance_id in existing:
            continue
        lowered = text.lower()
        found += [f"{where}:{instance_id}: {upn}" for upn in sorted(PERSONAL) if upn in lowered]
    return found


class HostProcess:
    """``python -m devhost serve`` as a child process, with its own state directory."""

    def __init__(
        self,
        state: Path,
        env: dict[str, str],
        args: tuple[str, ...] = (),
        *,
        speed: float = SPEED,
    ) -> None:
        self.state = state
        self.env = env
        self.extra_args = list(args)
        self.speed = speed
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoints: dict[str, Any] = {}
        self.log_path = state / "host.log"
        HOSTS.append(self)

    def start(self, timeout: float = 60.0) -> HostProcess:
        self.state.mkdir(parents=True, exist_ok=True)
        ready = self.state / "endpoints.json"
        ready.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"host exited:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"host not ready:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        self.endpoints = json.loads(ready.read_text())
        return self

    def command(self) -> list[str]:
        """``serve`` wired to the test process's Graph (the other services come from env)."""
        command = [sys.executable, "-m", "devhost", "serve", "--port", "0"]
        command += ["--function-key", FUNCTION_KEY, "--speed", str(self.speed)]
        command += ["--graph", self.env["GRAPH_BASE_URL"], "--state", str(self.state)]
        return command + self.extra_args

    def kill(self) -> None:
        """Die mid-work, as a recycled worker does: no clean-up at all."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def api(self) -> str:
        return str(self.endpoints["api"])

    def post(self, path: str, body: object, **kwargs: Any) -> requests.Response:
        headers = {"x-functions-key": FUNCTION_KEY, **kwargs.pop("headers", {})}
        if isinstance(body, dict) and "@" in str(body.get("user", "")):
            note_personal(str(body["user"]))
        answer = requests.post(
            f"{self.api}{path}", json=body, headers=headers, timeout=30, **kwargs
        )
        SEEN.append(answer.text)
        return answer

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        answer = requests.get(
            f"{self.api}{path}",
            headers={"x-functions-key": FUNCTION_KEY, **(headers or {})},
            timeout=30,
        )
        SEEN.append(answer.text)
        return answer

    def token(self, roles: list[str], kind: str = "application", **extra: str) -> str:
        """A caller token of the offline host's local Entra tenant (``devhost/entra.py``)."""
        answer = requests.post(
            str(self.endpoints["tokenEndpoint"]),
            json={"roles": roles, "kind": kind, **extra},
            headers={"x-functions-key": FUNCTION_KEY},
            timeout=30,
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def wait_for(self, request_id: str, phases: set[str], timeout: float = 90.0) -> dict[str, Any]:
        """Poll the status API until the DSR reaches one of ``phases``."""
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = self.get(f"/exports/{request_id}")
            if response.status_code == 200:
                doc = response.json()
                if doc["phase"] in phases:
                    return doc
            time.sleep(0.1)
        raise AssertionError(f"{request_id} never reached {phases}; last status: {doc}")


class ServeProcess(HostProcess):
    """``python -m devhost serve ARGS`` as a person starts it: the stack brings up its own
    Azurite, identity endpoint and Graph simulator, in the host's process (see user_env)."""

    def __init__(self, state: Path, env: dict[str, str], args: list[str]) -> None:
        super().__init__(state, env)
        self.args = list(args)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "devhost", "serve", *self.args]

    @property
    def graph(self) -> str:
        """The Graph simulator the host started (its admin API is under ``/_sim/``)."""
        return str(self.endpoints["graphSimulator"])

    def sim(self, path: str) -> Any:
        """GET the simulator's admin API: ``host.sim("stats")``."""
        answer = requests.get(
            f"{self.graph}/_sim/{path}", verify=str(self.endpoints["caBundle"]), timeout=30
        )
        answer.raise_for_status()
        return answer.json()


def user_env() -> dict[str, str]:
    """This process's environment without a setting that would point the host at a service
    (storage, identity, Graph, Azure credentials): what a developer's shell has."""
    prefixes: tuple[str, ...] = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "AzureWebJobs")
    prefixes += ("GRAPH_", "EXPORT_", "CALLBACK_", "AUTH_", "DEVHOST_", "APPLICATIONINSIGHTS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONUNBUFFERED"] = "1"
    env["GRAPH_API_VERSION"] = API_VERSION  # the session's version, not a Graph of its own
    return env


def export_container(azurite: Azurite, tls: TlsFiles, name: str) -> ContainerClient:
    """An export container as its owner sees it (account key), to check what the app did."""
    return BlobServiceClient(
        azurite.blob_endpoint,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
        connection_verify=tls.ca_bundle,
    ).get_container_client(name)


def identity_with_roles(graph: GraphSimulator, roles: tuple[str, ...]) -> ManagedIdentityEndpoint:
    """A managed-identity endpoint whose tokens for Graph (and the simulator) carry ``roles``."""
    return ManagedIdentityEndpoint(roles={GRAPH_RESOURCE: roles, graph.base_url: roles})


def host_env(
    azurite: Azurite,
    identity: ManagedIdentityEndpoint,
    graph: GraphSimulator,
    tls: TlsFiles,
    *,
    api_version: str | None = None,
) -> dict[str, str]:
    """The app settings of a host wired to these services, as Azure would set them
    (``api_version``: GRAPH_API_VERSION, the session's own by default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
    env.update(identity.env())
    env.update(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "EXPORT_STORAGE_BLOB_ENDPOINT": azurite.blob_endpoint,
            "EXPORT_SAS_MODE": "stored-policy",
            "EXPORT_STORAGE_ACCOUNT_KEY": ACCOUNT_KEY,
            "GRAPH_BASE_URL": graph.base_url,
            "GRAPH_API_VERSION": api_version or API_VERSION,
            "REQUESTS_CA_BUNDLE": tls.ca_bundle,
            "EXPORT_POLL_MAX_INTERVAL_SECONDS": "3600",
            "CALLBACK_SIGNING_SECRET": CALLBACK_SECRET,
            "CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
            # The tests' callback receivers listen on loopback, on random ports.
            "CALLBACK_ALLOW_LOOPBACK_UNSAFE": "true",
            # Function-key callers may do everything here; the role tests use Entra tokens.
            "AUTH_FUNCTION_KEY_ROLES": "DSR.Submit,DSR.Read,DSR.Manage",
            # The subject's package needs the organisation's profile: the docs' sample.
            "ORGANISATION_PROFILE": "docs/organisation.sample.json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env
