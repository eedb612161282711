"""The local Key Vault: the unmodified azure-keyvault-keys clients and the app's receipt signer
run against it through the managed identity, with Key Vault's challenge, RBAC, versions and
raw ES256 signatures; the JWKS follows rotations and the evidence's retention."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from devhost.identity import ManagedIdentityEndpoint
from devhost.keyvault import APP_ACTIONS, VAULT_HOST, KeyVaultEmulator, VaultProxy
from devhost.tls import TlsFiles
from dsr_export.adapters.receipt_signer import KeyVaultReceiptSigner, ReceiptSigningError
from dsr_export.domain import receipt
from dsr_export.settings import ReceiptSettings
from tests.receipts import DEFAULT_FILES, claims_for, manifest_bytes


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def vault(
    tls_files: TlsFiles, tmp_path: Path, identity: ManagedIdentityEndpoint, clock: Clock
) -> Iterator[KeyVaultEmulator]:
    with KeyVaultEmulator(tls_files, state_file=tmp_path / "keyvault.json", clock=clock) as kv:
        kv.grant(identity.object_id, APP_ACTIONS)
        kv.ensure_key()
        yield kv


@pytest.fixture
def proxied(
    vault: KeyVaultEmulator,
    tls_files: TlsFiles,
    identity_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[VaultProxy]:
    """The process reaches the vault as the offline host's processes do: through the proxy."""
    with VaultProxy({VAULT_HOST: vault.port}) as proxy:
        for name, value in proxy.env({}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)
        yield proxy


@pytest.fixture
def signer(
    vault: KeyVaultEmulator, proxied: VaultProxy, clock: Clock
) -> Callable[..., KeyVaultReceiptSigner]:
    def make(publish_days: int = 2192) -> KeyVaultReceiptSigner:
        settings = ReceiptSettings.from_env(
            {
                "RECEIPT_SIGNING_KEY_ID": vault.key_id(),
                "RECEIPT_KEY_PUBLISH_DAYS": str(publish_days),
            }
        )
        return KeyVaultReceiptSigner(settings, ManagedIdentityCredential(), clock=clock)

    return make


def a_receipt(signer: KeyVaultReceiptSigner) -> str:
    return signer.sign_receipt(
        claims_for(manifest_bytes(DEFAULT_FILES), DEFAULT_FILES, "dsr-export")
    )


def test_the_signer_signs_through_the_challenge_and_the_receipt_verifies(vault, signer):
    app = signer()
    token = a_receipt(app)
    kid, claims = receipt.verify_receipt(token, receipt.jwks_document(app.public_keys()))
    assert kid == vault.ensure_key()  # the current version's full id
    assert claims.issuer == "dsr-export"
    # Key Vault's challenge first (no token sent), then the same request with a vault token.
    assert vault.requests[:2] == [
        ("GET", "/keys/receipt-signing", 401),
        ("GET", "/keys/receipt-signing", 200),
    ]
    assert ("POST", f"/keys/receipt-signing/{kid.rsplit('/', 1)[1]}/sign", 200) in vault.requests


def test_key_vaults_signature_is_raw_r_s_and_verifies_with_the_public_key(vault, proxied):
    """CryptographyClient.sign answers 64 bytes r || s (JWS's form), not DER."""
    client = CryptographyClient(vault.ensure_key(), ManagedIdentityCredential(), api_version="7.5")
    digest = hashlib.sha256(b"signing input").digest()
    result = client.sign(SignatureAlgorithm.es256, digest)
    assert len(result.signature) == 64
    key = KeyClient(vault.vault_url, ManagedIdentityCredential(), api_version="7.5").get_key(
        "receipt-signing"
    )
    jwk: Any = key.key
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), ec.SECP256R1()
    )
    r, s = (int.from_bytes(result.signature[i : i + 32], "big") for i in (0, 32))
    public = numbers.public_key()
    public.verify(encode_dss_signature(r, s), b"signing input", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(encode_dss_signature(r, s), b"other input", ec.ECDSA(hashes.SHA256()))


def test_without_the_sign_role_signing_fails_naming_the_role(vault, signer, identity):
    vault.revoke(identity.object_id, {"sign"})
    with pytest.raises(ReceiptSigningError) as failed:
        a_receipt(signer())
    assert failed.value.code == "receipt_key_forbidden"
    assert failed.value.status == 403
    assert "DSR receipt signer" in failed.value.fix
    assert "receipt-signing" in str(failed.value)
    assert failed.value.to_error()["category"] == "configuration"


def test_without_read_the_jwks_fails_naming_the_role(vault, signer, identity):
    vault.revoke(identity.object_id, {"read"})
    with pytest.raises(ReceiptSigningError) as failed:
        signer().public_keys()
    assert failed.value.code == "receipt_key_forbidden"


def test_a_missing_key_is_named(vault, proxied, identity, clock):
    settings = ReceiptSettings.from_env(
        {"RECEIPT_SIGNING_KEY_ID": f"{vault.vault_url}/keys/no-such-key"}
    )
    app = KeyVaultReceiptSigner(settings, ManagedIdentityCredential(), clock=clock)
    with pytest.raises(ReceiptSigningError) as failed:
        a_receipt(app)
    assert failed.value.code == "receipt_key_missing"


def test_the_identity_may_not_create_or_rotate_keys(vault, proxied):
    keys = KeyClient(vault.vault_url, ManagedIdentityCredential(), api_version="7.5")
    with pytest.raises(HttpResponseError) as refused:
        keys.create_ec_key("another", curve="P-256")
    assert refused.value.status_code == 403
    assert "keys/create/action" in str(refused.value)
    with pytest.raises(HttpResponseError):
        keys.rotate_key("receipt-signing")


def test_create_and_rotate_through_rest_add_versions(vault, proxied, identity):
    vault.grant(identity.object_id, {"create", "rotate"})
    keys = KeyClient(vault.vault_url, ManagedIdentityCredential(), api_version="7.4")
    created = keys.create_ec_key("operator-key", curve="P-256")
    again = keys.create_ec_key("operator-key", curve="P-256")
    rotated = keys.rotate_key("operator-key")
    versions = {p.version for p in keys.list_properties_of_key_versions("operator-key")}
    assert versions == {created.properties.version, again.properties.version,
                        rotated.properties.version}  # fmt: skip
    assert keys.get_key("operator-key").id == rotated.id


def test_rotation_keeps_the_old_version_published_and_its_receipts_valid(vault, signer, clock):
    app = signer()
    before = a_receipt(app)
    old_kid = vault.ensure_key()
    clock.now += timedelta(days=400)
    new_kid = vault.rotate()
    app.forget_public_keys()
    after = a_receipt(app)
    jwks = receipt.jwks_document(app.public_keys())
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
    assert receipt.verify_receipt(before, jwks)[0] == old_kid
    assert receipt.verify_receipt(after, jwks)[0] == new_kid


def test_a_version_retired_longer_than_the_retention_leaves_the_jwks(vault, signer, clock):
    app = signer(publish_days=30)
    old_kid = vault.ensure_key()
    new_kid = vault.rotate()
    clock.now += timedelta(days=30)
    assert [k["kid"] for k in app.public_keys()] == [new_kid, old_kid]
    app.forget_public_keys()
    clock.now += timedelta(days=1)
    assert [k["kid"] for k in app.public_keys()] == [new_kid]


def test_a_disabled_version_is_not_published(vault, signer):
    old_kid = vault.ensure_key()
    new_kid = vault.rotate()
    vault.disable("receipt-signing", old_kid.rsplit("/", 1)[1])
    assert [k["kid"] for k in signer().public_keys()] == [new_kid]


def test_the_jwks_is_cached_between_calls(vault, signer):
    app = signer()
    app.public_keys()
    count = len(vault.requests)
    app.public_keys()
    assert len(vault.requests) == count


def test_missing_tokens_get_the_challenge_and_unknown_api_versions_a_400(
    vault, tls_files, identity_env
):
    base = f"https://127.0.0.1:{vault.port}/keys/receipt-signing"
    answer = requests.get(
        base, params={"api-version": "7.5"}, verify=tls_files.ca_bundle, timeout=10
    )
    assert answer.status_code == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert 'resource="https://vault.azure.net"' in challenge
    assert challenge.startswith('Bearer authorization="https://login.microsoftonline.com/')
    token = ManagedIdentityCredential().get_token("https://vault.azure.net/.default").token
    headers = {"Authorization": f"Bearer {token}"}
    for version, status in (("7.5", 200), ("7.4", 200), ("2025-07-01", 400), (None, 400)):
        params = {"api-version": version} if version else {}
        answer = requests.get(
            base, params=params, headers=headers, verify=tls_files.ca_bundle, timeout=10
        )
        assert answer.status_code == status, version
    graph_token = ManagedIdentityCredential().get_token("https://graph.microsoft.com/.default")
    answer = requests.get(
        base,
        params={"api-version": "7.5"},
        headers={"Authorization": f"Bearer {graph_token.token}"},
        verify=tls_files.ca_bundle,
        timeout=10,
    )
    assert answer.status_code == 401  # a token for another audience


def test_keys_survive_a_restart_of_the_vault(vault, tls_files, tmp_path, clock):
    kid = vault.ensure_key()
    vault.stop()
    with KeyVaultEmulator(tls_files, state_file=tmp_path / "keyvault.json", clock=clock) as again:
        assert again.ensure_key() == kid


def test_the_proxy_tunnels_only_the_vault(proxied):
    host, port = proxied.url.removeprefix("http://").split(":")
    for target in ("login.microsoftonline.com:443", f"{VAULT_HOST}:80", "127.0.0.1:22"):
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert connection.recv(100).startswith(b"HTTP/1.1 403")


def test_signing_with_a_new_version_refreshes_the_cached_jwks(vault, signer):
    """A receipt is never handed out under a kid this process's JWKS does not list yet."""
    app = signer()
    old_kid = vault.ensure_key()
    assert [k["kid"] for k in app.public_keys()] == [old_kid]
    new_kid = vault.rotate()
    assert [k["kid"] for k in app.public_keys()] == [old_kid]  # cached
    token = a_receipt(app)
    jwks = receipt.jwks_document(app.public_keys())
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
    assert receipt.verify_receipt(token, jwks)[0] == new_kid


def test_a_disabled_current_version_is_named_as_unusable_not_as_a_role(vault, signer):
    kid = vault.ensure_key()
    vault.disable("receipt-signing", kid.rsplit("/", 1)[1])
    with pytest.raises(ReceiptSigningError) as failed:
        a_receipt(signer())
    assert failed.value.code == "receipt_key_unusable"
    assert "rotate" in failed.value.fix


def test_the_package_builders_claims_are_typed_and_signed(vault, signer):
    """The packaging activity hands the wire shape (package_manifest.receipt_claims); nulls it
    may carry (no completion time, no evidence head) are kept as null, a wrong type refused."""
    from dsr_export.domain.receipt import ReceiptError

    app = signer()
    wire = {
        **claims_for(manifest_bytes(DEFAULT_FILES), DEFAULT_FILES, "dsr-export").to_wire(),
        "completedAt": None,
        "evidenceHeadSha256": None,
    }
    token = app.sign_receipt(wire)
    _, claims = receipt.verify_receipt(token, receipt.jwks_document(app.public_keys()))
    assert claims.completed_at is None
    assert claims.evidence_head_sha256 is None
    with pytest.raises(ReceiptError) as refused:
        app.sign_receipt({**wire, "fileCount": "4"})
    assert refused.value.field == "fileCount"


def test_a_tenants_callback_secret_is_read_through_the_secrets_protocol(vault, proxied, identity):
    """The app's ``CallbackSecrets`` (azure-keyvault-secrets, unchanged) reads a tenant's
    callback secret: the latest version by a versionless reference, an exact one by a versioned
    one, and nothing without the Secrets User role."""
    from dsr_export.adapters.callback_secrets import CallbackSecrets

    first = "whsec_" + base64.b64encode(b"first-callback-key").decode()
    second = "whsec_" + base64.b64encode(b"second-callback-key").decode()
    old = vault.set_secret("tenant-callbacks", first)
    vault.set_secret("tenant-callbacks", second)
    latest = f"{vault.vault_url}/secrets/tenant-callbacks"
    vault.grant(identity.object_id, {"getSecret"})
    secrets = CallbackSecrets(ManagedIdentityCredential())
    assert secrets.key(latest) == b"second-callback-key"
    assert secrets.key(old) == b"first-callback-key"
    vault.revoke(identity.object_id, {"getSecret"})
    with pytest.raises(HttpResponseError) as refused:
        CallbackSecrets(ManagedIdentityCredential()).key(latest)
    assert refused.value.status_code == 403
    assert "secrets/getSecret/action" in str(refused.value)
