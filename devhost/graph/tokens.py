"""Graph checks the bearer token before a route does anything, and says in the 401 what is wrong.

Signatures are not verified (tokens come from the local identity endpoint or a test), but what
the app can get wrong is: a missing or malformed token, the audience (a national cloud's tokens
carry its own Graph URL, and so do tokens for this host), the lifetime (on real time, as clients
experience it), and the application permission each route needs, named in the 403.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from .replies import GraphError

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXPORT_ROLE = "User.Export.All"
READ_ROLE = "User.Read.All"

_CLOCK_SKEW = 300  # seconds a token's nbf may lie in the future


def authenticate(authorization: str | None, graph_urls: Iterable[str]) -> dict[str, Any]:
    """The token's claims, if it is a bearer token for Graph (its app id or one of its URLs)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refuse("Access token is empty.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token.strip(), options={"verify_signature": False, "verify_exp": False}
        )
    except jwt.PyJWTError:
        raise _refuse("IDX14100: JWT is not well formed.") from None
    audience = str(claims.get("aud", "")).rstrip("/")
    if audience not in (GRAPH_APP_ID, *graph_urls):
        raise _refuse("Access token validation failure. Invalid audience.")
    now = time.time()
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
        raise _refuse("Lifetime validation failed, the token is expired.")
    if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + _CLOCK_SKEW:
        raise _refuse("Lifetime validation failed, the token is not yet valid.")
    return claims


def require(claims: Mapping[str, Any], permission: str) -> None:
    granted = set(claims.get("roles") or []) | set(str(claims.get("scp", "")).split())
    if permission not in granted:
        raise GraphError(
            403,
            "Forbidden",
            "Insufficient privileges to complete the operation "
            f"(Authorization_RequestDenied): the permission '{permission}' is missing "
            "or has not been consented.",
        )


def _refuse(message: str) -> GraphError:
    challenge = (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
        f'oauth2/authorize", client_id="{GRAPH_APP_ID}"'
    )
    return GraphError(401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": challenge})
