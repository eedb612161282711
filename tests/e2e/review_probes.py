"""The third hostile review's probe campaign (issue 17), scripted: ``make probes`` (``python -m
tests.e2e.review_probes``) starts an offline host and re-runs the review's probe families.

The review ran 326 probes by hand against the offline host (lifecycle routes, roles and keys,
the admin API, dsrctl, personal data, retention, abuse); 40 did not hold (F-1..F-13,
I-1..I-6). Each finding has its regression test in the suite; this module re-runs the probes
themselves, families of them generated where the review tried many shapes, so that "the
review's probes would hold" is a command and a table, not a claim. A probe *holds* when the
app does what the finding's fix promises; any other answer, an exception included, is a
probe that does not hold, named in the table (exit 1).

The host is driven as the end-to-end tests drive it (tests/e2e/host.py, the helpers of
test_lifecycle.py and test_dsrctl.py): a host whose function key may do everything, a strict
host where every right comes from an Entra token the app validates itself, and, for retention,
a host with short retention periods. ``tests/e2e/test_review_probes.py`` runs a seeded sample
of the fast probes in ``make test``; the whole campaign takes a few minutes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import jwt
import requests
from azure.storage.queue import QueueClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from urllib3.util import parse_url

from devhost.azurite import Azurite
from devhost.durable import FastClock
from devhost.entra import CUSTOMER_TENANTS, KEYS_FILE, TENANT_ID, EntraTenant
from devhost.graph import DEMO_DIRECTORY, GRAPH_RESOURCE, GraphSimulator
from devhost.graph.tenancy import customer_directory
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles, make_tls_files, server_ssl_context
from dsr_export.adapters import outbound
from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
from dsr_export.adapters.graph_errors import GraphError
from dsr_export.adapters.queue_retention import POISON_QUEUE
from dsr_export.adapters.rejections import REJECTED_QUEUE
from dsr_export.domain import dsr_keys, evidence, lifecycle
from dsr_export.domain.callers import from_function_key
from dsr_export.domain.errors import CallbackRefused
from dsr_export.settings import EntraSettings, GraphSettings, SettingsError
from tests.e2e.host import (
    EXPORT_DURATION,
    FUNCTION_KEY,
    GRAPH_ROLES,
    PERSONAL,
    REPO,
    SPEED,
    TERMINAL,
    HostProcess,
    ServeProcess,
    evidence_problems,
    export_container,
    host_env,
    identity_with_roles,
    note_personal,
    personal_data_found,
    purged_personal_data_found,
    record_seen,
    task_hub_rows,
    user_env,
)
from tests.e2e.test_dsrctl import dsrctl
from tests.e2e.test_lifecycle import _applied, _delete, _plus_days, _records, _rid, _sweep, _user
from tests.unit.test_outbound import Receiver, _graph_client

T = TypeVar("T")
ALL_ROLES = ("DSR.Submit", "DSR.Read", "DSR.Manage")
PROBLEM = "application/problem+json"
DEMO_USER = next(iter(DEMO_DIRECTORY))


class NotHeld(AssertionError):
    """The app did not do what the finding's fix promises; the message says what it did."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise NotHeld(message)


# -- the campaign ------------------------------------------------------------------------------
@dataclass
class Campaign:
    """The running hosts and services the probes drive, and what probes share (scenarios run
    once, tokens minted once)."""

    host: HostProcess
    strict: HostProcess
    graph: GraphSimulator
    azurite: Azurite
    tls: TlsFiles
    identity: ManagedIdentityEndpoint
    work: Path
    started: list[HostProcess] = field(default_factory=list)
    memo: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def once(self, key: str, make: Callable[[], T]) -> T:
        """``make()`` the first time ``key`` is asked for; its result (or its failure) after."""
        if key not in self.memo:
            try:
                self.memo[key] = ("ok", make())
            except Exception as exc:  # noqa: BLE001 - every probe of the scenario reports it
                self.memo[key] = ("failed", exc)
        state, value = self.memo[key]
        if state == "failed":
            raise NotHeld(f"scenario {key} failed: {type(value).__name__}: {value}") from value
        return value  # type: ignore[no-any-return]

    def retention_host(self) -> HostProcess:
        """A host with short retention periods (days on the fast clock), started on demand."""

        def start() -> HostProcess:
            env = host_env(self.azurite, self.identity, self.graph, self.tls)
            env.update(
                EXPORT_RETENTION_DAYS="1",
                HISTORY_RETENTION_DAYS="2",
                QUEUE_RETENTION_DAYS="1",
                EVIDENCE_STORAGE_BLOB_ENDPOINT=self.azurite.blob_endpoint,
            )
            process = HostProcess(self.work / "retention", env).start()
            self.started.append(process)
            return process

        return self.once("retention host", start)

    def close(self) -> None:
        for process in self.started:
            process.stop()


def strict_env(env: dict[str, str]) -> dict[str, str]:
    """A host where a function key alone grants nothing (start it with
    ``--no-platform-auth``): every right comes from a token the app validated itself."""
    env = dict(env)
    env["AUTH_FUNCTION_KEY_ROLES"] = "none"
    env.pop("WEBSITE_AUTH_ENABLED", None)
    return env


@contextlib.contextmanager
def offline_campaign(work: Path) -> Iterator[Campaign]:
    """The services the e2e conftest starts, here for a run outside pytest."""
    tls = make_tls_files(work / "tls")
    clock = FastClock(SPEED)
    with (
        Azurite(tls) as azurite,
        GraphSimulator(
            tls, clock=clock.now, export_duration=EXPORT_DURATION, seed=17, tick_interval=0.2
        ) as graph,
        identity_with_roles(graph, GRAPH_ROLES) as identity,
    ):
        env = host_env(azurite, identity, graph, tls)
        host = HostProcess(work / "host", env).start()
        strict = HostProcess(work / "strict", strict_env(env), ("--no-platform-auth",))
        campaign = Campaign(host, strict.start(), graph, azurite, tls, identity, work)
        try:
            yield campaign
        finally:
            campaign.close()
            strict.stop()
            host.stop()


# -- probes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    family: str
    name: str
    check: Callable[[Campaign], None]
    #: Seconds, not minutes, and no scenario of its own: may be in the make-test sample.
    fast: bool = True


@dataclass(frozen=True)
class Outcome:
    probe: Probe
    held: bool
    why: str = ""


def run(campaign: Campaign, probes: Iterable[Probe]) -> list[Outcome]:
    outcomes = []
    for probe in probes:
        try:
            probe.check(campaign)
        except Exception as exc:  # noqa: BLE001 - a probe that raises did not hold
            why = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            outcomes.append(Outcome(probe, False, why[:400]))
        else:
            outcomes.append(Outcome(probe, True))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """Family, probes, held, not held; then each probe that did not hold, and why."""
    families: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        families.setdefault(outcome.probe.family, []).append(outcome)
    lines = [f"{'family':<16} {'probes':>6} {'held':>6} {'not held':>8}"]
    for family, done in families.items():
        held = sum(o.held for o in done)
        lines.append(f"{family:<16} {len(done):>6} {held:>6} {len(done) - held:>8}")
    held = sum(o.held for o in outcomes)
    lines.append(f"{'total':<16} {len(outcomes):>6} {held:>6} {len(outcomes) - held:>8}")
    lines += [
        f"NOT HELD {o.probe.family} / {o.probe.name}: {o.why}" for o in outcomes if not o.held
    ]
    return "\n".join(lines)


def sample(probes: list[Probe], size: int, seed: int) -> list[Probe]:
    """``size`` fast probes, seeded, taken from the families in turn (a few of each, not
    mostly roles, the largest family); in campaign order."""
    shuffle = random.Random(seed)  # noqa: S311 - a sample, not a secret
    families: dict[str, list[Probe]] = {}
    for probe in probes:
        if probe.fast:
            families.setdefault(probe.family, []).append(probe)
    for members in families.values():
        shuffle.shuffle(members)
    chosen: list[Probe] = []
    while len(chosen) < size and any(families.values()):
        for members in families.values():
            if members and len(chosen) < size:
                chosen.append(members.pop())
    return sorted(chosen, key=probes.index)


# -- HTTP as a caller sends it -----------------------------------------------------------------
def call(
    host: HostProcess,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
    *,
    key: bool = True,
) -> requests.Response:
    """One request to the host's API (``path`` after ``/api``, sent as written)."""
    sent = {"x-functions-key": FUNCTION_KEY} if key else {}
    sent.update(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    answer = requests.request(method, f"{host.api}{path}", data=data, headers=sent, timeout=30)
    record_seen(answer.text)
    return answer


def _pointers(answer: requests.Response) -> list[str]:
    try:
        errors = answer.json().get("errors") or []
    except ValueError:
        return []
    return [str(e.get("pointer")) for e in errors if isinstance(e, dict)]


def _status_of(host: HostProcess, request_id: str, wanted: Callable[[dict[str, Any]], bool]) -> Any:
    """Poll the status until ``wanted(doc)`` (60 s)."""
    deadline = time.monotonic() + 60
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = host.get(f"/exports/{request_id}")
        if answer.status_code == 200:
            doc = answer.json()
            if wanted(doc):
                return doc
        time.sleep(0.1)
    raise NotHeld(f"{request_id}: never as wanted; last status {doc}")


# -- roles: each route x each kind of caller (strict host) -------------------------------------
@dataclass(frozen=True)
class Route:
    method: str
    path: str
    role: str
    body: Callable[[], object] = lambda: None


def _submit_body() -> object:
    return {"requestId": _rid("ROLE"), "user": str(uuid.uuid4())}


ROUTES = (
    Route("POST", "/exports", "DSR.Submit", _submit_body),
    Route("GET", "/exports", "DSR.Read"),
    Route("GET", "/exports/{id}", "DSR.Read"),
    Route("GET", "/exports/{id}/evidence", "DSR.Read"),
    Route("POST", "/exports/{id}/cancel", "DSR.Manage", lambda: {"reason": "probe"}),
    Route("POST", "/exports/{id}/download", "DSR.Manage"),
    Route("POST", "/exports/{id}/extend", "DSR.Manage", lambda: {"reason": "probe", "days": 1}),
    Route("POST", "/exports/{id}/retry", "DSR.Manage", lambda: {"reason": "probe"}),
    Route("DELETE", "/exports/{id}/data", "DSR.Manage", lambda: {"reason": "probe"}),
    Route("GET", "/exports/{id}/package", "DSR.Read"),
    Route("POST", "/exports/{id}/package", "DSR.Manage"),
    Route("GET", "/exports/{id}/package/review", "DSR.Manage"),
    Route("POST", "/exports/{id}/package/review", "DSR.Manage", dict),
    Route("GET", "/gate", "DSR.Read"),  # the submit gate's operator view (issue 20)
    # The tenant registry and the callers' bindings (issue 21): DSR.Admin, which no kind holds.
    Route("GET", "/tenants", "DSR.Admin"),
    Route("GET", "/bindings", "DSR.Admin"),
    Route("PUT", "/bindings/{id}", "DSR.Admin", lambda: {"kind": "user", "tenants": "*"}),
    Route("DELETE", "/bindings/{id}", "DSR.Admin"),
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Tokens:
    """Tokens of the strict host's tenant: minted by its hook, or made wrong on purpose."""

    def __init__(self, campaign: Campaign) -> None:
        self.host = campaign.strict
        self.tenant = EntraTenant(campaign.tls, state_file=campaign.strict.state / KEYS_FILE)
        self.valid = self.host.token(list(ALL_ROLES))
        self.kid = str(jwt.get_unverified_header(self.valid)["kid"])
        self.claims: dict[str, Any] = jwt.decode(self.valid, options={"verify_signature": False})

    def signed(self, **changes: Any) -> str:
        """The valid token's claims with ``changes``, signed by the tenant's own key."""
        return self.tenant.sign({**self.claims, **changes}, kid=self.kid)

    def tampered(self) -> str:
        reader = self.host.token(["DSR.Read"])
        head, _, signature = reader.split(".")
        claims = jwt.decode(reader, options={"verify_signature": False})
        claims["roles"] = list(ALL_ROLES)
        return f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"

    def unsigned(self) -> str:
        head = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": self.kid}).encode())
        return f"{head}.{_b64(json.dumps(self.claims).encode())}."

    def hs256(self, secret: bytes) -> str:
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.kid}).encode())
        body = _b64(json.dumps(self.claims).encode())
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(mac)}"

    def public_pem(self) -> bytes:
        key = self.tenant.public_key(self.kid)
        assert key is not None
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def foreign(self, kid: str | None = None) -> str:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(self.claims, key, algorithm="RS256", headers={"kid": kid or self.kid})


def _principal(roles: Iterable[str]) -> dict[str, str]:
    claims = [
        {"typ": "appid", "val": "forged"},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TENANT_ID},
    ] + [{"typ": "roles", "val": role} for role in roles]
    forged = base64.b64encode(json.dumps({"claims": claims, "role_typ": "roles"}).encode())
    return {"X-MS-CLIENT-PRINCIPAL": forged.decode(), "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Kind:
    """A kind of caller: its headers, and what it should get: ``roles`` it holds (admitted to
    a route needing one of them, 403 otherwise), or ``refused`` (the statuses allowed)."""

    name: str
    headers: Callable[[Campaign, Tokens], dict[str, str]]
    roles: frozenset[str] = frozenset()
    refused: frozenset[int] = frozenset()
    key: bool = True


def _minted(roles: Iterable[str], **extra: str) -> Callable[[Campaign, Tokens], dict[str, str]]:
    def headers(campaign: Campaign, tokens: Tokens) -> dict[str, str]:
        name = f"token {sorted(roles)} {sorted(extra.items())}"
        token = campaign.once(name, lambda: campaign.strict.token(list(roles), **extra))
        return _bearer(token)

    return headers


_INVALID = frozenset({401})
_DENIED = frozenset({401, 403})
_EPOCH = int(time.time())

KINDS = (
    Kind("no function key", lambda c, t: {}, refused=_INVALID, key=False),
    Kind("function key, no token", lambda c, t: {}, refused=_DENIED),
    Kind("DSR.Submit token", _minted(["DSR.Submit"]), roles=frozenset({"DSR.Submit"})),
    Kind("DSR.Read token", _minted(["DSR.Read"]), roles=frozenset({"DSR.Read"})),
    Kind("DSR.Manage token", _minted(["DSR.Manage"]), roles=frozenset({"DSR.Manage"})),
    Kind("token without roles", _minted([])),
    Kind("all roles, app token", _minted(ALL_ROLES), roles=frozenset(ALL_ROLES)),
    Kind("all roles, user token", _minted(ALL_ROLES, kind="user"), roles=frozenset(ALL_ROLES)),
    Kind("all roles, v1.0 token", _minted(ALL_ROLES, version="1.0"), roles=frozenset(ALL_ROLES)),
    Kind("forged X-MS-CLIENT-PRINCIPAL", lambda c, t: _principal(ALL_ROLES), refused=_DENIED),
    Kind(
        "forged principal beside a Read token",
        lambda c, t: {**_principal(ALL_ROLES), **_minted(["DSR.Read"])(c, t)},
        roles=frozenset({"DSR.Read"}),
    ),
    Kind("tampered payload", lambda c, t: _bearer(t.tampered()), refused=_INVALID),
    Kind("alg none", lambda c, t: _bearer(t.unsigned()), refused=_INVALID),
    Kind("HS256, a guessed secret", lambda c, t: _bearer(t.hs256(b"secret")), refused=_INVALID),
    Kind(
        "HS256 keyed with the public key",
        lambda c, t: _bearer(t.hs256(t.public_pem())),
        refused=_INVALID,
    ),
    Kind(
        "expired",
        lambda c, t: _bearer(t.signed(exp=_EPOCH - 3600, iat=_EPOCH - 7200, nbf=_EPOCH - 7200)),
        refused=_INVALID,
    ),
    Kind(
        "not yet valid",
        lambda c, t: _bearer(t.signed(nbf=_EPOCH + 7200, iat=_EPOCH, exp=_EPOCH + 10800)),
        refused=_INVALID,
    ),
    Kind(
        "wrong audience", lambda c, t: _bearer(t.signed(aud="api://someone-else")), refused=_INVALID
    ),
    Kind(
        "wrong tenant",
        lambda c, t: _bearer(
            t.signed(
                tid="72f988bf-86f1-41af-91ab-2d7cd011db47",
                iss=str(t.claims["iss"]).replace(TENANT_ID, "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            )
        ),
        refused=_INVALID,
    ),
    Kind(
        "wrong issuer",
        lambda c, t: _bearer(t.signed(iss="https://sts.evil.example/" + TENANT_ID + "/")),
        refused=_INVALID,
    ),
    Kind("foreign key, same kid", lambda c, t: _bearer(t.foreign()), refused=_INVALID),
    Kind("foreign key, unknown kid", lambda c, t: _bearer(t.foreign("nope")), refused=_INVALID),
)


def _role_probe(route: Route, kind: Kind) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        tokens = campaign.once("tokens", lambda: Tokens(campaign))
        path = route.path.replace("{id}", _rid("PROBE-NONE"))
        headers = kind.headers(campaign, tokens)
        answer = call(campaign.strict, route.method, path, route.body(), headers, key=kind.key)
        said = f"{answer.status_code} {answer.text[:160]}"
        if kind.refused:
            expect(answer.status_code in kind.refused, f"expected {sorted(kind.refused)}: {said}")
        elif route.role in kind.roles:
            expect(answer.status_code not in {401, 403}, f"admitted expected: {said}")
            expect(answer.status_code < 500, f"a server error: {said}")
        else:
            expect(answer.status_code == 403, f"403 expected: {said}")
            expect(route.role in answer.json()["detail"], f"the missing role not named: {said}")
        if answer.status_code in {401, 403} and kind.key:
            expect(answer.headers["content-type"].startswith(PROBLEM), f"not a problem: {said}")

    return check


def role_probes() -> list[Probe]:
    return [
        Probe("roles", f"{r.method} {r.path} as {k.name}", _role_probe(r, k))
        for r in ROUTES
        for k in KINDS
    ]


# -- ids in the path and in the body (host) ----------------------------------------------------
ID_SHAPES = {
    "cyrillic confusable": quote("RITM-\u0410001"),
    "fullwidth": quote("\uff32\uff29\uff34\uff2d-1"),
    "zero-width space": quote("RITM\u200b-1"),
    "bidi override": quote("RITM-\u202e1"),
    "combining accent": quote("RITM-1\u0301"),
    "NUL inside": "RITM%00-1",
    "NUL alone": "%00",
    "encoded slash": "RITM%2F..%2F1",
    "encoded dot-dot": "%2E%2E",
    "encoded backslash": "RITM%5C1",
    "encoded newline": "RITM%0A1",
    "encoded space": "RITM%201",
    "overlong UTF-8 dot": "%C0%AE%C0%AE",
    "invalid UTF-8": "%FF%FE",
    "101 characters": "A" * 101,
    "4,000 characters": "A" * 4000,
}
ID_ROUTES = (
    ("GET", "/exports/{id}", None),
    ("GET", "/exports/{id}/evidence", None),
    ("POST", "/exports/{id}/cancel", {"reason": "probe"}),
    ("POST", "/exports/{id}/extend", {"reason": "probe", "days": 1}),
    ("DELETE", "/exports/{id}/data", {"reason": "probe"}),
    ("POST", "/exports/{id}/download", None),
)


def _path_id_probe(method: str, path: str, body: object, shape: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        answer = call(campaign.host, method, path.replace("{id}", shape), body)
        said = f"{answer.status_code} {answer.text[:160]}"
        expect(answer.status_code in {400, 404, 414, 431}, f"refusal expected: {said}")
        expect("Traceback" not in answer.text, f"a traceback: {said}")

    return check


def _body_id_probe(raw: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        request_id = unquote(raw)
        answer = call(campaign.host, "POST", "/exports", {"requestId": request_id, "user": "x"})
        said = f"{answer.status_code} {answer.text[:160]}"
        expect(answer.status_code == 400, f"400 expected: {said}")
        expect("/requestId" in _pointers(answer), f"requestId not named: {said}")

    return check


def _twin_probe(variant: Callable[[str], str]) -> Callable[[Campaign], None]:
    """A look-alike of an existing DSR's id reaches nothing of it."""

    def check(campaign: Campaign) -> None:
        def made() -> str:
            request_id = _rid("TWIN")
            body = {"requestId": request_id, "user": str(uuid.uuid4())}
            expect(campaign.host.post("/exports", body).status_code == 202, "twin not started")
            return request_id

        real = campaign.once("twin", made)
        answer = call(campaign.host, "GET", f"/exports/{quote(variant(real), safe='')}")
        expect(answer.status_code in {400, 404}, f"{answer.status_code} {answer.text[:160]}")

    return check


TWINS: dict[str, Callable[[str], str]] = {
    "cyrillic letter": lambda rid: rid.replace("T", "\u0422", 1),
    "fullwidth letter": lambda rid: rid.replace("T", "\uff34", 1),
    "zero-width joiner": lambda rid: rid + "\u200d",
    "trailing dot": lambda rid: rid + ".",
    "trailing space": lambda rid: rid + " ",
    "trailing NUL": lambda rid: rid + "\x00",
}


def id_probes() -> list[Probe]:
    probes = [
        Probe("ids", f"{method} {path} with {name}", _path_id_probe(method, path, body, shape))
        for name, shape in ID_SHAPES.items()
        for method, path, body in ID_ROUTES
    ]
    probes += [
        Probe("ids", f"POST /exports with requestId {name}", _body_id_probe(shape))
        for name, shape in ID_SHAPES.items()
    ]
    probes += [
        Probe("ids", f"a look-alike of an existing id: {name}", _twin_probe(variant))
        for name, variant in TWINS.items()
    ]
    return probes


# -- URL-parser shapes wherever the app takes a URL --------------------------------------------
#: Callback URLs the intake must refuse (CALLBACK_ALLOWED_HOSTS=127.0.0.1 on the test hosts,
#: loopback allowed on any port). ``P`` is a port nothing listens on.
P = 9
CALLBACK_SHAPES = {
    "userinfo before the allowed host": f"https://evil.example@127.0.0.1:{P}/cb",
    "allowed host as userinfo": f"https://127.0.0.1:{P}@evil.example/cb",
    "backslash before @": f"https://127.0.0.1:{P}\\@evil.example/cb",
    "backslash after the host": f"https://evil.example\\.127.0.0.1:{P}/cb",
    "scheme and backslashes": f"https:\\\\evil.example/{P}",
    "fragment @": f"https://evil.example#@127.0.0.1:{P}/cb",
    "query @": f"https://evil.example?@127.0.0.1:{P}/cb",
    "encoded @": f"https://127.0.0.1%40evil.example:{P}/cb",
    "encoded slash in the host": "https://127.0.0.1%2F@evil.example/cb",
    "http": f"http://127.0.0.1:{P}/cb",
    "javascript": "javascript:alert(1)",
    "file": "file:///etc/passwd",
    "scheme-relative": f"//127.0.0.1:{P}/cb",
    "no scheme": f"127.0.0.1:{P}/cb",
    "IPv6 loopback": f"https://[::1]:{P}/cb",
    "IPv4-mapped loopback": f"https://[::ffff:127.0.0.1]:{P}/cb",
    "IPv4-mapped hex": f"https://[::ffff:7f00:1]:{P}/cb",
    "IPv4-mapped metadata": "https://[::ffff:169.254.169.254]/cb",
    "6to4 metadata (I-4)": "https://[2002:a9fe:a9fe::1]/cb",
    "6to4 loopback": f"https://[2002:7f00:1::]:{P}/cb",
    "Teredo metadata": "https://[2001:0:4136:e378:8000:63bf:5601:5601]/cb",
    "NAT64 metadata": "https://[64:ff9b::a9fe:a9fe]/cb",
    "NAT64 local-use": "https://[64:ff9b:1::a9fe:a9fe]/cb",
    "IPv6 zone": f"https://[fe80::1%25eth0]:{P}/cb",
    "decimal IPv4": f"https://2130706433:{P}/cb",
    "hex IPv4": f"https://0x7f000001:{P}/cb",
    "octal IPv4": f"https://0177.0.0.1:{P}/cb",
    "short IPv4": f"https://127.1:{P}/cb",
    "metadata address": "https://169.254.169.254/latest/meta-data",
    "wire server": "https://168.63.129.16/",
    "private address": "https://10.0.0.1/cb",
    "trailing dot on another host": "https://evil.example./cb",
    "ideographic full stop": f"https://127\u30020\u30020\u30021:{P}/cb",
    "fullwidth digits": f"https://\uff11\uff12\uff17.0.0.1:{P}/cb",
    "tab in the host": f"https://127.0.0.1\t.evil.example:{P}/cb",
    "CRLF": f"https://127.0.0.1:{P}/cb\r\nHost: evil.example",
    "zero-width in the host": f"https://127.0.0.1\u200b.evil.example:{P}/cb",
    "double port": f"https://127.0.0.1:{P}:443/cb",
    "allowed name as a subdomain": "https://127.0.0.1.evil.example/cb",
    "2,049 characters": f"https://127.0.0.1:{P}/" + "a" * 2030,
}


def _allowed_by_the_sender(url: str) -> bool:
    """What the sender's parser (urllib3) would connect to is the allowlisted host."""
    try:
        parts = parse_url(url)
    except ValueError:
        return False
    host = (parts.host or "").lower().rstrip(".")
    return parts.scheme == "https" and parts.auth is None and host == "127.0.0.1"


def _callback_probe(url: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        request_id = _rid("CBURL")
        body = {"requestId": request_id, "user": str(uuid.uuid4()), "callbackUrl": url}
        answer = call(campaign.host, "POST", "/exports", body)
        said = f"{answer.status_code} {answer.text[:160]}"
        if answer.status_code == 202:
            expect(_allowed_by_the_sender(url), f"accepted a callback elsewhere: {said}")
            return
        expect(answer.status_code == 400, f"400 expected: {said}")
        expect("/callbackUrl" in _pointers(answer), f"callbackUrl not named: {said}")
        gone = call(campaign.host, "GET", f"/exports/{request_id}")
        expect(gone.status_code == 404, f"a refused submit started a DSR: {gone.status_code}")

    return check


#: Addresses a callback's host may resolve to, none of them public (the send-time check).
CALLBACK_ADDRESSES = {
    "6to4 of the metadata address": "2002:a9fe:a9fe::1",
    "6to4 of a private address": "2002:a00:1::1",
    "6to4 of loopback": "2002:7f00:1::",
    "Teredo, client metadata": "2001:0:4136:e378:8000:63bf:5601:5601",
    "Teredo, server private": "2001:0:a00:1:8000:63bf:3fff:fdd2",
    "NAT64 of the metadata address": "64:ff9b::a9fe:a9fe",
    "NAT64 of a private address": "64:ff9b::a00:1",
    "NAT64 of loopback": "64:ff9b::7f00:1",
    "local-use NAT64": "64:ff9b:1::a9fe:a9fe",
    "IPv4-mapped metadata": "::ffff:169.254.169.254",
    "IPv4-compatible metadata": "::a9fe:a9fe",
    "metadata": "169.254.169.254",
    "wire server": "168.63.129.16",
    "AWS IPv6 metadata": "fd00:ec2::254",
    "CGNAT": "100.64.0.1",
    "benchmarking": "198.18.0.1",
    "reserved": "240.0.0.1",
    "broadcast": "255.255.255.255",
    "unspecified": "0.0.0.0",  # noqa: S104 - the address under test
    "IPv6 unspecified": "::",
    "unique local": "fc00::1",
    "multicast": "ff02::1",
    "documentation": "2001:db8::1",
    "decimal, not an address": "2130706433",
}


def _address_probe(address: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        target = outbound.judge("https://dsr.wild.example/cb")
        try:
            outbound.resolve_public(target, resolver=lambda host, port: [address])
        except CallbackRefused:
            return
        raise NotHeld(f"a callback could go to {address}")

    return check


#: Where a ``Location`` (or a tampered task hub) may point Graph's bearer token. ``{g}`` is the
#: configured Graph's port on 127.0.0.1, ``{f}`` a foreign receiver's.
GRAPH_SHAPES = (
    "https://127.0.0.1:{f}/beta/dataPolicyOperations/x",
    "https://localhost:{f}/beta/dataPolicyOperations/x",
    "https://localhost:{g}/beta/dataPolicyOperations/x",
    "https://127.0.0.1:{g}@127.0.0.1:{f}/x",
    "https://127.0.0.1:{f}\\@127.0.0.1:{g}/x",
    "https://127.0.0.1:{g}\\@127.0.0.1:{f}/x",
    "https://localhost:{f}\\.127.0.0.1:{g}/x",
    "https://user:pw@127.0.0.1:{g}/x",
    "https://evil.example@127.0.0.1:{g}/x",
    "https://127.0.0.1:{f}#@127.0.0.1:{g}/x",
    "https://127.0.0.1:{f}?@127.0.0.1:{g}/x",
    "https://127.0.0.1:{g}%40127.0.0.1:{f}/x",
    "https://127.0.0.1:{f}%2F@127.0.0.1:{g}/x",
    "https:\\\\127.0.0.1:{f}/x",
    "https:/127.0.0.1:{f}/x",
    "https:127.0.0.1:{f}/x",
    "//127.0.0.1:{f}/x",
    "/beta/dataPolicyOperations/x",
    "http://127.0.0.1:{g}/x",
    "HTTPS://127.0.0.1:{f}/x",
    "https://[::1]:{f}/x",
    "https://[::ffff:127.0.0.1]:{g}/x",
    "https://[::ffff:7f00:1]:{f}/x",
    "https://[2002:7f00:1::]:{f}/x",
    "https://[64:ff9b::7f00:1]:{f}/x",
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{f}/x",
    "https://2130706433:{g}/x",
    "https://0x7f000001:{f}/x",
    "https://0177.0.0.1:{f}/x",
    "https://127.1:{g}/x",
    "https://127.0.0.1.:{f}/x",
    "https://127.0.0.1.:{g}/x",
    "https://127.0.0.1:0{g}/x",
    "https://127.0.0.1:{g}:{f}/x",
    "https://127.0.0.1\t:{f}/x",
    "https://127.0.0.1:{g}/x\r\nHost: localhost:{f}",
    "https://127\u30020\u30020\u30021:{f}/x",
    "https://127.0.0.1:{f}/" + "x" * 2100,
)


def _same_origin(url: str, port: int) -> bool:
    """The oracle: urllib3, the sender's parser, reads the configured Graph's origin."""
    try:
        parts = parse_url(url)
    except ValueError:
        return False
    host = (parts.host or "").lower().rstrip(".")
    scheme_ok = (parts.scheme or "").lower() == "https" and parts.auth is None
    return scheme_ok and host == "127.0.0.1" and parts.port == port


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _graph_origin_probe(shape: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        with _env(REQUESTS_CA_BUNDLE=campaign.tls.ca_bundle):
            foreign = Receiver(campaign.tls, answer=200, body=b'{"status": "running"}')
            graph = Receiver(campaign.tls, answer=202)
            try:
                url = shape.format(f=foreign.port, g=graph.port)
                graph.extra_headers = {"Location": url}
                client = _graph_client(graph)
                attempts: list[Callable[[], object]] = [
                    lambda: client.get_operation(url)  # as a tampered task hub says
                ]
                if url.isascii():  # a header can carry it: as Graph's Location says
                    attempts.insert(
                        0, lambda: client.submit_export(str(uuid.uuid4()), "https://a/c?sig=x")
                    )
                codes = []
                for attempt in attempts:
                    try:
                        attempt()
                        codes.append("sent")
                    except GraphError as exc:
                        codes.append(exc.code)
            finally:
                foreign.close()
                graph.close()
        expect(foreign.seen == [], f"the foreign receiver got {len(foreign.seen)} request(s)")
        if not _same_origin(url, graph.port):
            wanted = ["ForeignLocation"] * len(attempts)
            expect(codes == wanted, f"not refused as foreign: {codes}")

    return check


#: Values of a URL setting: refused at start, or read alike by the settings and the sender.
GRAPH_SETTINGS = {
    "backslash before @": "https://graph.microsoft.com\\@evil.example",
    "userinfo": "https://graph.microsoft.com@evil.example",
    "credentials": "https://user:pw@graph.microsoft.com",
    "fragment @": "https://evil.example#@graph.microsoft.com",
    "query @": "https://evil.example?@graph.microsoft.com",
    "tab": "https://graph.microsoft.com\t.evil.example",
    "zero-width": "https://graph\u200b.microsoft.com",
    "http": "http://graph.microsoft.com",
    "no host": "https:///v1.0",
    "trailing dot": "https://graph.microsoft.com.",
    "IPv6 literal": "https://[::1]",
    "6to4": "https://[2002:a9fe:a9fe::1]",
    "decimal IPv4": "https://2130706433",
    "port": "https://graph.microsoft.com:8443",
    "national cloud": "https://graph.microsoft.us",
    "upper case": "HTTPS://GRAPH.MICROSOFT.COM",
}


def _graph_origin_setting(value: str) -> str:
    return GraphSettings.from_env({"GRAPH_BASE_URL": value}).base_url


def _authority_setting(value: str) -> str:
    guid = "00000000-0000-0000-0000-00000000000a"
    env = {"AUTH_CLIENT_ID": guid, "AUTH_TENANT_ID": guid, "AUTH_AUTHORITY_HOST": value}
    settings = EntraSettings.from_env(env)
    assert settings is not None
    return settings.authority


#: The settings that name where a token goes (Graph's bearer token, the JWKS fetch).
URL_SETTINGS: dict[str, Callable[[str], str]] = {
    "GRAPH_BASE_URL": _graph_origin_setting,
    "AUTH_AUTHORITY_HOST": _authority_setting,
}


def _url_setting_probe(read: Callable[[str], str], value: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        try:
            url = read(value)
        except SettingsError:
            return
        try:
            target = outbound.judge(url)
        except outbound.UrlRefused as exc:
            raise NotHeld(f"accepted at start, refused by every call: {exc}") from None
        host = (urlsplit(url).hostname or "").rstrip(".")
        expect(host == target.host, f"the settings read {host}, the sender {target.host}")

    return check


def url_probes() -> list[Probe]:
    probes = [
        Probe("callback-url", f"callbackUrl: {name}", _callback_probe(url))
        for name, url in CALLBACK_SHAPES.items()
    ]
    probes += [
        Probe("callback-address", f"resolves to {name}", _address_probe(address))
        for name, address in CALLBACK_ADDRESSES.items()
    ]
    probes += [
        Probe("graph-origin", f"Location {shape[:70]!r}", _graph_origin_probe(shape))
        for shape in GRAPH_SHAPES
    ]
    probes += [
        Probe("url-settings", f"{setting}: {name}", _url_setting_probe(read, value))
        for setting, read in URL_SETTINGS.items()
        for name, value in GRAPH_SETTINGS.items()
    ]
    return probes


# -- F-1: extension storms ---------------------------------------------------------------------
def _ask_all(host: HostProcess, request_id: str, asks: list[dict[str, Any]]) -> list[Any]:
    """Send ``asks`` to one DSR at once."""
    path = f"/exports/{request_id}/extend"
    with ThreadPoolExecutor(max_workers=len(asks)) as pool:
        return list(pool.map(lambda ask: host.post(path, ask), asks))


def _storm(campaign: Campaign) -> dict[str, Any]:
    """Six one-day asks at once, three at once, four one-month asks at once (GDPR caps at two
    months), each to an exporting GDPR DSR; and one ask right after a submit."""
    host, graph = campaign.host, campaign.graph
    names = {"six": 6, "three": 3, "cap": 4}
    ids = {name: _rid(f"F1{name.upper()}") for name in names}
    graph.set_faults(slow_next=24, slow_seconds=1.5, routes={"poll"})
    try:
        for request_id in ids.values():
            body = {"requestId": request_id, "user": _user(graph, "storm")}
            expect(host.post("/exports", body).status_code == 202, "storm DSR not started")
        running = {name: host.wait_for(rid, {"exporting"}) for name, rid in ids.items()}
        day = {"reason": "many systems", "days": 1, "reasonCode": "number_of_requests"}
        month = {"reason": "complex", "months": 1, "reasonCode": "complexity"}
        answers = {
            name: _ask_all(host, ids[name], [month if name == "cap" else day] * count)
            for name, count in names.items()
        }
        early = _rid("F1EARLY")
        body = {"requestId": early, "user": _user(graph, "early")}
        expect(host.post("/exports", body).status_code == 202, "early DSR not started")
        answers["early"] = [host.post(f"/exports/{early}/extend", {"reason": "now", "days": 1})]
        ids["early"] = early
        applied = {name: _applied(host, ids[name], count) for name, count in names.items()}
    finally:
        graph.reset_faults()
    done = {name: host.wait_for(rid, TERMINAL) for name, rid in ids.items()}
    records = {name: _records(campaign.azurite, campaign.tls, rid) for name, rid in ids.items()}
    return {
        "ids": ids,
        "running": running,
        "answers": answers,
        "applied": applied,
        "done": done,
        "records": records,
    }


def _kinds(records: list[evidence.EvidenceRecord], kind: str) -> list[evidence.EvidenceRecord]:
    return [r for r in records if r.kind.value == kind]


def _storm_probe(check: Callable[[dict[str, Any]], None]) -> Callable[[Campaign], None]:
    def probe(campaign: Campaign) -> None:
        check(campaign.once("F-1 storm", lambda: _storm(campaign)))

    return probe


def _answered(name: str) -> Callable[[dict[str, Any]], None]:
    def check(storm: dict[str, Any]) -> None:
        answers = storm["answers"][name]
        expect(all(a.status_code == 202 for a in answers), [a.text for a in answers].__str__())
        asked = [a.json() for a in answers]
        expect(len({a["askId"] for a in asked}) == len(asked), f"ask ids not distinct: {asked}")
        expect(all(a["state"] == "pending" and "deadline" not in a for a in asked), str(asked))

    return check


def _moved(name: str, days: int) -> Callable[[dict[str, Any]], None]:
    def check(storm: dict[str, Any]) -> None:
        done = storm["done"][name]
        wanted = _plus_days(done["originalDeadline"], days)
        expect(done["deadline"] == wanted, f"deadline {done['deadline']}, wanted {wanted}")
        expect(not done.get("refusedExtensions"), f"refused: {done.get('refusedExtensions')}")

    return check


def _completed_revoked(name: str) -> Callable[[dict[str, Any]], None]:
    def check(storm: dict[str, Any]) -> None:
        done = storm["done"][name]
        expect(done["phase"] == "completed", f"ended {done['phase']}: {done.get('error')}")
        expect(done["sas"]["revoked"] is True, f"SAS not revoked: {done['sas']}")
        kinds = {r.kind.value for r in storm["records"][name]}
        expect({"completed", "sas_revoked"} <= kinds, f"evidence kinds {kinds}")

    return check


def _one_record_per_ask(name: str, applied: int) -> Callable[[dict[str, Any]], None]:
    def check(storm: dict[str, Any]) -> None:
        extended = _kinds(storm["records"][name], "extended")
        asks = sorted(str(r.data["askId"]) for r in extended)
        expect(len(extended) == applied, f"{len(extended)} extended records, {applied} applied")
        expect(len(set(asks)) == len(asks), f"an ask recorded twice: {asks}")
        done = storm["done"][name]
        applied_ids = sorted(str(e["askId"]) for e in done["extensions"])
        expect(asks == applied_ids, f"records {asks}, status {applied_ids}")
        deadlines = [str(r.data["deadline"]) for r in extended]
        expect(deadlines == sorted(deadlines), f"not in arrival order: {deadlines}")

    return check


def _capped(storm: dict[str, Any]) -> None:
    done = storm["done"]["cap"]
    extensions, refused = done["extensions"], done.get("refusedExtensions") or []
    expect((len(extensions), len(refused)) == (2, 2), f"{extensions} / {refused}")
    expect(done["deadline"] == extensions[-1]["deadline"], f"deadline {done['deadline']}")
    wanted = datetime.fromisoformat(done["originalDeadline"])
    moved = datetime.fromisoformat(done["deadline"])
    expect(59 <= (moved - wanted).days <= 62, f"moved {(moved - wanted).days} days")


def _no_recursion(campaign: Campaign) -> None:
    campaign.once("F-1 storm", lambda: _storm(campaign))
    log = campaign.host.log_path.read_text(errors="replace")
    expect("RecursionError" not in log and "FinalizeFailed" not in log, "recursion in the log")


def f1_probes() -> list[Probe]:
    checks: list[tuple[str, Callable[[dict[str, Any]], None]]] = []
    for name, days in (("six", 6), ("three", 3), ("early", 1)):
        checks += [
            (f"{name}: every ask 202, pending, its own id", _answered(name)),
            (f"{name}: deadline moved by exactly {days} day(s)", _moved(name, days)),
            (f"{name}: completed, SAS revoked", _completed_revoked(name)),
            (f"{name}: one extended record per ask", _one_record_per_ask(name, days)),
        ]
    checks += [
        ("cap: every ask 202, pending", _answered("cap")),
        ("cap: two months applied, the rest refused", _capped),
        ("cap: completed, SAS revoked", _completed_revoked("cap")),
        ("cap: one extended record per applied ask", _one_record_per_ask("cap", 2)),
    ]
    probes = [Probe("F-1 storm", name, _storm_probe(c), fast=False) for name, c in checks]
    return [*probes, Probe("F-1 storm", "no recursion, no FinalizeFailed", _no_recursion, False)]


# -- F-2: an erasure touches its own containers only --------------------------------------------
def _prefix_collision(campaign: Campaign) -> dict[str, Any]:
    host, graph = campaign.host, campaign.graph
    victim = f"V{uuid.uuid4().hex[:6].upper()}"
    digest = hashlib.sha256(victim.encode()).hexdigest()[:16]
    ids = [victim] + [f"{victim}-{digest}-{tail}" for tail in ("A2", "A", "PKG")]
    for request_id in ids:
        body = {"requestId": request_id, "user": _user(graph, "prefix")}
        expect(host.post("/exports", body).status_code == 202, f"{request_id} not started")
    done = {rid: host.wait_for(rid, TERMINAL) for rid in ids}
    expect(all(d["phase"] == "completed" for d in done.values()), "not all completed")
    receipt = _delete(host, f"/exports/{victim}/data", {"reason": "the subject asked"})
    expect(receipt.status_code == 200, f"erasure {receipt.status_code} {receipt.text[:200]}")
    return {"victim": victim, "hostile": ids[1:], "done": done, "receipt": receipt.json()}


def _f2(check: Callable[[Campaign, dict[str, Any]], None]) -> Callable[[Campaign], None]:
    def probe(campaign: Campaign) -> None:
        check(campaign, campaign.once("F-2", lambda: _prefix_collision(campaign)))

    return probe


def _receipt_is_the_victims(campaign: Campaign, scene: dict[str, Any]) -> None:
    mine = scene["done"][scene["victim"]]
    receipt = scene["receipt"]
    expect(receipt["containers"] == [mine["container"]], f"receipt {receipt['containers']}")
    expect(receipt["blobCount"] == mine["manifest"]["blobCount"], f"receipt {receipt}")


def _hostile_intact(index: int) -> Callable[[Campaign, dict[str, Any]], None]:
    def check(campaign: Campaign, scene: dict[str, Any]) -> None:
        request_id = scene["hostile"][index]
        doc = scene["done"][request_id]
        container = export_container(campaign.azurite, campaign.tls, doc["container"])
        expect(container.exists(), f"{doc['container']} deleted with the victim's")
        status = campaign.host.get(f"/exports/{request_id}").json()
        expect(status["data"].get("state") != "deleted", f"{request_id} booked as deleted")

    return check


def f2_probes() -> list[Probe]:
    probes = [
        Probe(
            "F-2 prefix",
            "the receipt books the victim's container only",
            _f2(_receipt_is_the_victims),
            fast=False,
        )
    ]
    probes += [
        Probe("F-2 prefix", f"V-<hash>-{tail} is left alone", _f2(_hostile_intact(i)), fast=False)
        for i, tail in enumerate(("A2", "A", "PKG"))
    ]
    return probes


# -- F-3, F-4, I-2: retention of DSRs that failed early, ids reused, queues --------------------
def _queue(campaign: Campaign, name: str) -> QueueClient:
    process = campaign.retention_host()
    return QueueClient.from_connection_string(
        process.env["AzureWebJobsStorage"], name, connection_verify=campaign.tls.ca_bundle
    )


def _retention(campaign: Campaign) -> dict[str, Any]:
    """On the short-retention host: a UPN that does not resolve, an object id Graph does not
    know, a DSR cancelled at once and one that completes; old messages in the poison and
    rejected queues; the retention run until every history is purged."""
    process, graph = campaign.retention_host(), campaign.graph
    upn = f"nobody-{uuid.uuid4().hex[:8]}@contoso.example"
    note_personal(upn)
    users = {
        "upn": upn,
        "ghost": str(uuid.uuid4()),
        "cancelled": _user(graph, "gone"),
        "completed": _user(graph, "kept"),
    }
    ids = {name: _rid(f"F3{name[:4].upper()}") for name in users}
    for name, request_id in ids.items():
        answer = process.post("/exports", {"requestId": request_id, "user": users[name]})
        expect(answer.status_code == 202, f"{name}: {answer.status_code}")
        if name == "cancelled":
            process.post(f"/exports/{request_id}/cancel", {"reason": "withdrawn"})
    ended = {name: process.wait_for(rid, TERMINAL) for name, rid in ids.items()}
    queued = {}
    for queue in (POISON_QUEUE, REJECTED_QUEUE):
        client = _queue(campaign, queue)
        with contextlib.suppress(Exception):
            client.create_queue()
        queued[queue] = client.send_message(base64.b64encode(b'{"probe": 1}').decode()).id
    deadline = time.monotonic() + 180
    purged: set[str] = set()
    while purged != set(ids) or _still_queued(campaign, queued):
        expect(time.monotonic() < deadline, f"purged only {sorted(purged)}")
        _sweep(process)
        purged = {
            n for n, r in ids.items() if process.get(f"/exports/{r}").json().get("historyPurged")
        }
    return {"ids": ids, "users": users, "ended": ended, "queued": queued}


def _still_queued(campaign: Campaign, queued: dict[str, str]) -> bool:
    for queue, message_id in queued.items():
        messages = _queue(campaign, queue).peek_messages(max_messages=32)
        if any(m.id == message_id for m in messages):
            return True
    return False


def _retained(check: Callable[[Campaign, dict[str, Any]], None]) -> Callable[[Campaign], None]:
    def probe(campaign: Campaign) -> None:
        check(campaign, campaign.once("retention", lambda: _retention(campaign)))

    return probe


def _finished(name: str) -> Callable[[Campaign, dict[str, Any]], None]:
    def check(campaign: Campaign, scene: dict[str, Any]) -> None:
        request_id, ended = scene["ids"][name], scene["ended"][name]
        records = _records(campaign.azurite, campaign.tls, request_id)
        finished = _kinds(records, "finished")
        expect(len(finished) == 1, f"{len(finished)} finished records ({ended['phase']})")
        if ended.get("error"):
            code = finished[0].data.get("errorCode")
            expect(code == ended["error"]["code"], f"errorCode {code} vs {ended['error']}")
        kinds = [r.kind.value for r in records]
        expect(kinds[-1] == "history_purged", f"last record {kinds[-1]}")

    return check


def _purged(name: str) -> Callable[[Campaign, dict[str, Any]], None]:
    def check(campaign: Campaign, scene: dict[str, Any]) -> None:
        request_id, ended = scene["ids"][name], scene["ended"][name]
        status = campaign.retention_host().get(f"/exports/{request_id}").json()
        expect(status.get("historyPurged") is True, f"not purged: {status}")
        expect(status["phase"] == ended["phase"], f"phase {status['phase']} vs {ended['phase']}")
        rows = [row[:2] for row in task_hub_rows({request_id})]
        expect(not rows, f"task hub rows left: {rows[:3]}")
        user = scene["users"][name].lower()
        held = [row[:2] for row in task_hub_rows() if user in row[2].lower()]
        expect(not held, f"the subject still in {held[:3]}")

    return check


def _reused(name: str, other_person: bool) -> Callable[[Campaign, dict[str, Any]], None]:
    def check(campaign: Campaign, scene: dict[str, Any]) -> None:
        request_id, ended = scene["ids"][name], scene["ended"][name]
        user = _user(campaign.graph, "again") if other_person else scene["users"][name]
        before = _records(campaign.azurite, campaign.tls, request_id)
        process = campaign.retention_host()
        answer = process.post("/exports", {"requestId": request_id.lower(), "user": user})
        said = f"{answer.status_code} {answer.text[:300]}"
        expect(answer.status_code == 409, f"409 expected: {said}")
        detail = answer.json()["detail"]
        expect("earlier DSR" in detail and f"ended {ended['phase']}" in detail, said)
        if name == "completed":
            receipts = [r.data.get("receiptId") for r in _kinds(before, "retention_deleted")]
            expect(receipts and receipts[0] in detail, f"receipt not named: {said}")
        after = _records(campaign.azurite, campaign.tls, request_id)
        expect(after == before, "the refused submit was recorded")

    return check


def _old_import_file(campaign: Campaign, scene: dict[str, Any]) -> None:
    """``dsrctl import`` of the file that filed them, after the purge: nothing accepted."""
    process = campaign.retention_host()
    rows = ["requestId,user"] + [f"{scene['ids'][n]},{scene['users'][n]}" for n in scene["ids"]]
    path = campaign.work / f"old-{uuid.uuid4().hex[:6]}.csv"
    path.write_text("\n".join(rows) + "\n")
    run = dsrctl(process, "import", str(path))
    expect(" accepted" not in run.stdout.replace("0 accepted", ""), run.stdout)
    expect(
        run.stdout.splitlines()[-1].startswith(f"{len(scene['ids'])} rows: 0 accepted"), run.stdout
    )


def _queue_cleared(queue: str) -> Callable[[Campaign, dict[str, Any]], None]:
    def check(campaign: Campaign, scene: dict[str, Any]) -> None:
        messages = _queue(campaign, queue).peek_messages(max_messages=32)
        expect(all(m.id != scene["queued"][queue] for m in messages), f"{queue} kept it")
        log = campaign.retention_host().log_path.read_text(errors="replace")
        field_name = "poison_cleared" if queue == POISON_QUEUE else "rejected_cleared"
        counts = [int(n) for n in re.findall(rf"retention_run .*{field_name}=(\d+)", log)]
        expect(any(counts), f"no retention run counted it: {field_name} {counts}")

    return check


def retention_probes() -> list[Probe]:
    probes = []
    for name in ("upn", "ghost", "cancelled"):
        probes += [
            Probe(
                "F-3 early end",
                f"{name}: finished written, then history_purged",
                _retained(_finished(name)),
                fast=False,
            ),
            Probe(
                "F-3 early end",
                f"{name}: purged, status answers, no row or subject left",
                _retained(_purged(name)),
                fast=False,
            ),
        ]
    for name in ("upn", "ghost", "completed"):
        probes += [
            Probe(
                "F-4 reused id",
                f"{name}: same person again -> 409",
                _retained(_reused(name, False)),
                fast=False,
            ),
            Probe(
                "F-4 reused id",
                f"{name}: another person -> 409",
                _retained(_reused(name, True)),
                fast=False,
            ),
        ]
    probes.append(
        Probe(
            "F-4 reused id",
            "dsrctl import of the old file",
            _retained(_old_import_file),
            fast=False,
        )
    )
    probes += [
        Probe(
            "I-2 queues",
            f"{queue}: cleared after QUEUE_RETENTION_DAYS, counted",
            _retained(_queue_cleared(queue)),
            fast=False,
        )
        for queue in (POISON_QUEUE, REJECTED_QUEUE)
    ]
    return probes


# -- F-5: two first submits of one id for two people, at once ----------------------------------
def _race(campaign: Campaign) -> None:
    host, graph = campaign.host, campaign.graph
    request_id = _rid("F5RACE")
    users = [_user(graph, "racer"), _user(graph, "racer")]
    gate = threading.Barrier(2)

    def submit(user: str) -> requests.Response:
        gate.wait(timeout=30)
        return host.post("/exports", {"requestId": request_id, "user": user})

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(submit, users))
    codes = sorted(a.status_code for a in answers)
    expect(codes == [202, 409], f"answers {codes}")
    winner = users[[a.status_code for a in answers].index(202)]
    records = _records(campaign.azurite, campaign.tls, request_id)
    received = lifecycle.received_record(records)
    expect(received is not None, "no received record")
    assert received is not None
    named = received.data.get("userObjectId")
    expect(named == winner, f"received names {named}, the DSR that started is {winner}")
    started = host.get(f"/exports/{request_id}").json()
    expect(started.get("userId", winner) == winner, f"status names {started.get('userId')}")


def f5_probes() -> list[Probe]:
    return [Probe("F-5 race", f"race {n}", _race, fast=False) for n in range(1, 9)]


# -- F-6: the key recorded is the key the host let in ------------------------------------------
def _fingerprint(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _code_probe(query: str, header: str | None) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        host = campaign.host
        request_id = _rid("F6CODE")
        body = {"requestId": request_id, "user": str(uuid.uuid4())}
        headers = {"x-functions-key": header} if header else {}
        answer = requests.post(
            f"{host.api}/exports?{query.format(key=FUNCTION_KEY)}",
            json=body,
            headers=headers,
            timeout=30,
        )
        record_seen(answer.text)
        said = f"{answer.status_code} {answer.text[:160]}"
        if answer.status_code in {401, 403}:
            gone = host.get(f"/exports/{request_id}")
            expect(gone.status_code == 404, f"refused, yet started: {gone.status_code}")
            return
        expect(answer.status_code == 202, f"202 or a refusal expected: {said}")
        doc = _status_of(host, request_id, lambda d: "submittedBy" in d)
        wanted = {"kind": "functionKey", "id": _fingerprint(FUNCTION_KEY)}
        expect(doc["submittedBy"] == wanted, f"recorded {doc['submittedBy']}")

    return check


CODE_SHAPES = {
    "code=KEY&code=x": ("code={key}&code=x", None),
    "code=x&code=KEY": ("code=x&code={key}", None),
    "code=KEY&code=KEY": ("code={key}&code={key}", None),
    "code=KEY,x": ("code={key}%2Cx", None),
    "code=KEY": ("code={key}", None),
    "CODE=KEY": ("CODE={key}", None),
    "header KEY, code=x": ("code=x", FUNCTION_KEY),
    "header KEY, code=KEY&code=x": ("code={key}&code=x", FUNCTION_KEY),
}


def f6_probes() -> list[Probe]:
    return [
        Probe("F-6 keys", name, _code_probe(query, header))
        for name, (query, header) in CODE_SHAPES.items()
    ]


# -- F-7: a cancel reason's words are shown to nobody -----------------------------------------
#: Reasons an operator may type, and the words of each that must not come back.
CANCEL_REASONS = {
    "a name and a phone number": ("Zelda Quistorp on +44 7700 900123", ["Quistorp", "900123"]),
    "an address": ("write to jane.doe@contoso.example", ["jane.doe"]),
    "a %40 address": ("jane.doe%40contoso.example", ["jane.doe"]),
    "a fullwidth-at address": ("jane.doe\uff20contoso.example", ["jane.doe"]),
    "control characters": ("quokka\r\n\x1b[31mforgery\x07", ["quokka", "forgery", "\x1b"]),
    "an IBAN": ("refund to GB82WEST12345698765432", ["GB82WEST"]),
}


def _cancel_probe(reason: str, words: list[str]) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        host = campaign.host
        request_id = _rid("F7WHY")
        note_personal(*[word for word in reason.split() if "@" in word])
        body = {"requestId": request_id, "user": _user(campaign.graph, "why")}
        expect(host.post("/exports", body).status_code == 202, "not started")
        answer = host.post(f"/exports/{request_id}/cancel", {"reason": reason})
        expect(answer.status_code == 202, f"cancel {answer.status_code} {answer.text[:160]}")
        done = host.wait_for(request_id, TERMINAL)
        listed = host.get(f"/exports?phase={done['phase']}&top=200").text
        for text, where in ((json.dumps(done, ensure_ascii=False), "status"), (listed, "list")):
            leaked = [w for w in words if w in text or json.dumps(w)[1:-1] in text]
            expect(not leaked, f"{where} shows {leaked}")
        if done["phase"] == "cancelled":
            digest = hashlib.sha256(reason.encode()).hexdigest()
            expect(done["error"].get("reasonSha256") == digest, f"error {done['error']}")

    return check


def f7_probes() -> list[Probe]:
    return [
        Probe("F-7 reasons", f"cancel reason with {name}", _cancel_probe(*said), fast=False)
        for name, said in CANCEL_REASONS.items()
    ]


# -- F-8: the evidence verifier names what it cannot read -------------------------------------
def _opening(request_id: str) -> bytes:
    return evidence.chain(
        None, "received", datetime.now(UTC), request_id, {"source": "http"}
    ).to_line()


EVIDENCE_LOGS: dict[str, tuple[Callable[[str], bytes], bool]] = {
    "an empty log": (lambda rid: b"", False),
    "an empty log, with --request-id": (lambda rid: b"", True),
    "blank lines only": (lambda rid: b"\n\n\n", True),
    "NaN in a record": (lambda rid: _opening(rid) + b'{"seq": 1, "x": NaN}\n', True),
    "Infinity in a record": (lambda rid: _opening(rid) + b'{"seq": 1, "x": -Infinity}\n', True),
    "100,000-deep nesting": (
        lambda rid: _opening(rid) + b"[" * 100_000 + b"]" * 100_000 + b"\n",
        True,
    ),
    "a line that is not an object": (lambda rid: _opening(rid) + b"[1, 2]\n", True),
    "bad UTF-8": (lambda rid: _opening(rid) + b'{"seq": 1, "kind": "\xff"}\n', True),
    "another DSR's log": (lambda rid: _opening(rid + "-OTHER"), True),
}


def _verify_probe(make: Callable[[str], bytes], with_id: bool) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        request_id = _rid("F8LOG")
        path = campaign.work / f"{request_id}.jsonl"
        path.write_bytes(make(request_id))
        command = [sys.executable, "-m", "dsr_export.evidence_cli", "verify", str(path)]
        command += ["--request-id", request_id] if with_id else []
        run = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
        )
        said = f"exit {run.returncode}: {run.stdout[-200:]} {run.stderr[-300:]}"
        expect(run.returncode == 1, said)
        expect("BROKEN" in run.stdout, said)
        expect("Traceback" not in run.stderr, said)

    return check


def _planted_log(campaign: Campaign) -> None:
    """``dsrctl evidence`` and the service's readers on a stored log with NaN and deep nesting."""
    request_id = _rid("F8CLI")
    logs = export_container(campaign.azurite, campaign.tls, EVIDENCE_CONTAINER)
    if not logs.exists():
        logs.create_container()
    blob = logs.get_blob_client(evidence.blob_name(request_id))
    blob.upload_blob(
        _opening(request_id) + b'{"seq": 1, "x": NaN}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    )
    try:
        run = dsrctl(campaign.host, "evidence", request_id)
        expect(run.returncode == 1, f"exit {run.returncode}: {run.stdout[-300:]}")
        expect("BROKEN at record 1 (line 2)" in run.stdout, run.stdout[-300:])
        status = call(campaign.host, "GET", f"/exports/{request_id}")
        expect(status.status_code < 500, f"status route {status.status_code}")
    finally:
        blob.delete_blob()


def f8_probes() -> list[Probe]:
    probes = [
        Probe("F-8 evidence", f"verify: {name}", _verify_probe(make, with_id))
        for name, (make, with_id) in EVIDENCE_LOGS.items()
    ]
    return [*probes, Probe("F-8 evidence", "dsrctl evidence on a planted log", _planted_log)]


# -- F-9, F-10, F-11: dsrctl ---------------------------------------------------------------------
def _download_scene(campaign: Campaign) -> dict[str, Any]:
    """A completed export with blobs added whose names collide or cannot be written."""
    host = campaign.host
    request_id = _rid("F9DL")
    body = {"requestId": request_id, "user": _user(campaign.graph, "dl")}
    expect(host.post("/exports", body).status_code == 202, "not started")
    doc = host.wait_for(request_id, {"completed"})
    container = export_container(campaign.azurite, campaign.tls, doc["container"])
    listed = json.loads(container.download_blob("manifest.json").readall())["blobs"]
    nested = next(str(b["name"]) for b in listed if "/" in str(b["name"]))
    added = {
        "double slash": nested.replace("/", "//", 1),
        "trailing slash": nested + "/",
        "a file where a folder is": nested.split("/", 1)[0],
        "300 characters": "x" * 300,
        # ("./x" cannot be planted: the SDK signs the path before the URL drops "./"; the
        # unit tests feed it.)
        "bidi and DEL": "Teams/\u202enosj.exe\x7f",
    }
    for name in added.values():
        container.upload_blob(name, b"forged", overwrite=True)
    folder = campaign.work / f"dl-{uuid.uuid4().hex[:6]}"
    run = dsrctl(host, "download", request_id, "--to", str(folder))
    return {"run": run, "added": added, "listed": listed, "folder": folder}


def _refused_name(label: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        scene = campaign.once("F-9", lambda: _download_scene(campaign))
        name = scene["added"][label]
        failed = [ln for ln in scene["run"].stdout.splitlines() if ln.startswith("FAILED ")]
        shown = json.dumps(name)[1:-1].replace("\\u007f", "\\x7f")
        expect(
            any(name in ln or shown in ln or name.lstrip("./") in ln for ln in failed),
            f"{name!r} not refused by name: {failed}",
        )

    return check


def _listed_intact(campaign: Campaign) -> None:
    scene = campaign.once("F-9", lambda: _download_scene(campaign))
    expect(scene["run"].returncode == 1, f"exit {scene['run'].returncode}")
    for blob in scene["listed"]:
        path = scene["folder"] / blob["name"]
        expect(path.stat().st_size == blob["size"], f"{blob['name']} overwritten")
    expect(not any(c in scene["run"].stdout for c in "\u202e\x7f\x1b"), "raw controls printed")


_CONTROLS = ("\x1b", "\x9b", "\x07", "\r", "\u202e", "\x00")


def _printable(run: subprocess.CompletedProcess[str]) -> None:
    text = run.stdout + run.stderr
    raw = [repr(c) for c in _CONTROLS if c in text]
    expect(not raw, f"printed raw: {raw}")


def _import_escapes(cell: str, column: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        values = {"requestId": _rid("F10"), "user": str(uuid.uuid4()), "regulation": "gdpr"}
        values[column] = values[column] + cell
        path = campaign.work / f"f10-{uuid.uuid4().hex[:6]}.csv"
        path.write_text("requestId,user,regulation\n" + ",".join(values.values()) + "\n")
        _printable(dsrctl(campaign.host, "import", str(path)))

    return check


CELLS = {
    "ESC colour": "\x1b[31mRED",
    "OSC title": "\x1b]0;owned\x07",
    "CSI 8-bit": "\x9b2J",
    "carriage return": "\rline 2: accepted",
    "bidi override": "\u202eexe.txt",
}


def _watch_escapes(campaign: Campaign) -> None:
    request_id = _rid("F10W")
    body = {"requestId": request_id, "user": _user(campaign.graph, "watch")}
    expect(campaign.host.post("/exports", body).status_code == 202, "not started")
    campaign.host.post(f"/exports/{request_id}/cancel", {"reason": "\x1b]0;owned\x07\rforged"})
    run = dsrctl(campaign.host, "watch", request_id, "--interval", "0.2", "--timeout", "60")
    _printable(run)


def _dsrctl_at(url: str, ca: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSRCTL_")}
    env.update(DSRCTL_URL=url, DSRCTL_FUNCTION_KEY=FUNCTION_KEY, DSRCTL_CA_BUNDLE=ca, TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "dsrctl", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _redirect_probe(status: int, command: tuple[str, ...]) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        with _env(REQUESTS_CA_BUNDLE=campaign.tls.ca_bundle):
            trap = Receiver(campaign.tls, answer=200, body=b"{}")
            door = Receiver(campaign.tls, answer=status)
        door.extra_headers = {"Location": f"https://localhost:{trap.port}/api/exports/X"}
        try:
            run = _dsrctl_at(f"https://127.0.0.1:{door.port}", campaign.tls.ca_bundle, *command)
        finally:
            trap.close()
            door.close()
        keys = [s for s in trap.seen if "x-functions-key" in s or "authorization" in s]
        expect(not keys, f"credentials sent to the other origin: {len(keys)}")
        expect("Traceback" not in run.stderr, run.stderr[-300:])
        expect(run.returncode != 0, "a redirect taken as success")

    return check


def cli_probes() -> list[Probe]:
    probes = [
        Probe("F-9 download", f"refused by name: {label}", _refused_name(label), fast=False)
        for label in (
            "double slash",
            "trailing slash",
            "a file where a folder is",
            "300 characters",
            "bidi and DEL",
        )
    ]
    probes.append(Probe("F-9 download", "listed blobs intact, exit 1", _listed_intact, False))
    probes += [
        Probe("F-10 terminal", f"import: {name} in {column}", _import_escapes(cell, column))
        for name, cell in CELLS.items()
        for column in ("requestId", "user")
    ]
    probes.append(
        Probe("F-10 terminal", "watch: another operator's reason", _watch_escapes, fast=False)
    )
    probes += [
        Probe("F-11 redirect", f"{status} on {' '.join(command)}", _redirect_probe(status, command))
        for status in (301, 302, 303, 307, 308)
        for command in (("show", "X-1"), ("ls",))
    ]
    return probes


# -- F-12: a submitter learns nothing of another DSR's subject (strict host) -------------------
def _guess_scene(campaign: Campaign) -> dict[str, Any]:
    strict = campaign.strict
    filer = strict.token(["DSR.Submit"], id=str(uuid.uuid4()))
    request_id = _rid("F12")
    user = _user(campaign.graph, "guessed")
    body = {"requestId": request_id, "user": user}
    filed = call(strict, "POST", "/exports", body, _bearer(filer))
    expect(filed.status_code == 202, f"not filed: {filed.status_code}")
    return {"id": request_id, "user": user, "filer": filer}


def _guess(kind: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        scene = campaign.once("F-12", lambda: _guess_scene(campaign))
        guesser = campaign.once("F-12 guesser", lambda: campaign.strict.token(["DSR.Submit"]))
        guesses = {
            "right person": {"user": scene["user"]},
            "wrong person": {"user": str(uuid.uuid4())},
            "right person, other regulation": {"user": scene["user"], "regulation": "ccpa"},
        }
        answers = {
            name: call(
                campaign.strict,
                "POST",
                "/exports",
                {"requestId": scene["id"], **g},
                _bearer(guesser),
            )
            for name, g in guesses.items()
        }
        mine = answers[kind]
        said = f"{mine.status_code} {mine.text[:200]}"
        expect(mine.status_code == 409, f"409 expected: {said}")
        expect(len({a.content for a in answers.values()}) == 1, "the answers differ")
        expect("user" not in mine.json()["detail"], said)
        expect(_pointers(mine) == ["/requestId"], said)

    return check


def f12_probes() -> list[Probe]:
    return [
        Probe("F-12 guess", f"{kind}: the same 409 as any guess", _guess(kind))
        for kind in ("right person", "wrong person", "right person, other regulation")
    ]


# -- F-13: the list pages --------------------------------------------------------------------
def _pages(top: int, pages: int) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        seen: list[str] = []
        token = None
        for _ in range(pages):
            query = f"?top={top}" + (f"&continuationToken={quote(token)}" if token else "")
            answer = call(campaign.host, "GET", f"/exports{query}")
            expect(answer.status_code == 200, f"{answer.status_code} {answer.text[:160]}")
            page = answer.json()
            expect(len(page["items"]) <= top, f"{len(page['items'])} items on a page of {top}")
            seen += [item["requestId"] for item in page["items"]]
            token = page.get("continuationToken")
            if not token:
                break
        expect(len(seen) == len(set(seen)), f"an item on two pages: {seen}")

    return check


def _bad_list(query: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        answer = call(campaign.host, "GET", f"/exports?{query}")
        expect(answer.status_code == 400, f"{answer.status_code} {answer.text[:160]}")

    return check


def f13_probes() -> list[Probe]:
    probes = [
        Probe("F-13 list", f"top={top}: {pages} pages, nothing twice", _pages(top, pages))
        for top, pages in ((1, 8), (2, 5), (5, 3))
    ]
    probes += [
        Probe("F-13 list", f"refused: {query}", _bad_list(query))
        for query in ("top=0", "top=100000", "top=-1", "continuationToken=forged", "top=1&top=2")
    ]
    return probes


# -- I-3, I-5, I-6 -----------------------------------------------------------------------------
def _notice_ids(campaign: Campaign) -> list[str]:
    """Notice orchestrations the host runs (callbacks), or a made-up one of that shape."""
    found: list[str] = []
    db = Path(campaign.host.endpoints.get("taskHub", ""))
    if db.is_file():
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT instance_id FROM instances WHERE instance_id LIKE 'notice-%'"
            ).fetchall()
        found = [str(row[0]) for row in rows]
    return found or [f"notice-{uuid.uuid4().hex}"]


def _notice(method: str, path: str, body: object) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        for notice in _notice_ids(campaign)[:3]:
            answer = call(campaign.host, method, path.replace("{id}", notice), body)
            expect(answer.status_code == 404, f"{notice}: {answer.status_code} {answer.text[:160]}")

    return check


def _doc_roles(campaign: Campaign) -> None:
    text = (REPO / "docs" / "dsrctl.md").read_text()
    expect("may do everything" not in text, "docs/dsrctl.md: make serve's key may do everything")


def _minted_at(campaign: Campaign) -> None:
    answer = requests.post(
        str(campaign.strict.endpoints["tokenEndpoint"]),
        json={"roles": ["DSR.Submit"], "id": "ada@contoso.example"},
        headers={"x-functions-key": FUNCTION_KEY},
        timeout=30,
    )
    expect(answer.status_code == 400, f"the tenant minted it: {answer.status_code}")


def _signed_at(campaign: Campaign) -> None:
    tokens = campaign.once("tokens", lambda: Tokens(campaign))
    client = "azp" if "azp" in tokens.claims else "appid"
    token = tokens.signed(**{client: "ada@contoso.example", "roles": ["DSR.Submit"]})
    body = {"requestId": _rid("I6"), "user": str(uuid.uuid4())}
    answer = call(campaign.strict, "POST", "/exports", body, _bearer(token))
    expect(answer.status_code in {400, 401, 403}, f"{answer.status_code} {answer.text[:160]}")


def notes_probes() -> list[Probe]:
    probes = [
        Probe("I-3 notices", f"{method} {path} of a notice", _notice(method, path, body))
        for method, path, body in ID_ROUTES
    ]
    probes += [
        Probe("I-5 docs", "dsrctl.md does not overstate the key's roles", _doc_roles),
        Probe("I-6 minted ids", "the tenant mints no id with @", _minted_at),
        Probe("I-6 minted ids", "a signed client id with @: a clear refusal", _signed_at),
    ]
    return probes


# -- the admin API and the local tenant's hooks: the master key only ---------------------------
def _root(campaign: Campaign) -> str:
    return campaign.host.api.removesuffix("/api")


def _admin_probe(method: str, path: str, key: str | None, refused: set[int]) -> Probe:
    def check(campaign: Campaign) -> None:
        headers = {}
        if key == "function":
            headers["x-functions-key"] = FUNCTION_KEY
        elif key is not None:
            headers["x-functions-key"] = key
        answer = requests.request(
            method, f"{_root(campaign)}{path}", headers=headers, json={}, timeout=30
        )
        record_seen(answer.text)
        expect(answer.status_code in refused, f"{answer.status_code} {answer.text[:160]}")
        expect(FUNCTION_KEY not in answer.text, "a key in the answer")

    who = {None: "no key", "function": "the function key"}.get(key, "a wrong key")
    return Probe("admin API", f"{method} {path} with {who}", check)


ADMIN_PATHS = (
    ("POST", "/admin/functions/retention_sweep"),
    ("GET", "/admin/host/keys"),
    ("GET", "/admin/host/systemkeys/_master"),
    ("GET", "/admin/functions/submit_dsr/keys"),
    ("PUT", "/admin/host/keys/planted"),
    ("POST", "/admin/host/keys/planted"),
    ("POST", "/.auth/devhost/rotate"),
)


def admin_probes() -> list[Probe]:
    probes = [
        _admin_probe(method, path, key, {401, 403})
        for method, path in ADMIN_PATHS
        for key in (None, "function", "not-a-key")
    ]
    probes.append(_admin_probe("POST", "/.auth/devhost/token", None, {401}))
    probes.append(_admin_probe("POST", "/.auth/devhost/token", "not-a-key", {401}))
    return probes


# -- slow clients ------------------------------------------------------------------------------
def _open(campaign: Campaign) -> ssl.SSLSocket:
    """A TLS connection to the host's API port, as a client opens it (or plain TCP)."""
    parts = parse_url(campaign.host.api)
    raw = socket.create_connection((parts.host or "127.0.0.1", parts.port or 80), timeout=90)
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=campaign.tls.ca_bundle)
        return context.wrap_socket(raw, server_hostname=parts.host)
    return raw  # type: ignore[return-value]


def _served(campaign: Campaign) -> None:
    answer = call(campaign.host, "GET", "/health")
    expect(answer.status_code < 500, f"health {answer.status_code}")
    answer = call(campaign.host, "GET", "/exports?top=1")
    expect(answer.status_code == 200, f"list {answer.status_code}")


def _trickle(count: int, partial: bytes) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        sockets = []
        try:
            for _ in range(count):
                sock = _open(campaign)
                sock.sendall(partial)
                sockets.append(sock)
            _served(campaign)
        finally:
            for sock in sockets:
                sock.close()

    return check


def _cut_off(campaign: Campaign) -> None:
    """A client that never finishes its headers loses its connection in the end."""
    sock = _open(campaign)
    try:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(120)
        try:
            rest = sock.recv(4096)
        except (TimeoutError, OSError):
            raise NotHeld("still open after 120 s") from None
        expect(rest == b"" or rest.startswith(b"HTTP/1.1 4"), f"answered {rest[:60]!r}")
    finally:
        sock.close()


def slow_probes() -> list[Probe]:
    head = b"GET /api/health HTTP/1.1\r\nHost: x\r\n"
    body = b"POST /api/exports HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"
    return [
        Probe("slow clients", "16 clients mid-headers; others served", _trickle(16, head)),
        Probe("slow clients", "16 clients mid-request-line; others served", _trickle(16, b"GE")),
        Probe("slow clients", "16 bodies short of their length; others served", _trickle(16, body)),
        Probe("slow clients", "a client idle after connecting; others served", _trickle(4, b"")),
        Probe("slow clients", "an unfinished request is cut off", _cut_off, fast=False),
    ]


# -- tenant isolation (issue 21) ---------------------------------------------------------------
#: Two customer tenants of the offline host (devhost/entra.py CUSTOMER_TENANTS), both consented.
TENANT_A, TENANT_B = CUSTOMER_TENANTS[:2]
TICKET = "RITM-ISO-0001"
#: A ticketing system's function key, bound to tenant A alone.
A_KEY = "tenant-a-ticketing-k"
#: What a DSR route is sent in the probes: a valid body, so only the id can refuse it.
_DSR_ROUTES: tuple[tuple[str, str, object], ...] = (
    ("GET", "", None),
    ("GET", "/evidence", None),
    ("GET", "/package", None),
    ("GET", "/package/review", None),
    ("POST", "/package", {"language": "en"}),
    ("POST", "/package/review", {}),
    ("POST", "/download", {}),
    ("POST", "/extend", {"days": 10, "reason": "isolation probe"}),
    ("POST", "/retry", {"reason": "isolation probe"}),
    ("POST", "/cancel", {"reason": "isolation probe"}),
    ("DELETE", "/data", {"reason": "isolation probe"}),
)
_TENANT_ROUTES: tuple[tuple[str, str, object], ...] = (
    ("GET", "", None),
    ("PATCH", "", {"displayName": "renamed by A"}),
    ("GET", "/consent-link", None),
    # Offboarding is for a caller bound to every tenant; another tenant's id is still 404.
    ("POST", "/retire", {"force": True}),
    ("POST", "/reinstate", {}),
)


def _tenants_scene(campaign: Campaign) -> dict[str, Any]:
    """A host with ``TENANCY=multi`` (the stack's own Azurite, Entra, identity and Graph, two
    consented customer tenants), both tenants registered, the same ticket sent in each for the
    same UPN (a different person in each directory) and completed, and a key bound to A."""

    def start() -> dict[str, Any]:
        env = {
            **user_env(),
            "TENANCY": "multi",
            "AUTH_FUNCTION_KEY_ROLES": "DSR.Submit,DSR.Read,DSR.Manage,DSR.Admin",
            "TENANCY_OPERATORS": from_function_key(FUNCTION_KEY, ()).id,
            "ORGANISATION_PROFILE": "docs/organisation.sample.json",
        }
        state = campaign.work / "tenants"
        args = ["--port", "0", "--function-key", FUNCTION_KEY, "--speed", str(SPEED)]
        host = ServeProcess(state, env, [*args, "--export-days", "0.5", "--state", str(state)])
        campaign.started.append(host.start(timeout=120))
        for tenant in (TENANT_A, TENANT_B):
            added = host.post("/tenants", {"tenantId": tenant, "displayName": f"T {tenant[-2:]}"})
            expect(added.status_code == 201, f"tenant not registered: {added.status_code}")
        dsrs = {}
        for tenant in (TENANT_A, TENANT_B):
            body = {"requestId": TICKET, "user": DEMO_USER, "tenantId": tenant}
            answer = host.post("/exports", body)
            expect(answer.status_code == 202, f"not started in {tenant}: {answer.text[:200]}")
            dsrs[tenant] = str(answer.json()["requestId"])
        for dsr in dsrs.values():
            host.wait_for(dsr, TERMINAL)
        master = {"x-functions-key": str(host.endpoints["masterKey"])}
        made = requests.put(
            f"{host.api.removesuffix('/api')}/admin/host/keys/tenant-a-ticketing",
            json={"name": "tenant-a-ticketing", "value": A_KEY},
            headers=master,
            timeout=30,
        )
        expect(made.status_code in (200, 201), f"no key for A: {made.status_code}")
        bound = from_function_key(A_KEY, ()).id
        answer = requests.put(
            f"{host.api}/bindings/{bound}",
            json={"kind": "functionKey", "tenants": [TENANT_A]},
            headers={"x-functions-key": FUNCTION_KEY},
            timeout=30,
        )
        expect(answer.status_code in (200, 201), f"not bound: {answer.text[:200]}")
        return {"host": host, "dsrs": dsrs}

    scene: dict[str, Any] = campaign.once("tenants host", start)
    return scene


def _as_a(host: HostProcess, method: str, path: str, body: object = None) -> requests.Response:
    answer = requests.request(
        method, f"{host.api}{path}", json=body, headers={"x-functions-key": A_KEY}, timeout=30
    )
    record_seen(answer.text)
    return answer


def _same_404(host: HostProcess, method: str, theirs: str, nothing: str, body: object) -> None:
    """A's key asks for B's ``theirs`` and for ``nothing`` (names no resource): 404 both, the
    same body but for the id it names."""
    seen = _as_a(host, method, theirs, body)
    unknown = _as_a(host, method, nothing, body)
    expect(seen.status_code == 404, f"{method} {theirs}: {seen.status_code} {seen.text[:200]}")
    expect(unknown.status_code == 404, f"{method} {nothing}: {unknown.status_code}")
    expect(
        _unnamed(seen.text, theirs) == _unnamed(unknown.text, nothing),
        f"{method}: B's answer differs from nothing's: {seen.text[-120:]} / {unknown.text[-120:]}",
    )


def _unnamed(text: str, path: str) -> str:
    """The answer with the path's ids (each segment, quoted or not) taken out."""
    parts = re.split(r"[/?=&]", path)
    for part in sorted({*parts, *map(unquote, parts)}, key=len, reverse=True):
        if len(part) > 8:
            text = text.replace(part, "ID")
    return text


def _dsr_route_probe(method: str, suffix: str, body: object) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        scene = _tenants_scene(campaign)
        theirs = quote(scene["dsrs"][TENANT_B], safe="")
        nothing = quote(
            dsr_keys.dsr_id(TENANT_B, f"NO-SUCH-{uuid.uuid4().hex[:6].upper()}"), safe=""
        )
        _same_404(
            scene["host"], method, f"/exports/{theirs}{suffix}", f"/exports/{nothing}{suffix}", body
        )
        after = scene["host"].get(f"/exports/{theirs}")
        expect(after.json().get("phase") == "completed", "B's DSR changed")

    return check


def _by_ticket_probe(campaign: Campaign) -> None:
    scene = _tenants_scene(campaign)
    nothing = f"NO-SUCH-{uuid.uuid4().hex[:6].upper()}"
    _same_404(
        scene["host"],
        "GET",
        f"/exports/{TICKET}?tenantId={TENANT_B}",
        f"/exports/{nothing}?tenantId={TENANT_B}",
        None,
    )


def _tenant_route_probe(method: str, suffix: str, body: object) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        scene = _tenants_scene(campaign)
        before = scene["host"].get(f"/tenants/{TENANT_B}").json()
        _same_404(
            scene["host"],
            method,
            f"/tenants/{TENANT_B}{suffix}",
            f"/tenants/{uuid.uuid4()}{suffix}",
            body,
        )
        expect(scene["host"].get(f"/tenants/{TENANT_B}").json() == before, "B's entry changed")

    return check


def _gate_probe(campaign: Campaign) -> None:
    """The submit gate's view of B (issue 20's ``GET /api/gate/{tenantId}``): nothing's 404."""
    host = _tenants_scene(campaign)["host"]
    _same_404(host, "GET", f"/gate/{TENANT_B}", f"/gate/{uuid.uuid4()}", None)


def _lists_only_a(campaign: Campaign) -> None:
    host = _tenants_scene(campaign)["host"]
    items = _as_a(host, "GET", "/exports").json()["items"]
    expect(items, "A's list is empty")
    expect({i.get("tenantId") for i in items} == {TENANT_A}, f"A's list: {items[:3]}")
    asked = _as_a(host, "GET", f"/exports?tenantId={TENANT_B}")
    expect(
        asked.status_code == 404 or not asked.json().get("items"),
        f"A's list of B: {asked.status_code} {asked.text[:200]}",
    )
    tenants = _as_a(host, "GET", "/tenants").json()
    listed = {t.get("tenantId") for t in tenants.get("items", tenants.get("tenants", []))}
    expect(listed <= {TENANT_A}, f"A's tenant list: {listed}")


def _submit_for_b(campaign: Campaign) -> None:
    """A's key submits for B: the 404 of a tenant that is not registered, and nothing starts."""
    host = _tenants_scene(campaign)["host"]
    body = {"requestId": f"ISO-{uuid.uuid4().hex[:6].upper()}", "user": DEMO_USER}
    unknown = str(uuid.uuid4())
    for_b = _as_a(host, "POST", "/exports", {**body, "tenantId": TENANT_B})
    for_none = _as_a(host, "POST", "/exports", {**body, "tenantId": unknown})
    expect(for_b.status_code == 404, f"submit for B: {for_b.status_code} {for_b.text[:200]}")
    expect(
        for_b.text.replace(TENANT_B, "ID") == for_none.text.replace(unknown, "ID"),
        f"B's 404 differs from an unknown tenant's: {for_b.text[-120:]} / {for_none.text[-120:]}",
    )
    listed = host.get(f"/exports?tenantId={TENANT_B}").json()["items"]
    started = dsr_keys.dsr_id(TENANT_B, body["requestId"])
    expect(all(i["requestId"] != started for i in listed), "a DSR started in B")


def _graph_token(tenant: str) -> str:
    """The claims an app-only token of ``tenant`` carries to Graph (the simulator reads ``tid``
    and the roles, as tests/devhost/test_graph_tenancy.py does)."""
    now = int(time.time())
    claims = {
        "aud": GRAPH_RESOURCE,
        "tid": tenant,
        "iat": now,
        "nbf": now - 60,
        "exp": now + 3600,
        "roles": ["User.Export.All", "User.Read.All"],
    }
    return jwt.encode(claims, "isolation-probe-key-of-32-bytes-long", algorithm="HS256")


def _graph_refuses(campaign: Campaign) -> None:
    host = _tenants_scene(campaign)["host"]
    graph, ca = str(host.endpoints["graphSimulator"]), str(host.endpoints["caBundle"])
    own = {t: customer_directory(t, [DEMO_USER])[DEMO_USER] for t in (TENANT_A, TENANT_B)}

    def ask(user: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {_graph_token(TENANT_A)}"}
        return requests.get(f"{graph}/v1.0/users/{user}", headers=headers, verify=ca, timeout=30)

    expect(ask(own[TENANT_B]).status_code == 404, "A's token fetched B's user by object id")
    found = ask(DEMO_USER)
    expect(found.status_code == 200 and found.json()["id"] == own[TENANT_A], "not A's person")


def _registry_change(campaign: Campaign) -> None:
    host = _tenants_scene(campaign)["host"]
    before = host.get(f"/tenants/{TENANT_B}")
    for who in ("operator", "A's key"):
        patch = {"displayName": f"A renamed by {who}"}
        answer = (
            requests.patch(
                f"{host.api}/tenants/{TENANT_A}",
                json=patch,
                headers={"x-functions-key": FUNCTION_KEY},
                timeout=30,
            )
            if who == "operator"
            else _as_a(host, "PATCH", f"/tenants/{TENANT_A}", patch)
        )
        expect(answer.status_code == 200, f"{who}'s change of A: {answer.status_code}")
        after = host.get(f"/tenants/{TENANT_B}")
        expect(after.json() == before.json(), f"B changed with A: {after.text[:200]}")
        expect(after.headers.get("ETag") == before.headers.get("ETag"), "B's version moved")


def _tenant_evidence(campaign: Campaign) -> None:
    """Each tenant's chain verifies, is its own DSR's alone, and holds no UPN the session sent
    (the tenants host's storage is its own: the session's evidence scan does not see it)."""
    scene = _tenants_scene(campaign)
    for tenant, dsr in scene["dsrs"].items():
        found = scene["host"].get(f"/exports/{quote(dsr, safe='')}/evidence").json()
        expect(found["verification"]["ok"], f"{tenant}'s chain: {found['verification']}")
        expect({r["requestId"] for r in found["records"]} == {dsr}, f"{tenant}'s chain mixes")
        text = json.dumps(found).lower()
        held = [upn for upn in sorted(PERSONAL) if upn in text]
        expect(not held, f"{tenant}'s evidence holds {held[:3]}")


def tenant_probes() -> list[Probe]:
    """Issue 21's isolation, as a caller bound to tenant A tries it against tenant B. Each
    needs the multi-tenant host (a stack of its own, ~15 s once): not in the in-suite sample."""
    family = "tenant isolation"
    probes = [
        Probe(
            family,
            f"A's key, {m} /exports/{{B's id}}{s}: 404 as nothing",
            _dsr_route_probe(m, s, b),
            False,
        )
        for m, s, b in _DSR_ROUTES
    ]
    probes += [
        Probe(
            family,
            f"A's key, {m} /tenants/{{B}}{s}: 404 as nothing",
            _tenant_route_probe(m, s, b),
            False,
        )
        for m, s, b in _TENANT_ROUTES
    ]
    return [
        *probes,
        Probe(family, "A's key, B's ticket by tenantId: 404 as nothing", _by_ticket_probe, False),
        Probe(family, "A's key, GET /gate/{B}: 404 as nothing", _gate_probe, fast=False),
        Probe(family, "A's key lists A's DSRs and tenant only", _lists_only_a, fast=False),
        Probe(family, "A's key submitting for B: 404", _submit_for_b, fast=False),
        Probe(family, "A's Graph token never fetches B's user", _graph_refuses, fast=False),
        Probe(family, "a registry change for A leaves B as it was", _registry_change, False),
        Probe(family, "each tenant's evidence: its own, verified, no UPN", _tenant_evidence, False),
    ]


# -- personal data, after everything else ------------------------------------------------------
class CallbackSink:
    """An HTTPS receiver on loopback that keeps every callback's body (for the scan)."""

    def __init__(self, tls: TlsFiles) -> None:
        self.bodies: list[str] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sink.bodies.append(self.rfile.read(length).decode(errors="replace"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = server_ssl_context(tls).wrap_socket(
            self.server.socket, server_side=True
        )
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _with_callbacks(campaign: Campaign) -> list[str]:
    """DSRs submitted by UPN with a callback each (one completes, one fails), so the scan
    has callbacks and UPN-submitted DSRs to look at."""
    sink = CallbackSink(campaign.tls)
    try:
        upn = f"callback-{uuid.uuid4().hex[:6]}@contoso.example"
        campaign.graph.add_user(upn, str(uuid.uuid4()))
        unknown = f"unknown-{uuid.uuid4().hex[:6]}@contoso.example"
        ids = []
        for user in (upn, unknown):
            request_id = _rid("PDCB")
            body = {
                "requestId": request_id,
                "user": user,
                "callbackUrl": f"https://127.0.0.1:{sink.port}/cb?ticket={request_id}",
            }
            expect(campaign.host.post("/exports", body).status_code == 202, "not started")
            ids.append(request_id)
        for request_id in ids:
            campaign.host.wait_for(request_id, TERMINAL)
        deadline = time.monotonic() + 60
        while len(sink.bodies) < len(ids):
            expect(time.monotonic() < deadline, f"{len(sink.bodies)} callbacks arrived")
            time.sleep(0.1)
        return list(sink.bodies)
    finally:
        sink.close()


def _callbacks_clean(campaign: Campaign) -> None:
    bodies = campaign.once("callbacks", lambda: _with_callbacks(campaign))
    for body in bodies:
        record_seen(body)
    held = [upn for upn in PERSONAL for body in bodies if upn in body.lower()]
    expect(not held, f"a callback carries {held[:3]}")


def _scan(where: str) -> Callable[[Campaign], None]:
    def check(campaign: Campaign) -> None:
        campaign.once("callbacks", lambda: _with_callbacks(campaign))
        found = [f for f in personal_data_found() if where in f]
        expect(not found, "; ".join(found[:5]))

    return check


def _evidence_clean(campaign: Campaign) -> None:
    checked, broken, purged = evidence_problems(campaign.azurite, campaign.tls)
    expect(checked > 0, "no evidence log to check")
    expect(not broken, "; ".join(broken[:5]))
    leftovers = purged_personal_data_found(purged)
    expect(not leftovers, "; ".join(leftovers[:5]))


def personal_probes() -> list[Probe]:
    return [
        Probe("personal data", "callbacks carry no UPN", _callbacks_clean, fast=False),
        Probe("personal data", "answers carry no UPN", _scan("answer "), fast=False),
        Probe("personal data", "task hubs' status and outputs", _scan("custom status"), False),
        Probe("personal data", "host logs carry no UPN", _scan("host.log"), fast=False),
        Probe(
            "personal data",
            "evidence verifies, no UPN, purged DSRs gone",
            _evidence_clean,
            fast=False,
        ),
    ]


# -- the whole campaign --------------------------------------------------------------------------
def all_probes() -> list[Probe]:
    """Every probe, in the order they run (the personal-data scan last)."""
    return [
        *role_probes(),
        *id_probes(),
        *url_probes(),
        *f1_probes(),
        *f2_probes(),
        *retention_probes(),
        *f5_probes(),
        *f6_probes(),
        *f7_probes(),
        *f8_probes(),
        *cli_probes(),
        *f12_probes(),
        *f13_probes(),
        *notes_probes(),
        *admin_probes(),
        *slow_probes(),
        *tenant_probes(),
        *personal_probes(),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.review_probes", description=__doc__)
    parser.add_argument("--family", action="append", help="run only these families (repeat)")
    parser.add_argument("--sample", type=int, help="a seeded sample of this many fast probes")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--list", action="store_true", help="list the probes and exit")
    args = parser.parse_args(argv)
    probes = all_probes()
    if args.family:
        probes = [p for p in probes if any(p.family.startswith(f) for f in args.family)]
    if args.sample:
        probes = sample(probes, args.sample, args.seed)
    if args.list:
        print("\n".join(f"{p.family} / {p.name}" for p in probes))
        return 0
    with tempfile.TemporaryDirectory(prefix="review-probes-") as work:
        with offline_campaign(Path(work)) as campaign:
            started = time.monotonic()
            outcomes = run(campaign, probes)
        print(table(outcomes))
        print(f"{len(outcomes)} probes in {time.monotonic() - started:.0f} s")
    return 0 if all(o.held for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
