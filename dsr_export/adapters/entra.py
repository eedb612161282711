"""Entra ID access tokens, judged by the app itself.

Why here and not in front of the app: App Service authentication validates tokens and hands
the app a principal header, but the app could trust that header only when ``WEBSITE_AUTH_ENABLED``
said the platform wrote it, and nothing public says Flex Consumption workers set it. So the app
validates every bearer token itself, with PyJWT, against the one tenant and registration its
settings name (:class:`~dsr_export.settings.EntraSettings`); App Service authentication may
stay in front as a second wall.

The rules: RS256 only (``alg`` is read from the header only to refuse anything else, ``none``
and HS256 signed with the public key included); the signing key by ``kid`` from the tenant's
published key set; issuer the tenant's v2.0 form (``{authority}/{tid}/v2.0``) or v1.0 form
(``https://sts.windows.net/{tid}/``); audience the registration's client id or Application ID
URI; ``exp`` and ``nbf`` with :data:`CLOCK_SKEW`; ``tid`` the app's tenant; roles from
``roles``.

The key set: the tenant's OpenID configuration (``{authority}/{tid}/v2.0/.well-known/
openid-configuration``) names it (``jwks_uri``), which must be on the authority's own origin
(judged by :mod:`dsr_export.adapters.outbound`, no redirects followed). Both documents are
cached for :data:`KEYS_MAX_AGE` at most, size-bounded (:data:`MAX_DOCUMENT_BYTES`,
:data:`MAX_KEYS`), and fetched again before that only when a token names a ``kid`` the cache
does not hold (Entra rolls its keys over), at most once per :data:`REFETCH_INTERVAL`, so a
stream of tokens with made-up ``kid`` values cannot turn the app into a load on Entra.
PyJWT's own ``PyJWKClient`` was checked against these rules and is not used. In 2.15 it
follows no redirect and waits 30 seconds after a successful fetch before refetching for an
unknown ``kid``, but: its cooldown counts from the last *successful* fetch, so while the tenant
is out of reach every token with a made-up ``kid`` fetches again; it reads a document of any
size; it trusts TLS through its own ``ssl_context`` rather than the ``requests`` stack the app's
other calls use (``REQUESTS_CA_BUNDLE``); it knows nothing of the OpenID configuration, whose
``jwks_uri`` must be judged anyway; and releases the requirement range allows (before 2.13)
followed redirects and had no cooldown at all. What it would save is a few lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import jwt
import requests

from dsr_export.adapters.outbound import UrlRefused, judge, same_origin
from dsr_export.domain.callers import Caller, KeysUnavailable, TokenRefused, from_claims
from dsr_export.domain.logs import log_event
from dsr_export.settings import EntraSettings

#: The only signature algorithm accepted: what Entra signs access tokens with.
ALGORITHM: Final = "RS256"
#: Tolerance for ``exp``, ``nbf`` and ``iat`` between Entra's clock and ours.
CLOCK_SKEW: Final = 60
#: How long a fetched key set may be used before it is fetched again, whatever happens.
KEYS_MAX_AGE: Final = 24 * 3600.0
#: A token naming an unknown ``kid`` fetches the key set again at most this often (seconds).
REFETCH_INTERVAL: Final = 60.0
#: Larger documents are refused: Entra's are a few KiB.
MAX_DOCUMENT_BYTES: Final = 64 * 1024
#: At most this many signing keys are kept from one key set (Entra publishes a handful).
MAX_KEYS: Final = 32
#: Larger tokens are refused before anything is parsed (Entra's are 1-3 KiB).
MAX_TOKEN_BYTES: Final = 16 * 1024
_FETCH_TIMEOUT: Final = 10.0
_MIN_RSA_BITS: Final = 2048

#: GET a URL and return its JSON object; raises :class:`KeysUnavailable` on any failure.
Fetch = Callable[[str], Mapping[str, Any]]


def fetch_json(url: str) -> Mapping[str, Any]:
    """GET ``url`` over https: no redirects, a timeout, at most :data:`MAX_DOCUMENT_BYTES`."""
    try:
        target = judge(url)
    except UrlRefused as exc:
        raise KeysUnavailable(f"the key URL {exc}") from None
    try:
        with requests.get(
            target.url,
            timeout=_FETCH_TIMEOUT,
            allow_redirects=False,
            stream=True,
            headers={"Accept": "application/json"},
        ) as answer:
            if answer.status_code != 200:
                raise KeysUnavailable(f"{target.host} answered {answer.status_code}")
            body = answer.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise KeysUnavailable(f"{target.host} could not be reached ({reason})") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise KeysUnavailable(f"{target.host} sent a document over {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise KeysUnavailable(f"{target.host} sent something that is not JSON") from None
    if not isinstance(document, dict):
        raise KeysUnavailable(f"{target.host} sent JSON that is not an object")
    return document


class SigningKeys:
    """The tenant's signing keys by ``kid``: cached, bounded, refetched on an unknown ``kid``.

    Thread-safe: the worker runs HTTP functions on a thread pool. One fetch at a time; a request
    that waits for it finds the fresh keys when it gets the lock.
    """

    def __init__(
        self,
        settings: EntraSettings,
        *,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._refetched_at: float | None = None
        self._failed_at: float | None = None

    def ready(self) -> int:
        """How many keys the cache holds, fetching them first if it holds none fresh (the deep
        health check: can this deployment judge a token at all?)."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= KEYS_MAX_AGE:
                self._refresh(now, reason="expired" if self._fetched_at else "first_use")
            return len(self._keys)

    def key_for(self, kid: str) -> jwt.PyJWK:
        """The key ``kid`` names; :class:`TokenRefused` if the tenant does not publish it."""
        with self._lock:
            now = self._clock()
            fresh = self._fetched_at is not None and now - self._fetched_at < KEYS_MAX_AGE
            if fresh and kid in self._keys:
                return self._keys[kid]
            if not fresh:
                self._refresh(now, reason="expired" if self._fetched_at else "first_use")
            elif self._refetched_at is None or now - self._refetched_at >= REFETCH_INTERVAL:
                # Entra rolled its keys over, or the kid is made up: once a minute at most.
                self._refetched_at = now
                with contextlib.suppress(KeysUnavailable):  # logged; the cached keys stay
                    self._refresh(now, reason="unknown_kid")
            if kid in self._keys:
                return self._keys[kid]
        raise TokenRefused("unknown_key", "the token's signing key is not one the tenant publishes")

    def _refresh(self, now: float, *, reason: str) -> None:
        """Fetch the keys (a failure is retried no sooner than :data:`REFETCH_INTERVAL`)."""
        if self._failed_at is not None and now - self._failed_at < REFETCH_INTERVAL:
            raise KeysUnavailable("the signing keys could not be fetched a moment ago")
        try:
            self._keys = self._load(reason=reason)
        except KeysUnavailable as exc:
            self._failed_at = now
            log_event("signing_keys_unavailable", level=logging.ERROR, reason=str(exc))
            raise
        self._fetched_at, self._failed_at = now, None

    def _load(self, *, reason: str) -> dict[str, jwt.PyJWK]:
        settings = self._settings
        config = self._fetch(settings.discovery_url)
        if config.get("issuer") != settings.issuer_v2:
            raise KeysUnavailable("the OpenID configuration names another issuer")
        try:
            jwks_uri = same_origin(config.get("jwks_uri"), settings.authority).url
        except UrlRefused as exc:
            raise KeysUnavailable(f"the OpenID configuration's jwks_uri {exc}") from None
        listed = self._fetch(jwks_uri).get("keys")
        if not isinstance(listed, list):
            raise KeysUnavailable("the key set has no keys")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in listed:
            if len(keys) >= MAX_KEYS:
                break
            key = _signing_key(entry)
            if key is not None:
                keys[str(entry["kid"])] = key
        log_event("signing_keys_fetched", keys=len(keys), reason=reason)
        return keys


def _signing_key(entry: object) -> jwt.PyJWK | None:
    """An RSA signature key of at least 2048 bits with a ``kid``; None for anything else."""
    if not isinstance(entry, dict) or entry.get("kty") != "RSA":
        return None
    if entry.get("use", "sig") != "sig" or not isinstance(entry.get("kid"), str):
        return None
    try:
        key = jwt.PyJWK(entry, algorithm=ALGORITHM)
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    size = getattr(key.key, "key_size", 0)
    return key if size >= _MIN_RSA_BITS else None


class TokenValidator:
    """Judges bearer tokens for one registration: :meth:`caller` or :class:`TokenRefused`."""

    def __init__(self, settings: EntraSettings, keys: SigningKeys | None = None) -> None:
        self._settings = settings
        self._keys = keys or SigningKeys(settings)

    @property
    def signing_keys(self) -> SigningKeys:
        return self._keys

    def caller(self, token: str) -> Caller:
        """The caller a valid token names, with its app roles."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRefused("malformed", "the token is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("malformed", "the token is not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise TokenRefused("algorithm", f"the token must be signed with {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefused("unknown_key", "the token names no signing key (kid)")
        key = self._keys.key_for(kid)
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                audience=list(settings.audiences),
                issuer=list(settings.issuers),
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "nbf", "iss", "aud", "tid"]},
            )
        except jwt.PyJWTError as exc:
            raise _refusal(exc) from None
        if str(claims["tid"]).lower() != settings.tenant_id:
            raise TokenRefused("tenant", "the token is from another tenant")
        return from_claims(claims)


def _refusal(exc: jwt.PyJWTError) -> TokenRefused:
    """A refusal that says what is wrong with the token, never what it contains."""
    known: list[tuple[type[jwt.PyJWTError], str, str]] = [
        (jwt.ExpiredSignatureError, "expired", "the token has expired"),
        (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet"),
        (jwt.InvalidAudienceError, "audience", "the token is for another audience"),
        (jwt.InvalidIssuerError, "issuer", "the token's issuer is not the app's tenant"),
        (jwt.InvalidSignatureError, "signature", "the token's signature does not verify"),
    ]
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return TokenRefused("claims", f"the token lacks the {exc.claim} claim")
    for kind, reason, detail in known:
        if isinstance(exc, kind):
            return TokenRefused(reason, detail)
    return TokenRefused("malformed", "the token is not valid")
