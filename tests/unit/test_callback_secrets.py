"""A tenant's callback signing key from its Key Vault reference: decoded like
``CALLBACK_SIGNING_SECRET``, a versioned reference read once, a versionless one again after
its time, a value that is no signing secret refused without echoing it."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest

from dsr_export.adapters.callback_secrets import (
    LATEST_TTL,
    CallbackSecrets,
    CallbackSecretUnusable,
)

VAULT = "https://kv-contoso.vault.azure.net"


@dataclass
class Bundle:
    value: str


class Vault:
    def __init__(self) -> None:
        self.values = {"cb": "whsec_" + base64.b64encode(b"key-one").decode()}
        self.reads: list[tuple[str, str, str | None]] = []

    def client(self, vault_url: str) -> Any:
        vault = self

        class Client:
            def get_secret(self, name: str, version: str | None = None) -> Bundle:
                vault.reads.append((vault_url, name, version))
                return Bundle(vault.values[name])

        return Client()


def test_keys_are_read_once_per_version_and_the_latest_again_after_its_time() -> None:
    vault, now = Vault(), [0.0]
    secrets = CallbackSecrets(None, client_for=vault.client, clock=lambda: now[0])  # type: ignore[arg-type]
    assert secrets.key(f"{VAULT}/secrets/cb") == b"key-one"
    assert secrets.key(f"{VAULT}/secrets/cb/{'a' * 32}") == b"key-one"
    vault.values["cb"] = "whsec_" + base64.b64encode(b"key-two").decode()
    now[0] = LATEST_TTL - 1
    assert secrets.key(f"{VAULT}/secrets/cb") == b"key-one", "cached within its time"
    assert secrets.key(f"{VAULT}/secrets/cb/{'a' * 32}") == b"key-one", "a version never changes"
    now[0] = LATEST_TTL + 1
    assert secrets.key(f"{VAULT}/secrets/cb") == b"key-two", "a rotation is picked up"
    assert vault.reads == [(VAULT, "cb", None), (VAULT, "cb", "a" * 32), (VAULT, "cb", None)]


@pytest.mark.parametrize("value", ["not-a-webhook-secret", "whsec_***not base64***"])
def test_a_value_that_is_no_signing_secret_is_refused_unechoed(value: str) -> None:
    vault = Vault()
    vault.values["cb"] = value
    secrets = CallbackSecrets(None, client_for=vault.client)  # type: ignore[arg-type]
    with pytest.raises(CallbackSecretUnusable) as refused:
        secrets.key(f"{VAULT}/secrets/cb")
    assert value not in str(refused.value)
    assert f"{VAULT}/secrets/cb" in str(refused.value)
