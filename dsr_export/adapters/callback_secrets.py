"""Each tenant's callback signing key, read from the Key Vault secret the registry names.

With ``TENANCY=multi`` a tenant's ticket system verifies its callbacks with a secret of its own:
the registry holds only where it lives (``callbackSecretRef``, a Key Vault secret URI, with or
without a version), never the value. The callback activity asks here when it signs; the value
is read with the app's identity (the role Key Vault Secrets User on that secret or vault),
decoded like ``CALLBACK_SIGNING_SECRET`` (``whsec_`` and base64) and kept in this process only:
a versioned reference for good (that version never changes), a versionless one for
:data:`LATEST_TTL`, so a rotated secret is picked up within minutes without a restart. The
value is never logged, returned or part of an exception's text.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from dsr_export.adapters.receipt_signer import KEY_VAULT_API_VERSION
from dsr_export.settings import WEBHOOK_SECRET_PREFIX

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

#: How long the latest version of a versionless reference is used before it is read again.
LATEST_TTL: Final = 300.0


class CallbackSecretUnusable(ValueError):
    """The secret the reference names is not a callback signing secret (``whsec_`` and
    base64); the message names the reference, never the value."""


@dataclass(frozen=True)
class SecretRef:
    """A Key Vault secret URI taken apart: the vault, the secret's name, its version if any."""

    vault_url: str
    name: str
    version: str | None

    @classmethod
    def parse(cls, ref: str) -> SecretRef:
        """The parts of ``https://{vault}/secrets/{name}[/{version}]`` (the registry checked
        the shape when the reference was stored)."""
        parts = urlsplit(ref)
        segments = [s for s in parts.path.split("/") if s]
        if parts.scheme != "https" or len(segments) not in (2, 3) or segments[0] != "secrets":
            raise CallbackSecretUnusable(f"{ref} is not a Key Vault secret URI")
        version = segments[2] if len(segments) == 3 else None
        return cls(f"https://{parts.netloc}", segments[1], version)


class CallbackSecrets:
    """Callback signing keys by their Key Vault reference, read once and cached (see above)."""

    def __init__(
        self,
        credential: TokenCredential,
        *,
        client_for: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credential = credential
        self._client_for = client_for or self._secret_client
        self._clock = clock
        self._cached: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def key(self, ref: str) -> bytes:
        """The HMAC key of the secret ``ref`` names."""
        wanted = SecretRef.parse(ref)
        with self._lock:
            cached = self._cached.get(ref)
        if cached is not None and (wanted.version or self._clock() - cached[1] < LATEST_TTL):
            return cached[0]
        secret = self._client_for(wanted.vault_url).get_secret(wanted.name, wanted.version)
        key = _decoded(ref, secret.value)
        with self._lock:
            self._cached[ref] = (key, self._clock())
        return key

    def _secret_client(self, vault_url: str) -> Any:
        from azure.keyvault.secrets import SecretClient

        return SecretClient(vault_url, self._credential, api_version=KEY_VAULT_API_VERSION)


def _decoded(ref: str, value: str | None) -> bytes:
    if not value or not value.startswith(WEBHOOK_SECRET_PREFIX):
        raise CallbackSecretUnusable(f"the secret {ref} must start with {WEBHOOK_SECRET_PREFIX}")
    try:
        return base64.b64decode(value.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise CallbackSecretUnusable(f"the secret {ref} is not base64 after the prefix") from None
