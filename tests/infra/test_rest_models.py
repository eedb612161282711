"""Every resource declaration in infra/ checked against Azure's own REST models.

tests/infra/bicep_paths.py flattens each declaration into property paths (every branch of every
condition); infra/scripts/rest_models.py, run with the REST-model venv (`.venv-azmodels`, from
requirements-azmodels.txt, installed by `make test`), resolves each path against the
`azure-mgmt-*` model of that exact type@apiVersion (infra/rules/rest-models.toml) and reports
unknown properties (case included), literals outside an enum, read-only properties set and
required properties missing. The Graph extension's types are checked against its published
type description (infra/rules/msgraph-bicep-types-*).

What this cannot see: a platform rule that no schema states (the Flex Consumption refusals:
test_flex_consumption.py), values computed at deploy time, and whether a resource provider
accepts a value its model allows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep_model import INFRA, ROOT
from tests.infra.bicep_paths import Declaration, all_declarations, declarations

SCRIPT = INFRA / "scripts" / "rest_models.py"
RULES = INFRA / "rules" / "rest-models.toml"
AZMODELS_PYTHON = ROOT / ".venv-azmodels" / "bin" / "python"
REQUIREMENTS = ROOT / "requirements-azmodels.txt"
OVERLAYS = ROOT / "requirements-azmodels-overlays.txt"


def _rules() -> dict[str, Any]:
    return tomllib.loads(RULES.read_text())


def _requirements(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def run_check(found: list[Declaration], rules: Path = RULES) -> dict[str, Any]:
    """The REST-model check's verdict on some declarations (JSON: findings, counts)."""
    if not AZMODELS_PYTHON.exists():
        message = f"{AZMODELS_PYTHON} is missing: `make azmodels` installs it (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    payload = json.dumps({"declarations": [d.as_json() for d in found]})
    done = subprocess.run(
        [str(AZMODELS_PYTHON), str(SCRIPT), "--json", "--rules", str(rules)],
        input=payload,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    verdict: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 1) == bool(verdict["findings"]), done.stderr
    return verdict


def _problems(verdict: dict[str, Any]) -> list[str]:
    return sorted(f"{f['symbol']} {f['path']}: {f['problem']}" for f in verdict["findings"])


# ---------------------------------------------------------------------------------------------
# The rules file, the pins and the typed descriptions (no model venv needed)


def _used_types() -> set[str]:
    return {f"{d.type}@{d.api_version}" for d in all_declarations()}


def test_every_type_in_infra_has_a_model_and_every_model_is_used() -> None:
    models = set(_rules()["models"])
    used = _used_types()
    assert used - models == set(), "add these to infra/rules/rest-models.toml"
    assert models - used == set(), "stale entries in infra/rules/rest-models.toml"


def test_every_model_module_comes_from_a_pinned_package() -> None:
    pins = _requirements(REQUIREMENTS)
    overlays = _requirements(OVERLAYS)
    for type_version, entry in _rules()["models"].items():
        if "bicep_types" in entry:
            continue
        package = "-".join(entry["module"].split(".")[:3])  # azure.mgmt.web -> azure-mgmt-web
        if "overlay" in entry:
            name, _, version = entry["overlay"].partition("==")
            assert (name, overlays.get(name)) == (package, version), type_version
        else:
            assert package in pins, f"{type_version}: {package} not in {REQUIREMENTS.name}"
    # The environment is whole and pinned: every line is name==version.
    for path in (REQUIREMENTS, OVERLAYS):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            assert not line or re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", line), line


def test_every_exception_names_a_declared_path_and_its_sources() -> None:
    rules = _rules()
    found = {
        (f"{d.type}@{d.api_version}", ".".join(path))
        for d in all_declarations()
        for path in d.paths
    }
    for exception in rules["exception"]:
        assert (exception["type"], exception["path"]) in found, exception
        assert len(" ".join(exception["reason"].split())) >= 60, exception
        assert exception["sources"], exception


def test_graph_types_are_the_pinned_extension_version() -> None:
    text = re.sub(r"^\s*//.*$", "", (INFRA / "bicepconfig.json").read_text(), flags=re.M)
    alias = json.loads(text)["extensions"]["microsoftGraphV1"]
    version = alias.rsplit(":", 1)[1]
    folders = {
        entry["bicep_types"] for entry in _rules()["models"].values() if "bicep_types" in entry
    }
    assert folders == {f"msgraph-bicep-types-v1.0-{version}"}
    folder = INFRA / "rules" / folders.pop()
    index = json.loads((folder / "index.json").read_text())
    assert index["settings"]["version"] == version
    assert "a8ec1acdb295198618783efc6753e1f3a2e04a43" in (folder / "README.md").read_text()


def test_make_test_installs_the_model_venv_from_its_pins() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_target = re.search(r"^test:(.*)$", makefile, flags=re.M)
    assert test_target
    assert "azmodels" in test_target.group(1).split()
    assert "AZMODELS_VENV := .venv-azmodels" in makefile
    assert "--no-deps -r requirements-azmodels.txt" in makefile
    assert "requirements-azmodels-overlays.txt" in makefile
    assert '--target "$(AZMODELS_VENV)/overlays/$${req/==/-}"' in makefile


def test_the_package_holds_no_rest_model_venv() -> None:
    """.venv-azmodels is a development environment: never committed, never deployed."""
    assert ".venv-azmodels/" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".venv-azmodels/" in (ROOT / ".funcignore").read_text().splitlines()


# ---------------------------------------------------------------------------------------------
# The flattening the check relies on


def test_flattening_explores_every_branch_and_knows_what_is_always_set(tmp_path: Path) -> None:
    source = tmp_path / "sample.bicep"
    source.write_text(
        """
param flag bool
@allowed([
  'Hot'
  'Cool'
])
param tier string
param free string
var extra = {
  onlySometimes: 'yes'
}
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'x'
  location: free
  kind: flag ? 'StorageV2' : 'BlobStorage'
  sku: {
    name: 'Standard_LRS'
  }
  properties: union({
    accessTier: tier
  }, flag ? extra : {})
}
"""
    )
    (declaration,) = declarations(str(source))
    paths = {".".join(p): info for p, info in declaration.paths.items()}
    assert declaration.name == "x"
    assert "name" not in paths
    assert paths["kind"].literals == ["StorageV2", "BlobStorage"]
    assert paths["location"].expression
    assert not paths["location"].literals
    assert paths["properties.accessTier"].literals == ["Hot", "Cool"]
    assert paths["properties.accessTier"].always
    assert not paths["properties.onlySometimes"].always


# ---------------------------------------------------------------------------------------------
# The check itself (the model venv)


def test_every_declaration_matches_its_rest_model() -> None:
    found = all_declarations()
    verdict = run_check(found)
    assert _problems(verdict) == []
    assert verdict["declarations"] == len(found)
    # About 470 paths when this was written: a drop means something stopped being checked.
    assert verdict["paths"] >= 450


FUNCTION_APP = "modules/function-app.bicep"

#: One defect each, planted in a copy of infra/modules: (template, text, replaced by).
PLANTS = {
    "unknown": (
        FUNCTION_APP,
        "      http20Enabled: true\n",
        "      http20Enabled: true\n      ftpsStat: 'x'\n",
    ),
    "case": (FUNCTION_APP, "    httpsOnly: true\n", "    HttpsOnly: true\n"),
    "enum": (FUNCTION_APP, "      minTlsVersion: '1.2'\n", "      minTlsVersion: '1.4'\n"),
    "enum-branch": (
        FUNCTION_APP,
        "restrictAccess ? 'Deny' : 'Allow'",
        "restrictAccess ? 'Refuse' : 'Allow'",
    ),
    "read-only": (
        FUNCTION_APP,
        "    httpsOnly: true\n",
        "    httpsOnly: true\n    defaultHostName: 'x'\n",
    ),
    "required": (
        "modules/durable-task-scheduler.bicep",
        "  name: 'Consumption'\n",
        "  capacity: 1\n",
    ),
    "graph": (
        "modules/entra-app.bicep",
        "  signInAudience: 'AzureADMyOrg'\n",
        "  signinAudience: 'AzureADMyOrg'\n  appId: 'x'\n",
    ),
    "graph-credential": (
        "modules/multi-tenant-app.bicep",
        "  issuer: issuer\n",
        "  issuerUri: issuer\n",
    ),
    "no-model": (
        FUNCTION_APP,
        "resource plan 'Microsoft.Web/serverfarms@2024-04-01'",
        "resource plan 'Microsoft.Web/serverfarms@2099-01-01'",
    ),
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The check's problems with each plant, in its own copy of infra/modules (one run)."""
    found: list[Declaration] = []
    targets = {}
    for name, (file, old, new) in PLANTS.items():
        copy = tmp_path_factory.mktemp(name) / "infra"
        shutil.copytree(INFRA / "modules", copy / "modules")
        target = copy / file
        text = target.read_text()
        assert text.count(old) == 1, f"{name}: the planting site is not unique: {old!r}"
        target.write_text(text.replace(old, new))
        targets[str(target)] = name
        found += declarations(str(target))
    problems: dict[str, list[str]] = {name: [] for name in PLANTS}
    for item in run_check(found)["findings"]:
        problems[targets[item["file"]]].append(
            f"{item['symbol']} {item['path']}: {item['problem']}"
        )
    return {name: sorted(p) for name, p in problems.items()}


def test_a_planted_unknown_property_fails(planted: dict[str, list[str]]) -> None:
    (problem,) = planted["unknown"]
    assert problem.startswith("site properties.siteConfig.ftpsStat: unknown property (model")


def test_a_planted_property_in_the_wrong_case_fails(planted: dict[str, list[str]]) -> None:
    assert planted["case"] == [
        "site properties.HttpsOnly: unknown property (the model spells it 'httpsOnly')"
    ]


def test_a_planted_enum_value_outside_the_model_fails(planted: dict[str, list[str]]) -> None:
    assert planted["enum"] == [
        "site properties.siteConfig.minTlsVersion: '1.4' is not one of ['1.0', '1.1', '1.2', '1.3']"
    ]


def test_a_planted_enum_value_in_one_branch_fails(planted: dict[str, list[str]]) -> None:
    """A wrong value only one parameter combination sets is still found."""
    (problem,) = planted["enum-branch"]
    assert "ipSecurityRestrictionsDefaultAction: 'Refuse' is not one of" in problem


def test_a_planted_read_only_property_fails(planted: dict[str, list[str]]) -> None:
    assert planted["read-only"] == [
        "site properties.defaultHostName: read-only: set by Azure, not by a template"
    ]


def test_a_planted_missing_required_property_fails(planted: dict[str, list[str]]) -> None:
    assert planted["required"] == [
        "scheduler properties.sku: required property name set only under a condition"
    ]


def test_a_planted_graph_property_is_checked_against_the_extension_types(
    planted: dict[str, list[str]],
) -> None:
    assert planted["graph"] == [
        "app appId: read-only: set by Azure, not by a template",
        "app signinAudience: unknown property (the model spells it 'signInAudience')",
    ]


def test_a_planted_federated_credential_property_fails(planted: dict[str, list[str]]) -> None:
    """The multi-tenant app's federated credential (tenancy=multi) against the extension's
    types: a misnamed property, and the required one it then lacks."""
    assert planted["graph-credential"] == [
        "identityCredential : required property issuer missing",
        "identityCredential issuerUri: unknown property (model "
        "Microsoft.Graph/applications/federatedIdentityCredentials: apiVersion, audiences, "
        "description, id, issuer, name, subject, type)",
    ]


def test_a_type_without_a_model_fails(planted: dict[str, list[str]]) -> None:
    assert planted["no-model"] == ["plan : no REST model known for it: add it to rest-models.toml"]


def test_an_exception_the_model_no_longer_needs_fails(tmp_path: Path) -> None:
    """An exception is for what the model lacks: once it has the property, the exception must
    go (so the list stays the platform's real departures from its models)."""
    rules = tmp_path / "rest-models.toml"
    shutil.copytree(INFRA / "rules", tmp_path, dirs_exist_ok=True)
    rules.write_text(
        RULES.read_text()
        + """
[[exception]]
type = "Microsoft.Web/sites@2024-04-01"
path = "properties.httpsOnly"
reason = "planted by the test"
sources = ["the test"]
"""
    )
    verdict = run_check(declarations(FUNCTION_APP), rules)
    assert _problems(verdict) == [
        "site properties.httpsOnly: the model has it now: remove its exception"
    ]
