"""What `azd deploy` puts in the function app's package: exactly the app.

azd zips the service's project folder (the repository root, azure.yaml) less what .funcignore
excludes, read with gitignore rules; releases before 1.18.0 ignored .funcignore and shipped the
tests, the offline host, dsrctl and the docs (azure.yaml pins `requiredVersions.azd`). This
applies .funcignore to the files git tracks (an untracked file is not in a clone either) and
checks the result: function_app.py, the packages it imports, host.json and requirements.txt.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pathspec
import pytest

from tests.infra.bicep_model import ROOT

#: The app's own packages: function_app.py registers their blueprints.
APP_PACKAGES = ("activities", "dsr_export", "intake", "orchestrations")
#: Besides them, at the root: the entry point, the host configuration, the dependencies Flex
#: Consumption's remote build installs.
APP_FILES = ("function_app.py", "host.json", "requirements.txt")
#: azd releases that honour .funcignore for function apps (Azure/azure-dev PR #5383, 1.18.0).
FUNCIGNORE_SINCE = (1, 18, 0)


def tracked_files() -> list[str]:
    done = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    return sorted(name for name in done.stdout.decode().split("\0") if name)


def packaged(funcignore: str, files: list[str]) -> list[str]:
    spec = pathspec.GitIgnoreSpec.from_lines(funcignore.splitlines())
    return [name for name in files if not spec.match_file(name)]


def test_the_package_is_exactly_the_app() -> None:
    files = tracked_files()
    assert "function_app.py" in files, "git ls-files sees no checkout"
    expected = set(APP_FILES) | {f for f in files if f.split("/", 1)[0] in APP_PACKAGES}
    assert set(packaged((ROOT / ".funcignore").read_text(), files)) == expected


@pytest.mark.parametrize(
    "path",
    [
        "tests/unit/test_x.py",
        "devhost/__main__.py",
        "dsrctl/cli.py",
        "docs/deploy.md",
        "tools/kql/check.js",
        "bench/__main__.py",
        "testsupport/replay.py",
        "infra/main.bicep",
        "README.md",
        "local.settings.json",
        ".venv-azmodels/bin/python",
        "requirements-dev.txt",
    ],
)
def test_development_files_stay_out_even_when_new(path: str) -> None:
    """A file added later under a development folder is excluded as well."""
    assert packaged((ROOT / ".funcignore").read_text(), [path]) == []


def test_the_app_packages_import_only_what_is_packaged() -> None:
    """Nothing the app imports from this repository is left out of the package."""
    files = set(packaged((ROOT / ".funcignore").read_text(), tracked_files()))
    local = {p.name for p in ROOT.iterdir() if p.is_dir() or p.suffix == ".py"}
    local = {name.removesuffix(".py") for name in local}
    for name in sorted(f for f in files if f.endswith(".py")):
        tree = ast.parse((ROOT / name).read_text(), filename=name)
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            for module in modules:
                top = module.split(".", 1)[0]
                if top in local:
                    assert top in APP_PACKAGES, f"{name} imports {module}, which is not packaged"
    for package in APP_PACKAGES:
        assert f"{package}/__init__.py" in files


def test_funcignore_is_plain_exclusions() -> None:
    """azd's .funcignore parsing mishandled negations and a byte-order mark until 1.23.13
    (Azure/azure-dev #7311): keep to what every release since 1.18.0 reads alike."""
    raw = (ROOT / ".funcignore").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    rules = [line.strip() for line in raw.decode().splitlines()]
    assert not [line for line in rules if line.startswith("!")]


def test_azure_yaml_requires_an_azd_that_honours_funcignore() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    constraint = config["requiredVersions"]["azd"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", constraint)
    assert match, f"a lower bound, as azd expects it: {constraint!r}"
    assert tuple(int(g) for g in match.groups()) >= FUNCIGNORE_SINCE


def test_the_deployed_project_is_the_repository_root() -> None:
    """The rules above hold because the project azd packages is the folder .funcignore is in."""
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert Path(ROOT / config["services"]["api"]["project"]).resolve() == ROOT
