"""Receipts signed by a Key Vault key the app can use but never read the private half of.

The key is an EC P-256 key in the app's Key Vault; the app's managed identity holds a role
with exactly two data actions on it: read (the public key and its versions) and sign. Signing
goes through ``azure-keyvault-keys``' :class:`CryptographyClient`: the JWS signing input is
hashed here (SHA-256) and Key Vault signs the digest with ES256. Key Vault's EC signatures are
the raw ``r || s`` (64 bytes for P-256), which is exactly JWS ES256's form (RFC 7518 3.4), so
the signature goes into the token as it comes (:func:`dsr_export.domain.receipt.compact`
checks its length).

The current version signs, and the receipt names that exact version in its ``kid``; the JWKS
(:meth:`KeyVaultReceiptSigner.public_keys`) lists every version that signed a receipt still
within the evidence's retention, from Key Vault's own version list, so a rotation needs
neither a redeployment nor a record of its own.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from dsr_export.domain import receipt
from dsr_export.domain.errors import ErrorDoc
from dsr_export.domain.receipt import ReceiptClaims

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.keyvault.keys import KeyClient

    from dsr_export.settings import ReceiptSettings

__all__ = [
    "JWKS_CACHE_SECONDS",
    "KeyVaultReceiptSigner",
    "ReceiptSigner",
    "ReceiptSigningError",
]

#: The Key Vault REST version this code was written and tested against (the offline vault speaks
#: 7.4 and 7.5); pinned so an SDK upgrade does not change the protocol under the receipts.
KEY_VAULT_API_VERSION: Final = "7.5"
#: How long the JWKS built from Key Vault is reused: the route is anonymous, and every answer
#: must not become a Key Vault call (Key Vault throttles a vault, not a caller).
JWKS_CACHE_SECONDS: Final = 300

_ROLE_FIX: Final = (
    "give the app's managed identity the role 'DSR receipt signer' (data actions keys/read and "
    "keys/sign, infra/modules/receipt-signer-role.bicep) on the key {key} in the vault "
    "{vault}, or 'Key Vault Crypto User' scoped to that key; role assignments can take a few "
    "minutes to apply"
)


class ReceiptSigner(Protocol):
    """What the packaging activity needs: the compact JWS over the receipt's claims (typed, or
    their wire shape, which is typed before signing)."""

    def sign_receipt(self, claims: ReceiptClaims | Mapping[str, Any]) -> str: ...


@dataclass
class ReceiptSigningError(RuntimeError):
    """Signing failed; ``transient`` says whether retrying can help, ``fix`` what to do."""

    code: str
    message: str
    fix: str
    transient: bool = False
    status: int | None = None

    def __str__(self) -> str:
        return f"{self.message}: {self.fix}"

    def to_error(self) -> ErrorDoc:
        """The DSR's error document (never a secret: names, ids and the fix only)."""
        doc = ErrorDoc(
            code=self.code,
            message=self.message,
            category="service" if self.transient else "configuration",
            hint=self.fix,
            setting="RECEIPT_SIGNING_KEY_ID",
        )
        if self.status is not None:
            doc["status"] = self.status
        return doc


@dataclass
class _Cached:
    at: float = 0.0
    keys: list[dict[str, str]] = field(default_factory=list)


class KeyVaultReceiptSigner:
    """Signs receipts with the current version of one Key Vault key; lists its public keys."""

    def __init__(
        self,
        settings: ReceiptSettings,
        credential: TokenCredential,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        key_client: KeyClient | None = None,
    ) -> None:
        from azure.keyvault.keys import KeyClient

        self._settings = settings
        self._credential = credential
        self._clock = clock
        self._keys = key_client or KeyClient(
            settings.vault_url, credential, api_version=KEY_VAULT_API_VERSION
        )
        self._lock = threading.Lock()
        self._cached = _Cached()

    @property
    def key_id(self) -> str:
        """The versionless id of the signing key (the setting)."""
        return self._settings.key_id

    def sign_receipt(self, claims: ReceiptClaims | Mapping[str, Any]) -> str:
        """The compact JWS of ``claims``, signed by the key's current version.

        ``claims`` in their wire shape (``package_manifest.receipt_claims``) are typed first: a
        claim of the wrong type is a ReceiptError naming it, before Key Vault is asked. Raises
        ReceiptSigningError naming the fix: a role (403), a missing key (404), an identity that
        gets no token, or a Key Vault out of reach (transient).
        """
        from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

        if not isinstance(claims, ReceiptClaims):
            claims = ReceiptClaims.from_wire(claims)
        with self._failures("sign with"):
            key = self._keys.get_key(self._settings.key_name)
            self._check_usable(key)
            kid = str(key.id)
            signed = receipt.signing_input(kid, claims)
            crypto = CryptographyClient(key, self._credential, api_version=KEY_VAULT_API_VERSION)
            result = crypto.sign(SignatureAlgorithm.es256, hashlib.sha256(signed).digest())
        if result.key_id and result.key_id != kid:
            raise ReceiptSigningError(
                "receipt_key_mismatch",
                f"Key Vault signed with {result.key_id}, not {kid}",
                "retry: the key was rotated between reading it and signing",
                transient=True,
            )
        with self._lock:
            if self._cached.keys and kid not in {k["kid"] for k in self._cached.keys}:
                # A rotation this process had not seen: the JWKS lists the new key at once.
                self._cached = _Cached()
        return receipt.compact(signed, result.signature)

    def _check_usable(self, key: Any) -> None:
        """A disabled or expired current version is refused here, with its own fix, rather
        than as Key Vault's 403 (which would point at the role)."""
        properties = key.properties
        expires = properties.expires_on
        if properties.enabled is False or (expires is not None and expires <= datetime.now(UTC)):
            raise ReceiptSigningError(
                "receipt_key_unusable",
                f"the current version of the key {self._settings.key_name} is "
                f"{'disabled' if properties.enabled is False else 'expired'}",
                "rotate the key (az keyvault key rotate) so that a usable version is current",
            )

    def public_keys(self) -> list[dict[str, str]]:
        """The JWKs of every version a receipt within the evidence's retention may name.

        A version is listed while it is enabled and is either the newest or was replaced less
        than ``RECEIPT_KEY_PUBLISH_DAYS`` ago (it signed until its successor was created).
        Newest first; cached for :data:`JWKS_CACHE_SECONDS`.
        """
        with self._lock:
            if self._cached.keys and time.monotonic() - self._cached.at < JWKS_CACHE_SECONDS:
                return list(self._cached.keys)
        keys = self._load_public_keys()
        with self._lock:
            self._cached = _Cached(time.monotonic(), keys)
        return list(keys)

    def forget_public_keys(self) -> None:
        """Drop the cached JWKS (after a rotation the operator wants shown at once)."""
        with self._lock:
            self._cached = _Cached()

    def _load_public_keys(self) -> list[dict[str, str]]:
        name = self._settings.key_name
        with self._failures("read"):
            versions = sorted(
                self._keys.list_properties_of_key_versions(name),
                key=lambda p: p.created_on or datetime.min.replace(tzinfo=UTC),
            )
            keep = timedelta(days=self._settings.publish_days)
            now = self._clock()
            listed: list[dict[str, str]] = []
            for index, version in enumerate(versions):
                successor = versions[index + 1] if index + 1 < len(versions) else None
                retired_at = successor.created_on if successor is not None else None
                if not version.enabled or (retired_at is not None and now - retired_at > keep):
                    continue
                key = self._keys.get_key(name, version.version)
                # JsonWebKey sets its fields from the wire dynamically (untyped attributes).
                jwk: Any = key.key
                x, y = getattr(jwk, "x", None), getattr(jwk, "y", None)
                if getattr(jwk, "crv", None) != "P-256" or not x or not y:
                    continue
                listed.append(receipt.jwk_for_ec_p256(str(key.id), bytes(x), bytes(y)))
        listed.reverse()
        return listed

    def _failures(self, action: str) -> _Translate:
        return _Translate(self._settings, action)


class _Translate:
    """Turns the SDK's exceptions into ReceiptSigningError with the fix named."""

    def __init__(self, settings: ReceiptSettings, action: str) -> None:
        self._settings = settings
        self._action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, trace: Any) -> Literal[False]:
        if error is None or isinstance(error, ReceiptSigningError):
            return False
        vault, key = self._settings.vault_url, self._settings.key_name
        if isinstance(error, ClientAuthenticationError) and getattr(error, "status_code", None) in (
            None,
            401,
        ):
            raise ReceiptSigningError(
                "receipt_identity_failed",
                "the app's managed identity got no token for Key Vault",
                "check the identity (AZURE_CLIENT_ID) and that Key Vault's challenge names this "
                "tenant",
            ) from None
        if isinstance(error, ResourceNotFoundError):
            raise ReceiptSigningError(
                "receipt_key_missing",
                f"the key {key} does not exist in {vault}",
                "create it (azd provision creates it: infra/modules/keyvault.bicep) or correct "
                "RECEIPT_SIGNING_KEY_ID",
                status=404,
            ) from None
        if isinstance(error, HttpResponseError) and error.status_code in (401, 403):
            raise ReceiptSigningError(
                "receipt_key_forbidden",
                f"the app's identity may not {self._action} the key {key}",
                _ROLE_FIX.format(key=key, vault=vault),
                status=error.status_code,
            ) from None
        if isinstance(error, HttpResponseError) and error.status_code in (400, 409):
            raise ReceiptSigningError(
                "receipt_key_unusable",
                f"Key Vault refused to {self._action} the key {key} ({error.status_code})",
                "the signing key must be an enabled EC P-256 key allowing sign (key_ops)",
                status=error.status_code,
            ) from None
        if isinstance(error, AzureError):
            status = getattr(error, "status_code", None)
            raise ReceiptSigningError(
                "receipt_vault_unavailable",
                f"Key Vault did not answer ({status or type(error).__name__})",
                "retry later; check the vault's network rules if it persists",
                transient=True,
                status=status,
            ) from None
        return False
