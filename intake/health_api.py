"""``GET /api/health``: can this deployment export? For the smoke test after ``azd up``.

Without ``deep`` it checks every setting (no I/O). With ``?deep=true`` it also asks the managed
identity for a Graph token and checks the app roles in it (admin consent), makes one
harmless call to the export account, (with an Entra registration configured) fetches the
tenant's signing keys the app judges callers' tokens with, and reads the receipt key's public
versions (the identity's role on the key). A failure answers 503 with a problem document naming
each setting or permission to fix; nothing secret is ever echoed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain import problems
from dsr_export.domain.callers import KeysUnavailable
from dsr_export.domain.request import FieldError
from dsr_export.settings import AuthSettings, GraphSettings

bp = df.Blueprint()


@bp.route(route="health", methods=["GET"])
def get_health(req: func.HttpRequest) -> func.HttpResponse:
    """Settings, and with ``deep`` the Graph app roles and export storage access."""
    # Imported here, not at cold start: the checks pull in the storage and Graph SDKs.
    from dsr_export.adapters import health
    from intake import tenant_checks

    env = dict(os.environ)
    faults = health.settings_problems(env)
    checks: dict[str, Any] = {"settings": "ok" if not faults else "failed"}
    extra: dict[str, Any] = {}  # per registered tenant (TENANCY=multi): intake/tenant_checks.py
    if not faults and req.params.get("deep", "").lower() in {"1", "true", "yes"}:
        faults += _deep(env, checks)
        faults += tenant_checks.deep(env, checks, extra, req)
    if faults:
        return _unready(faults, checks, extra)
    document = {
        "status": "ok",
        "checks": checks,
        "configuration": health.configuration(env),
        "warnings": health.warnings(env),
        **extra,
    }
    return func.HttpResponse(json.dumps(document), status_code=200, mimetype="application/json")


def _unready(
    faults: list[FieldError], checks: dict[str, Any], extra: dict[str, Any]
) -> func.HttpResponse:
    """503: each fault named, with what each check found."""
    body = problems.problem(
        503,
        "Not ready to export",
        "fix each item in errors; see docs/deploy.md",
        slug="misconfigured",
        errors=faults,
        checks=checks,
        **extra,
    )
    return func.HttpResponse(problems.dumps(body), status_code=503, mimetype=problems.CONTENT_TYPE)


def _deep(env: dict[str, str], checks: dict[str, Any]) -> list[FieldError]:
    from dsr_export.adapters import health

    faults = []
    missing = health.missing_graph_roles(composition.credential(), GraphSettings.from_env(env))
    checks["graphRoles"] = "ok" if not missing else "missing"
    if missing:
        faults.append(
            FieldError(
                "/graph/roles",
                f"the managed identity's Graph token lacks {', '.join(missing)}: grant the "
                "application permissions with admin consent (docs/deploy.md)",
            )
        )
    error = health.storage_problem(composition.export_storage().probe)
    checks["exportStorage"] = "ok" if error is None else "failed"
    if error is not None:
        faults.append(FieldError("/exportStorage", str(error.get("hint") or error["message"])))
    if AuthSettings.from_env(env).entra is not None:
        faults += _entra_keys(checks)
    if env.get("RECEIPT_SIGNING_KEY_ID", "").strip():
        faults += _receipt_key(checks)
    return faults


def _entra_keys(checks: dict[str, Any]) -> list[FieldError]:
    """Can the app judge a caller's token: are its tenant's signing keys to be had?"""
    try:
        count = composition.token_validator().signing_keys.ready()
    except KeysUnavailable as exc:
        count, why = 0, str(exc)
    else:
        why = "the tenant publishes no RSA signing key"
    checks["entraKeys"] = "ok" if count else "failed"
    if count:
        return []
    return [
        FieldError(
            "/settings/AUTH_AUTHORITY_HOST",
            f"the Entra tenant's signing keys cannot be had ({why}): check AUTH_AUTHORITY_HOST, "
            "AUTH_TENANT_ID and the app's outbound access to the login host",
        )
    ]


def _receipt_key(checks: dict[str, Any]) -> list[FieldError]:
    """Can the identity read the receipt key (its role on it)? Signing is not tried: the
    health check signs nothing."""
    from dsr_export.adapters.receipt_signer import ReceiptSigningError

    try:
        composition.receipt_signer().public_keys()
    except ReceiptSigningError as exc:
        checks["receiptKey"] = "failed"
        return [FieldError("/receiptKey", f"{exc.message}: {exc.fix}")]
    checks["receiptKey"] = "ok"
    return []
