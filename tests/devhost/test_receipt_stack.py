"""The offline host signs receipts as Azure would: the app's signer, through the local Key
Vault (its challenge, the managed identity's token, the identity's sign role), and the host
serves the JWKS anonymously; after a rotation and a restart the old key stays published and a
package sealed before the rotation still passes ``dsrctl verify``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from devhost.stack import REPO_ROOT
from dsr_export.domain import receipt
from dsrctl.commands import cli
from tests.e2e.host import user_env
from tests.receipts import DEFAULT_FILES, claims_for, manifest_bytes, write_zip

pytestmark = pytest.mark.azurite


def run_host(*args: str) -> dict[str, Any]:
    out = Path(args[-1])
    done = subprocess.run(
        [sys.executable, "-m", "tests.devhost.receipt_host", *args],
        cwd=REPO_ROOT,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen: dict[str, Any] = json.loads(out.read_text())
    return seen


def kids(jwks: dict[str, Any]) -> list[str]:
    return [key["kid"] for key in jwks["body"]["keys"]]


def test_the_app_signs_through_the_local_vault_and_rotation_keeps_old_receipts_valid(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    manifest = manifest_bytes(DEFAULT_FILES)
    claims = claims_for(manifest, DEFAULT_FILES, "dsr-export")
    (tmp_path / "claims.json").write_text(json.dumps(claims.to_wire()))

    seen = run_host("sign-rotate", str(state), str(tmp_path / "claims.json"), str(tmp_path / "1"))

    assert seen["keyId"] == "https://dsr-devhost.vault.azure.net/keys/receipt-signing"
    before = seen["jwksBefore"]
    assert before["status"] == 200
    assert before["cacheControl"] == "public, max-age=300"
    assert before["contentType"].startswith("application/jwk-set+json")
    [old_kid] = kids(before)
    old_receipt_kid, signed = receipt.verify_receipt(seen["before"], before["body"])
    assert (old_receipt_kid, signed) == (old_kid, claims)
    # Through Key Vault's challenge: an unauthenticated request first, then with the token.
    requests_seen = [tuple(r) for r in seen["vaultRequests"]]
    assert requests_seen[0] == ("GET", "/keys/receipt-signing", 401)
    assert ("POST", f"/keys/receipt-signing/{old_kid.rsplit('/', 1)[1]}/sign", 200) in requests_seen

    new_kid = seen["rotatedTo"]
    assert kids(seen["jwksAfter"]) == [new_kid, old_kid]
    assert receipt.verify_receipt(seen["after"], seen["jwksAfter"]["body"])[0] == new_kid

    # Without its read role on the key, the deep health check says so and names the role.
    health = seen["healthWithoutRead"]
    assert health["status"] == 503
    assert health["body"]["checks"]["receiptKey"] == "failed"
    [error] = [e for e in health["body"]["errors"] if e["pointer"] == "/receiptKey"]
    assert "DSR receipt signer" in error["detail"]

    # A restart of the host: the keys are Key Vault's, the published set comes from it again.
    restarted = run_host("jwks", str(state), str(tmp_path / "2"))
    assert kids(restarted["jwks"]) == [new_kid, old_kid]

    # A package sealed before the rotation passes dsrctl verify with the JWKS served after it.
    package = tmp_path / "package.zip"
    write_zip(
        package,
        {
            **DEFAULT_FILES,
            receipt.MANIFEST_NAME: manifest,
            receipt.RECEIPT_NAME: seen["before"].encode(),
        },
    )
    (tmp_path / "jwks.json").write_text(json.dumps(restarted["jwks"]["body"]))
    result = CliRunner().invoke(
        cli, ["verify", str(package), "--jwks", str(tmp_path / "jwks.json")]
    )
    assert result.exit_code == 0, result.output
    assert old_kid in result.output
