"""``make demo`` as CI runs it (no terminal): what it shows is what the portal will show."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e.host import REPO, user_env

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    env = {**user_env(), "TERM": "dumb", "CI": "1"}
    env.pop("EXPORT_RETENTION_DAYS", None)
    return subprocess.run(
        [sys.executable, "-m", "devhost", "demo"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_demo_ends_as_expected_in_plain_lines(demo):
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "\x1b[" not in demo.stdout, "plain lines without a terminal"
    assert "every DSR ended as expected" in demo.stdout


def test_each_dsr_shows_its_deadline_its_manifest_and_the_sas_revoked(demo):
    out = demo.stdout
    assert re.search(r"DEMO-1001 +exporting .* due \d{4}-\d\d-\d\d \(\d+ days left\)", out)
    assert re.search(r"DEMO-1001 +completed +\d+ +[\d.]+ KiB +revoked +\d{4}-\d\d-\d\d", out)
    assert re.search(r"manifest: dsr-demo-1001-[0-9a-f]{16}/manifest\.json", out)
    assert "(root) = Graph's receipt" in out, "the products are explained"
    assert "same person as DEMO-1002" in out


def test_the_throttling_and_the_failure_are_visible_with_the_fix(demo):
    out = demo.stdout
    assert "Graph throttled a status poll (429" in out
    assert re.search(r"DEMO-1005 +failed", out)
    assert "fix: " in out
    assert "@contoso.example" not in out, "no UPN echoed, not even in Graph's error"


def test_the_demo_ends_with_the_evidence_verified_and_the_deletion_receipt(demo):
    out = demo.stdout
    assert re.search(r"evidence: OK: \d+ records \(received > .* > retention_deleted\)", out)
    assert re.search(r"deletion receipt rcpt_[0-9a-f]{24}: \d+ blobs", out)
    assert "what the workbook shows of this run" in out
    assert re.search(r"retention_deleted +\d+", out)
    # The link is for the package (one blob) once it exists, as it does here.
    assert re.search(r"package_delivered +1", out)


def test_the_demo_builds_verifies_and_shows_the_package_of_demo_1001(demo):
    out = demo.stdout
    assert re.search(r"package: package\.zip in dsr-demo-1001-[0-9a-f]{16}-pkg, \d+ files", out)
    assert re.search(r"dsrctl verify package\.zip --jwks http\S+/api/\.well-known/jwks\.json", out)
    assert re.search(
        r"OK: \d+ file\(s\), \d+ bytes, match the manifest; .* signed with https://", out
    )
    assert "README.txt (the index as plain text), first lines:" in out
    assert re.search(r"\| Request: DEMO-1001$", out, re.MULTILINE), "the index's summary as text"
    assert re.search(r"\| Files: \d+ \(", out)
    assert re.search(r"package_built +1", out)
    assert re.search(r"evidence: OK: .*> packaged > .*> retention_deleted\)", out)


def test_no_secret_in_what_the_demo_prints(demo):
    assert "sig=" not in demo.stdout + demo.stderr


@pytest.fixture(scope="module")
def tenants_demo() -> subprocess.CompletedProcess[str]:
    """``make demo-tenants``: the two-tenant act (seconds: its exports take two Graph hours)."""
    env = {**user_env(), "TERM": "dumb", "CI": "1"}
    env.pop("TENANCY", None)
    return subprocess.run(
        [sys.executable, "-m", "devhost", "demo", "--tenants"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tenants_demo_shows_one_ticket_as_two_dsrs_kept_apart(tenants_demo):
    out = tenants_demo.stdout
    assert tenants_demo.returncode == 0, out[-3000:] + tenants_demo.stderr[-3000:]
    assert "\x1b[" not in out, "plain lines without a terminal"
    assert re.search(r"registered Contoso .*bound to Contoso only", out)
    assert re.search(r"registered Fabrikam .*bound to Fabrikam only", out)
    rows = re.findall(
        r"^(Contoso|Fabrikam) +([0-9A-F]{12}:RITM0012345) +completed +(dsr-\S+)", out, re.M
    )
    assert [r[0] for r in rows] == ["Contoso", "Fabrikam"]
    assert len({r[1] for r in rows}) == len({r[2] for r in rows}) == 2, "two DSRs, two containers"
    assert out.count("evidence: OK: ") == 2
    assert out.count("its own DSR only") == 2
    assert "Contoso's key asks for Fabrikam's DSR: 404" in out
    assert re.search(r"Contoso's key lists 1 DSR\(s\): [0-9A-F]{12}:RITM0012345$", out, re.M)
    assert "nothing of one tenant is visible to the other" in out


def test_no_address_and_no_secret_in_what_the_tenants_demo_prints(tenants_demo):
    printed = tenants_demo.stdout + tenants_demo.stderr
    assert "@" not in printed, "no UPN, not even the one sent in both tenants"
    assert "sig=" not in printed
    assert "Bearer" not in printed
