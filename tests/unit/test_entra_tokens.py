"""The app judges Entra access tokens itself: every way a token can be wrong is refused, and the
tenant's keys are fetched, cached and refetched as the rules say.

The tenant is the offline host's (``devhost/entra.py``), served over TLS as Entra serves its
OpenID configuration and key set; the app fetches them with its real code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from devhost.entra import EntraTenant
from devhost.tls import TlsFiles
from dsr_export.adapters import entra
from dsr_export.adapters.entra import SigningKeys, TokenValidator, fetch_json
from dsr_export.domain.callers import KeysUnavailable, Role, TokenRefused
from dsr_export.settings import EntraSettings

OTHER_TENANT = "00000000-0000-4000-8000-0000000000ff"


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tenant(entra_tenant: EntraTenant) -> EntraTenant:
    return entra_tenant


@pytest.fixture(autouse=True)
def _trust_the_local_tls(tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)


@pytest.fixture
def settings(tenant: EntraTenant) -> EntraSettings:
    return EntraSettings.from_env(tenant.app_settings())  # type: ignore[return-value]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def key_fetches(tenant: EntraTenant) -> Callable[[], int]:
    """How often the key set was fetched from the tenant since the test began."""
    start = len(tenant.requests)
    return lambda: len([p for p in tenant.requests[start:] if p.endswith("/keys")])


@pytest.fixture
def validator(settings: EntraSettings, clock: Clock) -> TokenValidator:
    return TokenValidator(settings, SigningKeys(settings, clock=clock))


def _refused(validator: TokenValidator, token: str) -> TokenRefused:
    with pytest.raises(TokenRefused) as refused:
        validator.caller(token)
    return refused.value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_an_applications_v2_token_names_it_with_its_roles(tenant, validator):
    token = tenant.mint(["DSR.Manage", "Other.Role"], subject_id="sn-app-id")
    caller = validator.caller(token)
    assert (caller.kind, caller.id, caller.tenant_id) == (
        "application",
        "sn-app-id",
        tenant.tenant_id,
    )
    assert caller.roles == {Role.MANAGE}


def test_a_v1_token_with_the_app_id_uri_and_the_sts_issuer_is_accepted(tenant, validator):
    token = tenant.mint(["DSR.Read"], subject_id="app-v1", version="1.0")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["iss"]) == (
        tenant.app_id_uri,
        f"https://sts.windows.net/{tenant.tenant_id}/",
    )
    assert validator.caller(token).id == "app-v1"


def test_a_person_is_known_by_object_id(tenant, validator):
    caller = validator.caller(tenant.mint(["DSR.Read"], kind="user", subject_id="oid-7"))
    assert (caller.kind, caller.id, caller.roles) == ("user", "oid-7", {Role.READ})


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://login.microsoftonline.com/other/v2.0"}, "issuer"),
        ({"iss": f"https://sts.windows.net/{OTHER_TENANT}/"}, "issuer"),
        ({"aud": "api://someone-else"}, "audience"),
        ({"aud": "00000003-0000-0000-c000-000000000000"}, "audience"),  # a Graph token
        ({"tid": OTHER_TENANT}, "tenant"),
        ({"tid": None}, "claims"),
        ({"exp": None}, "claims"),
        ({"nbf": None}, "claims"),
    ],
)
def test_a_token_for_another_issuer_audience_or_tenant_is_refused(
    tenant, validator, claims, reason
):
    token = tenant.mint(["DSR.Manage"], claims={k: v for k, v in claims.items() if v is not None})
    if None in claims.values():
        full = jwt.decode(token, options={"verify_signature": False})
        token = tenant.sign({k: v for k, v in full.items() if k not in claims})
    assert _refused(validator, token).reason == reason


def test_lifetime_is_checked_with_a_small_skew(tenant, validator):
    now = datetime.now(UTC)
    expired = tenant.mint(["DSR.Read"], now=now - timedelta(hours=2), lifetime=timedelta(hours=1))
    assert _refused(validator, expired).reason == "expired"
    future = tenant.mint(["DSR.Read"], now=now + timedelta(minutes=10))
    assert _refused(validator, future).reason == "not_yet_valid"
    skewed = tenant.mint(["DSR.Read"], now=now + timedelta(seconds=30))  # Entra's clock ahead
    assert validator.caller(skewed).roles == {Role.READ}
    just_expired = tenant.mint(["DSR.Read"], now=now - timedelta(hours=1, seconds=30))
    assert validator.caller(just_expired).roles == {Role.READ}


def test_alg_none_is_refused(tenant, validator):
    claims = jwt.decode(tenant.mint(["DSR.Manage"]), options={"verify_signature": False})
    header = {"alg": "none", "typ": "JWT", "kid": tenant.signing_kid}
    unsigned = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
    assert _refused(validator, unsigned).reason == "algorithm"


def test_hs256_signed_with_the_public_key_is_refused(tenant, validator):
    """The classic confusion: the verifier's RSA public key used as an HMAC secret."""
    claims = jwt.decode(tenant.mint(["DSR.Manage"]), options={"verify_signature": False})
    public = tenant.public_key(tenant.signing_kid)
    assert public is not None
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": tenant.signing_kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert _refused(validator, f"{signing_input}.{_b64(mac)}").reason == "algorithm"


def test_a_tampered_token_does_not_verify(tenant, validator):
    head, _, signature = tenant.mint(["DSR.Read"]).split(".")
    claims = jwt.decode(tenant.mint(["DSR.Manage"]), options={"verify_signature": False})
    forged = f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert _refused(validator, forged).reason == "signature"


def test_garbage_is_refused_as_malformed(validator):
    for token in ("", "a.b", "not a token", "x" * (entra.MAX_TOKEN_BYTES + 1)):
        assert _refused(validator, token).reason == "malformed"


def test_an_unknown_kid_after_rotation_refetches_once_then_is_accepted(
    tenant, validator, clock, key_fetches
):
    assert validator.caller(tenant.mint(["DSR.Read"])).roles == {Role.READ}
    tenant.rotate(keep_previous=False)
    rotated = tenant.mint(["DSR.Manage"])
    assert validator.caller(rotated).roles == {Role.MANAGE}
    assert validator.caller(tenant.mint(["DSR.Read"])).roles == {Role.READ}  # cached now
    assert key_fetches() == 2  # the first use, and once after the rotation


def test_unknown_kids_refetch_at_most_once_a_minute(tenant, validator, clock, key_fetches):
    validator.caller(tenant.mint(["DSR.Read"]))
    payload = _b64(json.dumps({"roles": ["DSR.Manage"]}).encode())
    for n in range(5):
        header = {"alg": "RS256", "typ": "JWT", "kid": f"made-up-{n}"}
        token = f"{_b64(json.dumps(header).encode())}.{payload}.c2ln"
        assert _refused(validator, token).reason == "unknown_key"
    assert key_fetches() == 2  # the first use, and the first made-up kid
    clock.now += 30
    tenant.rotate(keep_previous=True)
    rotated = tenant.mint(["DSR.Read"])
    assert _refused(validator, rotated).reason == "unknown_key", "no second refetch within 60 s"
    clock.now += 30
    assert validator.caller(rotated).roles == {Role.READ}
    assert key_fetches() == 3


def test_the_old_key_is_accepted_while_the_tenant_still_publishes_it(tenant, validator, clock):
    old = tenant.mint(["DSR.Read"])
    validator.caller(old)
    tenant.rotate(keep_previous=True)
    validator.caller(tenant.mint(["DSR.Read"]))  # refetch: both keys published
    assert validator.caller(old).roles == {Role.READ}


def test_keys_are_fetched_again_after_their_maximum_age(tenant, validator, clock, key_fetches):
    validator.caller(tenant.mint(["DSR.Read"]))
    validator.caller(tenant.mint(["DSR.Read"]))
    clock.now += entra.KEYS_MAX_AGE
    validator.caller(tenant.mint(["DSR.Read"]))
    assert key_fetches() == 2


def test_the_key_set_is_bounded_and_only_rsa_signature_keys_count(tenant, settings, clock):
    real = tenant.jwks()["keys"][0]
    listed: list[dict[str, Any]] = [
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "x", "y": "y"},
        {**real, "kid": "enc", "use": "enc"},
        {**real, "kid": None},
        *({**real, "kid": f"k{n}"} for n in range(100)),
    ]
    documents = {
        settings.discovery_url: {
            "issuer": settings.issuer_v2,
            "jwks_uri": f"{settings.authority}/{settings.tenant_id}/discovery/v2.0/keys",
        },
        f"{settings.authority}/{settings.tenant_id}/discovery/v2.0/keys": {"keys": listed},
    }
    keys = SigningKeys(settings, fetch=lambda url: documents[url], clock=clock)
    assert keys.key_for("k0") is not None
    assert keys.key_for(f"k{entra.MAX_KEYS - 1}") is not None
    clock.now += entra.REFETCH_INTERVAL
    for kid in ("ec", "enc", f"k{entra.MAX_KEYS}"):
        with pytest.raises(TokenRefused):
            keys.key_for(kid)


@pytest.mark.parametrize(
    "configuration",
    [
        {"issuer": "https://login.microsoftonline.com/common/v2.0"},
        {"jwks_uri": "https://evil.example/keys"},
        {"jwks_uri": "http://127.0.0.1/keys"},
        {"jwks_uri": None},
    ],
)
def test_the_openid_configuration_must_name_this_issuer_and_keys_on_the_authority(
    settings, clock, configuration
):
    good = {
        "issuer": settings.issuer_v2,
        "jwks_uri": f"{settings.authority}/{settings.tenant_id}/discovery/v2.0/keys",
    }
    asked: list[str] = []

    def fetch(url: str) -> Mapping[str, Any]:
        asked.append(url)
        if url == settings.discovery_url:
            return {**good, **configuration}
        return {"keys": []}

    with pytest.raises(KeysUnavailable):
        SigningKeys(settings, fetch=fetch, clock=clock).key_for("any")
    assert asked == [settings.discovery_url], "no key set fetched from a judged-out URL"


def test_an_unreachable_tenant_is_a_503_not_a_401_and_is_not_hammered(settings, clock):
    calls: list[str] = []

    def down(url: str) -> Mapping[str, Any]:
        calls.append(url)
        raise KeysUnavailable("down")

    keys = SigningKeys(settings, fetch=down, clock=clock)
    for _ in range(3):
        with pytest.raises(KeysUnavailable):
            keys.key_for("kid")
    assert len(calls) == 1
    clock.now += entra.REFETCH_INTERVAL
    with pytest.raises(KeysUnavailable):
        keys.key_for("kid")
    assert len(calls) == 2


def test_fetch_refuses_plain_http_and_follows_no_redirect(tenant, monkeypatch):
    with pytest.raises(KeysUnavailable):
        fetch_json("http://127.0.0.1:1/x")
    with pytest.raises(KeysUnavailable, match="404"):
        fetch_json(f"{tenant.authority}/no-such-tenant/discovery/keys")
    monkeypatch.setattr(entra, "MAX_DOCUMENT_BYTES", 64)
    with pytest.raises(KeysUnavailable, match="over 64 bytes"):
        fetch_json(f"{tenant.authority}/{tenant.tenant_id}/discovery/v2.0/keys")
