"""The tenant registry's model: what an operator may register, the consent link, the change
record (hashes, never values), and the tenancy setting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dsr_export.domain import tenants
from dsr_export.domain.request import InvalidRequest
from dsr_export.settings import SettingsError, Tenancy, TenancySettings

TID = "00000000-0000-4000-8000-0000000000c1"
VAULT_REF = "https://dsr-kv.vault.azure.net/secrets/contoso-callbacks"


def pointers(exc: pytest.ExceptionInfo[InvalidRequest]) -> list[str]:
    return [error.pointer for error in exc.value.errors]


def test_a_minimal_tenant_takes_the_defaults() -> None:
    tenant = tenants.parse_tenant({"tenantId": TID.upper(), "displayName": " Contoso "})
    assert tenant.tenant_id == TID
    assert tenant.display_name == "Contoso"
    assert tenant.to_json() == {
        "tenantId": TID,
        "displayName": "Contoso",
        "cloud": "global",
        "regulation": "gdpr",
        "deadlineWarningDays": 7,
        "callbackSecretRef": None,
        "exportsAccount": None,
        "evidencePrefix": f"t-{TID}",
        "quotaBudget": {"submitsPerDay": 1000, "pollsPerHour": 10000},
        "state": "active",
        "retiredAt": None,
        "retiredBy": None,
    }
    assert tenants.from_stored(tenant.to_json()) == tenant


def test_every_field_at_fault_is_named() -> None:
    with pytest.raises(InvalidRequest) as exc:
        tenants.parse_tenant(
            {
                "tenantId": "contoso.onmicrosoft.com",
                "displayName": "",
                "cloud": "mars",
                "regulation": "hipaa",
                "deadlineWarningDays": 99,
                "callbackSecretRef": "https://example.com/secrets/x",
                "exportsAccount": "http://plain.blob.core.windows.net",
                "evidencePrefix": "Not Valid",
                "quotaBudget": {"submitsPerDay": 5000, "burst": 1},
                "colour": "blue",
            }
        )
    assert sorted(pointers(exc)) == sorted(
        [
            "/tenantId",
            "/displayName",
            "/cloud",
            "/regulation",
            "/deadlineWarningDays",
            "/callbackSecretRef",
            "/exportsAccount",
            "/evidencePrefix",
            "/quotaBudget/submitsPerDay",
            "/quotaBudget/burst",
            "/colour",
        ]
    )


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x)",
    ],
)
def test_a_secret_is_refused_and_never_echoed(secret: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        tenants.parse_tenant({"tenantId": TID, "displayName": "C", "callbackSecretRef": secret})
    assert pointers(exc) == ["/callbackSecretRef"]
    assert secret not in str(exc.value)
    assert "never the secret itself" in str(exc.value)


def test_a_key_vault_secret_uri_is_kept_as_a_reference() -> None:
    versioned = VAULT_REF + "/0123456789abcdef0123456789abcdef"
    for ref in (VAULT_REF, VAULT_REF + "/", versioned):
        tenant = tenants.parse_tenant(
            {"tenantId": TID, "displayName": "C", "callbackSecretRef": ref}
        )
        assert tenant.callback_secret_ref == ref.rstrip("/")


def test_a_patch_changes_what_it_names_and_resets_nulls() -> None:
    tenant = tenants.parse_tenant(
        {"tenantId": TID, "displayName": "C", "callbackSecretRef": VAULT_REF, "regulation": "ccpa"}
    )
    patched = tenants.apply_patch(
        tenant, {"displayName": "Contoso EU", "callbackSecretRef": None, "quotaBudget": None}
    )
    assert patched.display_name == "Contoso EU"
    assert patched.callback_secret_ref is None
    assert patched.regulation.name == "ccpa"
    with pytest.raises(InvalidRequest) as exc:
        tenants.apply_patch(tenant, {"tenantId": "00000000-0000-4000-8000-0000000000c2"})
    assert pointers(exc) == ["/tenantId"]


def test_a_patch_merges_the_quota_budget_member_by_member() -> None:
    tenant = tenants.parse_tenant(
        {
            "tenantId": TID,
            "displayName": "C",
            "quotaBudget": {"submitsPerDay": 500, "pollsPerHour": 900},
        }
    )
    halved = tenants.apply_patch(tenant, {"quotaBudget": {"submitsPerDay": 250}})
    assert halved.quota_budget == tenants.QuotaBudget(250, 900)
    reset = tenants.apply_patch(halved, {"quotaBudget": {"pollsPerHour": None}})
    assert reset.quota_budget == tenants.QuotaBudget(250, tenants.POLLS_PER_HOUR_LIMIT)


def test_the_consent_link_is_the_admin_consent_endpoint_of_the_tenants_cloud() -> None:
    client = "00000000-0000-4000-8000-0000000000ac"
    tenant = tenants.parse_tenant({"tenantId": TID, "displayName": "C"})
    assert tenants.consent_link(tenant, client) == (
        f"https://login.microsoftonline.com/{TID}/v2.0/adminconsent?client_id={client}"
        "&scope=https://graph.microsoft.com/.default"
    )
    gov = tenants.apply_patch(tenant, {"cloud": "usgov"})
    link = tenants.consent_link(gov, client, "https://ops.example/consented")
    assert link.startswith(f"https://login.microsoftonline.us/{TID}/v2.0/adminconsent?")
    assert "scope=https://graph.microsoft.us/.default" in link
    assert "redirect_uri=https://ops.example/consented" in link


def test_a_change_record_names_fields_and_hashes_never_values() -> None:
    at = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)
    by = {"kind": "user", "id": "00000000-0000-4000-8000-00000000aaaa"}
    first = tenants.parse_tenant(
        {"tenantId": TID, "displayName": "Contoso", "callbackSecretRef": VAULT_REF}
    )
    second = tenants.apply_patch(first, {"displayName": "Contoso EU"})
    created = tenants.change_record(
        previous_hash=None, at=at, by=by, action="created", before=None, after=first
    )
    updated = tenants.change_record(
        previous_hash=created["hash"], at=at, by=by, action="updated", before=first, after=second
    )
    assert set(created["changed"]) == set(first.to_json())
    assert list(updated["changed"]) == ["displayName"]
    assert updated["changed"]["displayName"]["from"].startswith("sha256:")
    text = repr([created, updated])
    assert "Contoso" not in text
    assert "contoso-callbacks" not in text
    assert tenants.verify_chain([created, updated]) == []
    assert tenants.verify_chain([updated]) == ["line 1: does not chain onto the line before it"]
    forged = {**updated, "action": "created"}
    assert tenants.verify_chain([created, forged]) == [
        "line 2: its hash does not match its content"
    ]


def test_tenancy_is_single_unless_set_and_multi_needs_the_apps_client_id() -> None:
    assert TenancySettings.from_env({}) == TenancySettings(Tenancy.SINGLE, None)
    multi = TenancySettings.from_env(
        {"TENANCY": "Multi", "MULTI_TENANT_CLIENT_ID": "00000000-0000-4000-8000-0000000000AC"}
    )
    assert multi.multi
    assert multi.client_id == "00000000-0000-4000-8000-0000000000ac"
    with pytest.raises(SettingsError) as no_client:
        TenancySettings.from_env({"TENANCY": "multi"})
    assert no_client.value.setting == "MULTI_TENANT_CLIENT_ID"
    with pytest.raises(SettingsError) as wrong:
        TenancySettings.from_env({"TENANCY": "many"})
    assert wrong.value.setting == "TENANCY"
    with pytest.raises(SettingsError):
        TenancySettings.from_env({"MULTI_TENANT_CLIENT_ID": "contoso-app"})


def test_a_tenant_with_an_export_account_of_its_own_gets_that_account() -> None:
    from dsr_export import composition
    from tests.unit.intake_fakes import app_settings

    shared = "https://stshared.blob.core.windows.net"
    own = "https://stcontosoeu.blob.core.windows.net"
    with app_settings(EXPORT_STORAGE_BLOB_ENDPOINT=shared, EXPORT_SAS_MODE="user-delegation"):
        composition.reset()
        try:
            assert composition.export_storage_for(None) is composition.export_storage()
            assert composition.export_storage_for(shared) is composition.export_storage()
            theirs = composition.export_storage_for(own)
            assert theirs is composition.export_storage_for(own)  # built once
            assert theirs.service.url.rstrip("/") == own
        finally:
            composition.reset()


# -- retiring a tenant (offboarding) ------------------------------------------------------------

OPERATOR = {"kind": "user", "id": "00000000-0000-4000-8000-00000000aaaa"}
RETIRED_AT = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def test_a_retired_tenant_takes_no_dsr_and_keeps_its_record() -> None:
    tenant = tenants.parse_tenant({"tenantId": TID, "displayName": "Contoso"})
    assert (tenant.state, tenant.accepts_dsrs) == (tenants.TenantState.ACTIVE, True)
    retired = tenants.retire(tenant, RETIRED_AT, OPERATOR)
    assert (retired.state, retired.accepts_dsrs) == (tenants.TenantState.RETIRED, False)
    assert retired.to_json() == {
        **tenant.to_json(),
        "state": "retired",
        "retiredAt": RETIRED_AT.isoformat(),
        "retiredBy": OPERATOR,
    }
    # Stored and read back as it was; retiring again keeps the first retirement on record.
    assert tenants.from_stored(retired.to_json()) == retired
    assert tenants.retire(retired, RETIRED_AT.replace(year=2028), {"kind": "x"}) == retired
    assert tenants.reinstate(retired) == tenant
    # A document stored before tenants could retire has no state: active.
    old = {k: v for k, v in tenant.to_json().items() if k not in tenants.LIFECYCLE}
    assert tenants.from_stored(old) == tenant


def test_only_retiring_and_reinstating_set_the_state() -> None:
    tenant = tenants.parse_tenant({"tenantId": TID, "displayName": "Contoso"})
    with pytest.raises(InvalidRequest) as refused:
        tenants.parse_tenant({"tenantId": TID, "displayName": "C", "state": "retired"})
    assert pointers(refused) == ["/state"]
    assert "retire" in refused.value.errors[0].detail
    with pytest.raises(InvalidRequest) as refused:
        tenants.apply_patch(tenant, {"state": "retired", "retiredAt": None})
    assert sorted(pointers(refused)) == ["/retiredAt", "/state"]
    retired = tenants.retire(tenant, RETIRED_AT, OPERATOR)
    with pytest.raises(tenants.TenantRetired):
        tenants.apply_patch(retired, {"displayName": "Contoso (gone)"})
    with pytest.raises(InvalidRequest) as refused:
        tenants.from_stored({**tenant.to_json(), "state": "retired"})  # no record of who, when
    assert pointers(refused) == ["/state"]


def test_a_retirement_record_says_who_when_and_if_forced_never_a_value() -> None:
    tenant = tenants.parse_tenant({"tenantId": TID, "displayName": "Contoso"})
    retired = tenants.retire(tenant, RETIRED_AT, OPERATOR)
    record = tenants.change_record(
        previous_hash=None,
        at=RETIRED_AT,
        by=OPERATOR,
        action="retired",
        before=tenant,
        after=retired,
        extra={"forced": True, "inFlight": 2},
    )
    assert (record["action"], record["forced"], record["inFlight"]) == ("retired", True, 2)
    assert sorted(record["changed"]) == ["retiredAt", "retiredBy", "state"]
    assert tenants.verify_chain([record]) == []
    assert "Contoso" not in str(record)
