"""Tests and demos steer the simulator from outside its process, where only HTTP reaches.

The app under test runs in another process (the e2e host, ``make demo``), so faults, new
users, the quota knobs, the clock tick and everything the simulator observed are also served
as JSON under ``/_sim/``, without a token. Inspection never shows a SAS signature: operations
carry the container URL only, and error texts are redacted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .redaction import redact
from .replies import Reply, json_reply

if TYPE_CHECKING:
    from .simulator import GraphSimulator

PREFIX = "/_sim/"


def admin_reply(sim: GraphSimulator, method: str, path: str, body: bytes) -> Reply:
    """Answer one admin request (``path`` starts with ``PREFIX``) through the public API."""
    name = path[len(PREFIX) :].strip("/")
    if name.startswith("operations/") and name.endswith("/files"):
        route: _Route | None = _files
    else:
        route = _ROUTES.get(name)
    try:
        answer = route(sim, method, body, name) if route is not None else None
    except (KeyError, ValueError, TypeError) as error:
        return json_reply(400, {"error": redact(str(error))})
    if answer is None:
        return json_reply(404, {"error": f"no admin route {method} {path}"})
    return json_reply(200, answer)


#: One admin route: (simulator, method, body, name) -> the JSON to answer, or None (no route).
_Route = Callable[["GraphSimulator", str, bytes, str], Any]


def _faults(sim: GraphSimulator, method: str, body: bytes, name: str) -> Any:
    if method == "POST":
        sim.set_faults(**_json_object(body))
    elif method == "DELETE":
        sim.reset_faults()
    return sim.faults.to_json()


def _quotas(sim: GraphSimulator, method: str, body: bytes, name: str) -> Any:
    if method == "POST":
        sim.set_quotas(**_json_object(body))
    elif method == "DELETE":
        sim.reset_quotas()
    return sim.quotas.to_json()


def _files(sim: GraphSimulator, method: str, body: bytes, name: str) -> Any:
    return sim.expected_files(name.split("/")[1])


def _stats(sim: GraphSimulator, method: str, body: bytes, name: str) -> Any:
    return {
        "submissionsByUser": sim.submissions_by_user(),
        "submissionsByContainer": sim.submissions_by_container(),
        "operations": len(sim.operations()),
    }


def _users(sim: GraphSimulator, method: str, body: bytes, name: str) -> Any:
    if method != "POST":
        return None
    data = _json_object(body)
    return {"id": sim.add_user(data["upn"], data.get("id"))}


def _tick(sim: GraphSimulator, method: str, body: bytes, name: str) -> Any:
    if method != "POST":
        return None
    sim.tick()
    return {}


_ROUTES: dict[str, _Route] = {
    "faults": _faults,
    "quotas": _quotas,
    "quotas/usage": lambda sim, method, body, name: sim.quota_usage(),
    "operations": lambda sim, method, body, name: [op.to_json() for op in sim.operations()],
    "stats": _stats,
    "requests": lambda sim, method, body, name: [dataclasses.asdict(r) for r in sim.requests()],
    "users": _users,
    "tick": _tick,
}


def _json_object(body: bytes) -> dict[str, Any]:
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data
