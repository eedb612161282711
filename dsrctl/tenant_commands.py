"""``dsrctl tenants``: the tenant registry of a multi-tenant deployment (app role ``DSR.Admin``).

``list [--state active|retired|all]``, ``add TENANT_ID --name ...``,
``update TENANT_ID [--name ...] [--if-match ETAG]``, ``consent-link TENANT_ID`` (the URL to send
the tenant's administrator), ``health`` (each active tenant's token, Graph permissions and
storage, from ``GET /api/health?deep=true``), and offboarding: ``retire TENANT_ID [--force]``
and ``reinstate TENANT_ID``; and
``dsrctl bindings`` (``list``, ``show``, ``set``, ``remove``, ``fingerprint``): which tenants each
caller may act in. A secret is never an option: the callback secret is given as a Key Vault
secret URI (``--callback-secret-ref``), and a key to fingerprint is read from standard input.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from dsr_export.domain.callers import from_function_key
from dsrctl import output
from dsrctl.commands import Settings, _handled, _json_option
from dsrctl.output import is_interactive

CLOUDS = ("global", "usgov", "usgovdod", "china")


@click.group(name="tenants")
def tenants() -> None:
    """The tenant registry (TENANCY=multi): list, add, update, consent link, health, retire."""


def _fields(
    name: str | None,
    cloud: str | None,
    regulation: str | None,
    secret_ref: str | None,
    submits: int | None,
    polls: int | None,
) -> dict[str, Any]:
    """The registry fields the options give (an option left out is not sent)."""
    body: dict[str, Any] = {}
    if name is not None:
        body["displayName"] = name
    if cloud is not None:
        body["cloud"] = cloud
    if regulation is not None:
        body["regulation"] = int(regulation) if regulation.strip().isdigit() else regulation
    if secret_ref is not None:
        body["callbackSecretRef"] = secret_ref or None
    budget = {
        key: value
        for key, value in (("submitsPerDay", submits), ("pollsPerHour", polls))
        if value is not None
    }
    if budget:
        body["quotaBudget"] = budget
    return body


def _field_options(function: Any) -> Any:
    for option in reversed(
        [
            click.option("--cloud", type=click.Choice(CLOUDS), help="The tenant's cloud."),
            click.option(
                "--regulation", help="Default regulation: gdpr, ccpa or a number of days."
            ),
            click.option(
                "--callback-secret-ref",
                "secret_ref",
                help="Key Vault secret URI of its callback secret ('' to clear); never the secret.",
            ),
            click.option("--submits-per-day", "submits", type=click.IntRange(1, 1000)),
            click.option("--polls-per-hour", "polls", type=click.IntRange(1, 10000)),
        ]
    ):
        function = option(function)
    return function


def _rows(items: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            str(item.get("tenantId")),
            output.printable(item.get("displayName")),
            str(item.get("cloud")),
            output.compact(item.get("regulation")),
            str(item.get("state") or "active"),
            output.moment(item.get("updatedAt")),
        ]
        for item in items
    ]


@tenants.command(name="list")
@click.option(
    "--state",
    type=click.Choice(("active", "retired", "all")),
    help="Which tenants (default: the active ones).",
)
@_json_option
@_handled
def list_tenants(settings: Settings, out: output.Output, state: str | None) -> int:
    """List the registered tenants (GET /api/tenants)."""
    answer = settings.client().tenants(state)
    if out.json_mode:
        out.json(answer)
        return output.EXIT_OK
    items = [item for item in answer.get("tenants") or [] if isinstance(item, dict)]
    out.table(["TENANT ID", "NAME", "CLOUD", "REGULATION", "STATE", "UPDATED"], _rows(items))
    out.info(f"{len(items)} tenant{'' if len(items) == 1 else 's'}")
    return output.EXIT_OK


@tenants.command(name="add")
@click.argument("tenant_id")
@click.option("--name", required=True, help="The organisation's name.")
@_field_options
@_json_option
@_handled
def add_tenant(
    settings: Settings,
    out: output.Output,
    tenant_id: str,
    name: str,
    cloud: str | None,
    regulation: str | None,
    secret_ref: str | None,
    submits: int | None,
    polls: int | None,
) -> int:
    """Register a tenant (POST /api/tenants); then send its administrator the consent link."""
    body = {"tenantId": tenant_id, **_fields(name, cloud, regulation, secret_ref, submits, polls)}
    added = settings.client().add_tenant(body)
    if _as_json_or_pairs(out, added):
        return output.EXIT_OK
    out.info(f"next: dsrctl tenants consent-link {added.get('tenantId')}")
    return output.EXIT_OK


@tenants.command(name="update")
@click.argument("tenant_id")
@click.option("--name", help="The organisation's name.")
@_field_options
@click.option("--if-match", help="Change only this version (the ETag a read answered).")
@_json_option
@_handled
def update_tenant(
    settings: Settings,
    out: output.Output,
    tenant_id: str,
    name: str | None,
    cloud: str | None,
    regulation: str | None,
    secret_ref: str | None,
    submits: int | None,
    polls: int | None,
    if_match: str | None,
) -> int:
    """Change a tenant (PATCH /api/tenants/{id}): only the options given."""
    patch = _fields(name, cloud, regulation, secret_ref, submits, polls)
    if not patch:
        raise click.UsageError("give at least one field to change")
    changed = settings.client().update_tenant(tenant_id, patch, if_match=if_match)
    _as_json_or_pairs(out, changed)
    return output.EXIT_OK


@tenants.command(name="consent-link")
@click.argument("tenant_id")
@click.option("--redirect-uri", help="Where Entra sends the administrator after (https).")
@_json_option
@_handled
def consent_link(
    settings: Settings, out: output.Output, tenant_id: str, redirect_uri: str | None
) -> int:
    """The admin-consent URL the tenant's administrator opens (GET .../consent-link)."""
    answer = settings.client().consent_link(tenant_id, redirect_uri)
    if out.json_mode:
        out.json(answer)
        return output.EXIT_OK
    out.line(str(answer.get("consentLink")))
    permissions = ", ".join(str(p) for p in answer.get("permissions") or [])
    out.info(f"grants {permissions} to app {answer.get('clientId')} in {tenant_id}")
    return output.EXIT_OK


@tenants.command(name="health")
@_json_option
@_handled
def tenants_health(settings: Settings, out: output.Output) -> int:
    """Each tenant's token, Graph permissions and storage (GET /api/health?deep=true)."""
    answer = settings.client().health(deep=True)
    results = answer.body.get("tenants") or {}
    if out.json_mode:
        out.json({"status": answer.status, "tenants": results})
    else:
        rows = [
            [str(tid), str(r.get("token")), str(r.get("graphRoles")), str(r.get("storage"))]
            for tid, r in sorted(results.items())
            if isinstance(r, dict)
        ]
        out.table(["TENANT ID", "TOKEN", "GRAPH ROLES", "STORAGE"], rows)
        for error in answer.body.get("errors") or []:
            if isinstance(error, dict) and str(error.get("pointer", "")).startswith("/tenants"):
                out.warning(f"{error.get('pointer')}: {output.printable(error.get('detail'))}")
    return output.EXIT_OK if answer.status == 200 else output.EXIT_FAILED


@tenants.command(name="retire")
@click.argument("tenant_id")
@click.option("--force", is_flag=True, help="Retire even while its DSRs are in flight.")
@click.option("--if-match", help="Retire only this version (the ETag a read answered).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@_handled
def retire_tenant(
    settings: Settings,
    out: output.Output,
    tenant_id: str,
    force: bool,
    if_match: str | None,
    yes: bool,
) -> int:
    """Retire a tenant whose customer left (POST /api/tenants/{id}/retire): it takes no new
    DSR, leaves the health check, and every binding naming it stops naming it."""
    if not yes:
        if not out.interactive or not is_interactive(sys.stdin):
            raise click.UsageError("retire removes the tenant from every binding: add --yes")
        click.confirm(
            f"Retire tenant {output.printable(tenant_id)} and unbind its callers?", abort=True
        )
    answer = settings.client().retire_tenant(tenant_id, force=force, if_match=if_match)
    if out.json_mode:
        out.json(answer)
        return output.EXIT_OK
    swept = [str(p) for p in answer.get("bindingsChanged") or []]
    out.line(f"{answer.get('tenantId')}: retired at {output.moment(answer.get('retiredAt'))}")
    out.info(f"bindings changed: {', '.join(swept) if swept else 'none'}")
    return output.EXIT_OK


@tenants.command(name="reinstate")
@click.argument("tenant_id")
@click.option("--if-match", help="Reinstate only this version (the ETag a read answered).")
@_json_option
@_handled
def reinstate_tenant(
    settings: Settings, out: output.Output, tenant_id: str, if_match: str | None
) -> int:
    """Make a retired tenant active again (POST /api/tenants/{id}/reinstate); bind its callers
    again afterwards (dsrctl bindings set), and check its consent (dsrctl tenants health)."""
    answer = settings.client().reinstate_tenant(tenant_id, if_match=if_match)
    if out.json_mode:
        out.json(answer)
        return output.EXIT_OK
    out.line(f"{answer.get('tenantId')}: {answer.get('state')}")
    out.info(f"next: dsrctl bindings set <principal> --tenant {answer.get('tenantId')}")
    return output.EXIT_OK


# -- the callers' tenant bindings ------------------------------------------------------------

KINDS = ("user", "application", "group", "functionKey")


@click.group(name="bindings")
def bindings() -> None:
    """Which tenants each caller may act in (TENANCY=multi): list, show, set, remove.

    A principal is an Entra object id (user), application id, group id, or a function key's
    fingerprint (``dsrctl bindings fingerprint``). Only a caller bound to every tenant may
    read or change bindings.
    """


def _binding_rows(items: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            str(item.get("principal")),
            str(item.get("kind")),
            output.compact(item.get("tenants")),
            output.moment(item.get("updatedAt")),
        ]
        for item in items
    ]


@bindings.command(name="list")
@_json_option
@_handled
def list_bindings(settings: Settings, out: output.Output) -> int:
    """List every binding (GET /api/bindings)."""
    answer = settings.client().bindings()
    if out.json_mode:
        out.json(answer)
        return output.EXIT_OK
    items = [item for item in answer.get("bindings") or [] if isinstance(item, dict)]
    out.table(["PRINCIPAL", "KIND", "TENANTS", "UPDATED"], _binding_rows(items))
    out.info(f"{len(items)} binding{'' if len(items) == 1 else 's'}")
    return output.EXIT_OK


@bindings.command(name="show")
@click.argument("principal")
@_json_option
@_handled
def show_binding(settings: Settings, out: output.Output, principal: str) -> int:
    """One principal's binding (GET /api/bindings/{principal})."""
    answer = settings.client().binding(principal)
    _as_json_or_pairs(out, answer)
    return output.EXIT_OK


@bindings.command(name="set")
@click.argument("principal")
@click.option("--kind", type=click.Choice(KINDS), help="What the principal is (not for a key).")
@click.option("--tenant", "tenant_ids", multiple=True, help="A tenant id (repeat for more).")
@click.option("--all-tenants", is_flag=True, help="Every tenant: the deployment's operators.")
@_json_option
@_handled
def set_binding(
    settings: Settings,
    out: output.Output,
    principal: str,
    kind: str | None,
    tenant_ids: tuple[str, ...],
    all_tenants: bool,
) -> int:
    """Bind a principal to tenants, replacing its binding (PUT /api/bindings/{principal})."""
    if all_tenants == bool(tenant_ids):
        raise click.UsageError("give --tenant (one or more) or --all-tenants")
    body: dict[str, Any] = {"tenants": "*" if all_tenants else list(tenant_ids)}
    if kind is not None:
        body["kind"] = kind
    answer = settings.client().bind(principal, body)
    _as_json_or_pairs(out, answer)
    return output.EXIT_OK


@bindings.command(name="remove")
@click.argument("principal")
@_json_option
@_handled
def remove_binding(settings: Settings, out: output.Output, principal: str) -> int:
    """Remove a principal's binding: it then reaches no tenant (DELETE /api/bindings/...)."""
    answer = settings.client().unbind(principal)
    if out.json_mode:
        out.json(answer)
        return output.EXIT_OK
    out.info(f"{principal} is bound to no tenant now")
    return output.EXIT_OK


@bindings.command(name="fingerprint")
@_handled
def key_fingerprint(settings: Settings, out: output.Output) -> int:
    """A function key's fingerprint, the principal that binds it: reads the key from standard
    input (never an argument: it would stay in the shell's history). Needs no --url."""
    key = sys.stdin.read().strip()
    if not key:
        raise click.UsageError("pipe the function key on standard input")
    out.line(from_function_key(key, ()).id)
    return output.EXIT_OK


def _as_json_or_pairs(out: output.Output, answer: dict[str, Any]) -> bool:
    """Print an answer whole: as JSON under ``--json`` (True: nothing more to print), else
    as ``name: value`` lines (False: the command may add its hint)."""
    if out.json_mode:
        out.json(answer)
        return True
    out.pairs([(key, output.compact(value)) for key, value in answer.items()])
    return False
