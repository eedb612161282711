"""Tests and demos steer the simulator from outside its process, where only HTTP reaches.

The app under test runs in another process (the e2e host, ``make demo``), so faults, new
users, the quota knobs, the clock tick and everything the simulator observed are also served
as JSON under ``/_sim/``, without a token. Inspection never shows a SAS signature: operations
carry the container URL only, and error texts are redacted.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from .redaction import redact
from .replies import Reply, json_reply

if TYPE_CHECKING:
    from .simulator import GraphSimulator

PREFIX = "/_sim/"


def admin_reply(sim: GraphSimulator, method: str, path: str, body: bytes) -> Reply:
    """Answer one admin request (``path`` starts with ``PREFIX``) through the public API."""
    name = path[len(PREFIX) :].strip("/")
    try:
        if name == "faults":
            if method == "POST":
                sim.set_faults(**_json_object(body))
            elif method == "DELETE":
                sim.reset_faults()
            return json_reply(200, sim.faults.to_json())
        if name == "quotas":
            if method == "POST":
                sim.set_quotas(**_json_object(body))
            elif method == "DELETE":
                sim.reset_quotas()
            return json_reply(200, sim.quotas.to_json())
        if name == "quotas/usage":
            return json_reply(200, sim.quota_usage())
        if name == "operations":
            return json_reply(200, [op.to_json() for op in sim.operations()])
        if name.startswith("operations/") and name.endswith("/files"):
            return json_reply(200, sim.expected_files(name.split("/")[1]))
        if name == "stats":
            stats = {
                "submissionsByUser": sim.submissions_by_user(),
                "submissionsByContainer": sim.submissions_by_container(),
                "operations": len(sim.operations()),
            }
            return json_reply(200, stats)
        if name == "requests":
            return json_reply(200, [dataclasses.asdict(r) for r in sim.requests()])
        if name == "users" and method == "POST":
            data = _json_object(body)
            return json_reply(200, {"id": sim.add_user(data["upn"], data.get("id"))})
        if name == "tick" and method == "POST":
            sim.tick()
            return json_reply(200, {})
    except (KeyError, ValueError, TypeError) as error:
        return json_reply(400, {"error": redact(str(error))})
    return json_reply(404, {"error": f"no admin route {method} {path}"})


def _json_object(body: bytes) -> dict[str, Any]:
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data
