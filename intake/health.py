"""``GET /api/health``: can this deployment export? For the smoke test after ``azd up``.

Without ``deep`` it checks every setting (no I/O). With ``?deep=true`` it also asks the managed
identity for a Graph token and checks the app roles in it (admin consent), and makes one
harmless call to the export account. A failure answers 503 with a problem document naming each
setting or permission to fix; nothing secret is ever echoed.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.identity import DefaultAzureCredential

from dsr_export import health, problems
from dsr_export.model import FieldError
from dsr_export.settings import ExportStorageSettings, GraphSettings
from dsr_export.storage import ExportStorage

bp = df.Blueprint()


@functools.cache
def _credential() -> DefaultAzureCredential:
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


@bp.route(route="health", methods=["GET"])
def get_health(req: func.HttpRequest) -> func.HttpResponse:
    """Settings, and with ``deep`` the Graph app roles and export storage access."""
    env = dict(os.environ)
    faults = health.settings_problems(env)
    checks: dict[str, Any] = {"settings": "ok" if not faults else "failed"}
    if not faults and req.params.get("deep", "").lower() in {"1", "true", "yes"}:
        faults += _deep(env, checks)
    if faults:
        body = problems.problem(
            503,
            "Not ready to export",
            "fix each item in errors; see docs/deploy.md",
            slug="misconfigured",
            errors=faults,
            checks=checks,
        )
        return func.HttpResponse(
            problems.dumps(body), status_code=503, mimetype=problems.CONTENT_TYPE
        )
    document = {"status": "ok", "checks": checks, "configuration": health.configuration(env)}
    return func.HttpResponse(json.dumps(document), status_code=200, mimetype="application/json")


def _deep(env: dict[str, str], checks: dict[str, Any]) -> list[FieldError]:
    faults = []
    missing = health.missing_graph_roles(_credential(), GraphSettings.from_env(env))
    checks["graphRoles"] = "ok" if not missing else "missing"
    if missing:
        faults.append(
            FieldError(
                "/graph/roles",
                f"the managed identity's Graph token lacks {', '.join(missing)}: grant the "
                "application permissions with admin consent (docs/deploy.md)",
            )
        )
    storage = ExportStorage(ExportStorageSettings.from_env(env), _credential())
    error = health.storage_problem(storage.probe)
    checks["exportStorage"] = "ok" if error is None else "failed"
    if error is not None:
        faults.append(FieldError("/exportStorage", str(error.get("hint") or error["message"])))
    return faults
