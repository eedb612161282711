"""The Functions host's own HTTP endpoints, outside the route prefix: the runtime's key API
(``KeysController``), the manual run of a non-HTTP function, and the local tenant's offline-only
token hooks under ``/.auth/devhost/``.

Split from ``devhost/triggers/http.py`` along its seams (issue 18); the behaviour is described
in that module's docstring. Each endpoint answers for the master key (or, for a token, a host
key) only: 401 without a valid key, 403 with a valid key of too small a scope.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from devhost.entra import EntraTenant
from devhost.keys import MASTER_KEY_NAME, KeyRing, KeyRingError
from devhost.triggers.http_wire import Reply, json_reply, text_reply

ReadBody = Callable[[], bytes]

_MINT_HOOK = "/.auth/devhost/token"
_ROTATE_HOOK = "/.auth/devhost/rotate"


@dataclass(frozen=True)
class AdminTarget:
    """A path of the key API: host keys (``scope``) or a function's, and maybe one key."""

    path: str
    scope: str | None = None
    function: str | None = None
    key_name: str | None = None


_HOST_KEY_SCOPES = frozenset({"keys", "functionkeys", "systemkeys"})


def run_target(path: str) -> str | None:
    """The function ``/admin/functions/{name}`` names (the admin API's manual run), or None."""
    segments = [unquote(s) for s in path.strip("/").split("/")]
    if len(segments) == 3 and [s.lower() for s in segments[:2]] == ["admin", "functions"]:
        return segments[2]
    return None


def admin_target(path: str) -> AdminTarget | None:
    """The key API route ``path`` names (matched case-insensitively, as ASP.NET routes), or
    None: any other path, ``/admin/...`` included, goes on to the function routes."""
    segments = [unquote(s) for s in path.strip("/").split("/")]
    lowered = [s.lower() for s in segments]
    host = lowered[:2] == ["admin", "host"] and len(segments) in (3, 4)
    if host and lowered[2] in _HOST_KEY_SCOPES:
        # `keys` is the same scope as `functionkeys` (the host keys).
        scope = "functionkeys" if lowered[2] == "keys" else lowered[2]
        name = segments[3] if len(segments) == 4 else None
        return AdminTarget(path, scope=scope, key_name=name)
    if lowered[:2] == ["admin", "functions"] and len(segments) in (4, 5) and lowered[3] == "keys":
        name = segments[4] if len(segments) == 5 else None
        return AdminTarget(path, function=segments[2], key_name=name)
    return None


class _Refused(Exception):
    """An endpoint's refusal, raised where it is found and answered in one place."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _refuse(status: int, headers: list[tuple[str, str]] | None = None) -> _Refused:
    return _Refused(Reply(status, headers or []))


class HostEndpoints:
    """The host's endpoints for one key ring, the app's function names and the local tenant."""

    def __init__(
        self,
        keys: KeyRing,
        functions: set[str],
        *,
        tenant: EntraTenant | None,
        run_function: Callable[[str], bool] | None,
    ) -> None:
        self._keys = keys
        self._functions = functions
        self._tenant = tenant
        self._run_function = run_function

    def auth_hook(
        self, method: str, path: str, key: str | None, read_body: ReadBody
    ) -> Reply | None:
        """The reply of a ``/.auth/`` path when there is a local tenant (App Service owns that
        path, before any other check), or None."""
        if self._tenant is None or not path.startswith("/.auth/"):
            return None
        try:
            return self._auth_hook(self._tenant, method, path, key, read_body)
        except _Refused as refused:
            return refused.reply

    def admin(
        self, method: str, path: str, key: str | None, base: str, read_body: ReadBody
    ) -> Reply | None:
        """The reply of the admin endpoint ``path`` names, or None when it names none (the
        request goes on to the app's routes). ``base`` is the URL the caller used."""
        try:
            run = run_target(path)
            if run is not None and method == "POST":
                return self._run(run, key)
            target = admin_target(path)
            if target is not None:
                return self._key_api(method, target, key, base, read_body)
        except _Refused as refused:
            return refused.reply
        return None

    def _master(self, key: str | None) -> None:
        found = self._keys.match(key)
        if found is None:
            raise _refuse(HTTPStatus.UNAUTHORIZED)
        if found.scope != "master":
            raise _refuse(HTTPStatus.FORBIDDEN)

    def _auth_hook(
        self, tenant: EntraTenant, method: str, path: str, key: str | None, read_body: ReadBody
    ) -> Reply:
        """The local tenant's offline-only hooks (Entra has no such thing):

        - ``POST /.auth/devhost/token`` ``{"roles": [...], "kind": "application"|"user", "id",
          "version": "2.0"|"1.0"}``: a caller token of the local tenant. Guarded by a host key
          (or the master key), as anyone able to call every function could also mint a token;
          a function key, good for one function only, is not enough.
        - ``POST /.auth/devhost/rotate`` ``{"keepPrevious": true}``: the tenant signs with a new
          key from now on, and keeps the old one published or drops it. The master key only.
        """
        hook = path.rstrip("/")
        if hook not in (_MINT_HOOK, _ROTATE_HOOK):
            raise _refuse(HTTPStatus.NOT_FOUND)
        if method != "POST":
            raise _refuse(HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", "POST")])
        found = self._keys.match(key)
        if found is None:
            raise _refuse(HTTPStatus.UNAUTHORIZED)
        try:
            asked = json.loads(read_body() or b"{}")
            if hook == _ROTATE_HOOK:
                if found.scope != "master":
                    raise _refuse(HTTPStatus.FORBIDDEN)
                return _rotate(tenant, asked)
            return _mint(tenant, asked)
        except (ValueError, TypeError, AttributeError):
            raise _refuse(HTTPStatus.BAD_REQUEST) from None

    def _run(self, name: str, key: str | None) -> Reply:
        """``POST /admin/functions/{name}``: run a non-HTTP function now (master key only);
        202 at once, the function runs in the background, as in Azure."""
        self._master(key)
        if self._run_function is None or not self._run_function(name):
            raise _refuse(HTTPStatus.NOT_FOUND)
        return Reply(HTTPStatus.ACCEPTED)

    def _key_api(
        self, method: str, target: AdminTarget, key: str | None, base: str, read_body: ReadBody
    ) -> Reply:
        """The runtime's key API (``KeysController``), for the master key only."""
        self._master(key)
        allowed = ("GET", "POST", "PUT") if target.key_name is not None else ("GET",)
        if method not in allowed:
            raise _refuse(HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", ", ".join(allowed))])
        if target.function is not None and target.function.lower() not in self._functions:
            raise _refuse(HTTPStatus.NOT_FOUND)
        link = {"links": [{"rel": "self", "href": base + target.path}]}
        if method == "GET":
            return self._read_keys(target, link)
        assert target.key_name is not None
        value_given = _put_value(read_body) if method == "PUT" else None
        try:
            value, created = self._set_key(target, target.key_name, value_given)
        except KeyRingError as error:
            return text_reply(HTTPStatus.BAD_REQUEST, str(error))
        answer = {"name": target.key_name, "value": value, **link}
        if created:
            return json_reply(HTTPStatus.CREATED, answer, [("Location", base + "/")])
        return json_reply(HTTPStatus.OK, answer)

    def _read_keys(self, target: AdminTarget, link: dict[str, Any]) -> Reply:
        keys = self._admin_keys(target)
        if target.key_name is None:
            listed = [{"name": n, "value": v} for n, v in keys.items()]
            return json_reply(HTTPStatus.OK, {"keys": listed, **link})
        value = keys.get(target.key_name)
        if value is None:
            raise _refuse(HTTPStatus.NOT_FOUND)
        return json_reply(HTTPStatus.OK, {"name": target.key_name, "value": value, **link})

    def _set_key(self, target: AdminTarget, name: str, value_given: str | None) -> tuple[str, bool]:
        """Sets (or, without a value, generates) one key: its value, and whether it is new."""
        if target.function is None and name.lower() == MASTER_KEY_NAME:
            # As the host: the master key is set through either host scope, by its name.
            return self._keys.set_master_key(value_given), value_given is None
        if target.function is not None:
            return self._keys.set_function_key(target.function, name, value_given)
        if target.scope == "systemkeys":
            raise _refuse(HTTPStatus.NOT_FOUND)  # extensions own system keys; none here
        return self._keys.set_host_key(name, value_given)

    def _admin_keys(self, target: AdminTarget) -> dict[str, str]:
        if target.function is not None:
            return self._keys.function_keys(target.function)
        if target.scope == "systemkeys":
            # No extension keys offline; one key by name only, as the host: the master key.
            return {MASTER_KEY_NAME: self._keys.master_key} if target.key_name else {}
        return self._keys.host_keys()


def _put_value(read_body: ReadBody) -> str:
    """The key value a ``PUT`` carries (``{"name": ..., "value": ...}``), or a 400 refusal."""
    try:
        body = json.loads(read_body() or b"null")
    except ValueError:
        body = None
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, str):
        raise _Refused(text_reply(HTTPStatus.BAD_REQUEST, "Invalid key value"))
    return value


def _rotate(tenant: EntraTenant, asked: Mapping[str, Any]) -> Reply:
    keep = asked.get("keepPrevious", True)
    if not isinstance(keep, bool):
        raise _refuse(HTTPStatus.BAD_REQUEST)
    kid = tenant.rotate(keep_previous=keep)
    return json_reply(HTTPStatus.OK, {"kid": kid, "keys": tenant.jwks()})


def _mint(tenant: EntraTenant, asked: Mapping[str, Any]) -> Reply:
    version = str(asked.get("version", "2.0"))
    if version not in ("1.0", "2.0"):
        raise _refuse(HTTPStatus.BAD_REQUEST)
    token = tenant.mint(
        [str(role) for role in asked.get("roles", [])],
        kind=str(asked.get("kind", "application")),
        subject_id=asked.get("id"),
        version=version,
    )
    answer = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
    return Reply(200, [("Content-Type", "application/json")], json.dumps(answer).encode())
