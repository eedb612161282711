"""The Functions host's access keys: the master key, host keys and per-function keys.

Azure's key model, as azure-functions-host 4.x checks it (``SecretManager.
GetAuthorizationLevelAsync``; the kinds of key in Microsoft Learn, "Work with access keys in
Azure Functions"):

- the **master key** (name ``_master``) is admin level: it opens every function, whatever its
  ``authLevel``, and the runtime's admin API under ``/admin/``;
- **host keys** (``default``, plus any named one such as ``servicenow``) are function level for
  *every* function of the app;
- **function keys** (a ``default`` per function, plus named ones) are function level for *that*
  function only: another function's key is refused like a wrong key (401).

A route with ``authLevel`` ``function`` therefore takes the master key, any host key, or a key of
its own function; ``admin`` takes the master key only; ``anonymous`` takes anything. Keys are
compared in constant time, every candidate each time, so the answer's timing does not tell which
key (or how much of one) matched.

A ``KeyRing`` lives in memory (``KeyRing.generate``) or in a JSON file of the state directory
(``KeyRing.load_or_create``), which each change rewrites atomically (owner-only, 0600), so the
keys a ticketing system was given survive a restart of the host. The file has the shape of
``az functionapp keys list`` (``masterKey``, ``functionKeys`` for the host keys) plus
``functions``: the function keys by function name::

    {"masterKey": "…", "functionKeys": {"default": "…", "servicenow": "…"},
     "functions": {"submit_dsr": {"default": "…"}, "get_dsr": {"default": "…"}}}
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from devhost._state import read_json, unreadable, write_atomically

__all__ = [
    "DEFAULT_KEY_NAME",
    "KEYS_FILE",
    "MASTER_KEY_NAME",
    "KeyMatch",
    "KeyRing",
    "KeyRingError",
    "key_ring",
]

log = logging.getLogger("devhost.keys")

#: The file in the state directory that ``stack.py`` keeps the keys in.
KEYS_FILE: Final = "keys.json"
#: The reserved name of the master key (``ScriptConstants.DefaultMasterKeyName``).
MASTER_KEY_NAME: Final = "_master"
#: The key every host and every function has (``ScriptConstants.DefaultFunctionKeyName``).
DEFAULT_KEY_NAME: Final = "default"
#: Key names: letters, digits, ``-``, ``_``, ``.``; a leading ``_`` is reserved for the platform.
_KEY_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: Key values: visible ASCII, as they travel in a header or a query string.
_KEY_VALUE: Final = re.compile(r"[\x21-\x7e]{1,256}")

Scope = Literal["master", "host", "function"]


class KeyRingError(ValueError):
    """A key name or value the ring cannot take, or a function it does not know."""


@dataclass(frozen=True)
class KeyMatch:
    """Which key a caller presented: its name and kind (the host's auth-level claim)."""

    name: str
    scope: Scope
    function: str | None = None

    @property
    def level(self) -> Literal["admin", "function"]:
        """``admin`` for the master key, else ``function`` (what the key claims)."""
        return "admin" if self.scope == "master" else "function"


def new_key() -> str:
    """A fresh key value: 256 random bits, URL-safe (fit for a ``code`` query value)."""
    return secrets.token_urlsafe(32)


class KeyRing:
    """The master key, the host keys and the function keys of one function app."""

    def __init__(
        self,
        *,
        master_key: str | None = None,
        host_keys: Mapping[str, str] | None = None,
        function_keys: Mapping[str, Mapping[str, str]] | None = None,
        path: Path | None = None,
    ) -> None:
        """Keys not given are generated; ``path``, when set, is rewritten on every change."""
        self._lock = threading.RLock()
        self._path = path
        self._master = _value(master_key) if master_key is not None else new_key()
        self._host = {_name(n): _value(v) for n, v in (host_keys or {}).items()}
        self._host.setdefault(DEFAULT_KEY_NAME, new_key())
        self._functions: dict[str, dict[str, str]] = {}
        for function, keys in (function_keys or {}).items():
            named = {_name(n): _value(v) for n, v in keys.items()}
            self._functions[_function(function)] = named

    # -- making one ------------------------------------------------------------------------

    @classmethod
    def generate(cls, *, default_host_key: str | None = None) -> KeyRing:
        """A ring in memory only: a random master key; ``default_host_key`` or a random one."""
        hosts = {DEFAULT_KEY_NAME: default_host_key} if default_host_key is not None else None
        return cls(host_keys=hosts)

    @classmethod
    def load_or_create(cls, path: Path, *, default_host_key: str | None) -> KeyRing:
        """The ring kept in ``path``, created (random keys) and written there if absent.

        ``default_host_key``, when given (``--function-key``), becomes the ``default`` host key,
        replacing the one in the file; None keeps the file's. A file that is there but cannot be
        read raises ``StateFileError``: starting with new keys would lock out every caller that
        holds the old ones.
        """
        data = read_json(path, what="the host's access keys (master, host and function keys)")
        if data is None:
            ring = cls.generate(default_host_key=default_host_key)
            ring._path = path
            ring.save()
            log.info("access keys created in %s", path)
            return ring
        try:
            ring = cls._from_json(data, path)
        except (KeyRingError, TypeError, AttributeError) as error:
            raise unreadable(path, "the host's access keys", f"not a key file: {error}") from None
        if DEFAULT_KEY_NAME not in data["functionKeys"]:
            ring.save()  # the ring made itself a default host key: keep it
        if default_host_key is not None and not hmac.compare_digest(
            default_host_key.encode(), ring.default_host_key.encode()
        ):
            ring.set_host_key(DEFAULT_KEY_NAME, default_host_key)
            log.info("the default host key was replaced by the one given")
        return ring

    @classmethod
    def _from_json(cls, data: Any, path: Path) -> KeyRing:
        if not isinstance(data, dict):
            raise KeyRingError("expected a JSON object")
        master = data.get("masterKey")
        hosts = data.get("functionKeys")
        functions = data.get("functions", {})
        if not isinstance(master, str):
            raise KeyRingError("masterKey is missing")
        if not isinstance(hosts, dict) or not isinstance(functions, dict):
            raise KeyRingError("functionKeys and functions must be objects")
        if not all(isinstance(keys, dict) for keys in functions.values()):
            raise KeyRingError("each entry of functions must be an object")
        return cls(master_key=master, host_keys=hosts, function_keys=functions, path=path)

    # -- reading ---------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def master_key(self) -> str:
        with self._lock:
            return self._master

    @property
    def default_host_key(self) -> str:
        """The ``default`` host key: what ``az functionapp keys list --query functionKeys.default``
        prints, and what the offline host's banner shows."""
        with self._lock:
            return self._host[DEFAULT_KEY_NAME]

    def host_keys(self) -> dict[str, str]:
        """The host keys by name (the master key is not one of them, as in the admin API)."""
        with self._lock:
            return dict(self._host)

    def functions(self) -> list[str]:
        """The functions that have keys (lower case, as the Functions host keeps them)."""
        with self._lock:
            return sorted(self._functions)

    def function_keys(self, function: str) -> dict[str, str]:
        """The keys of ``function`` by name; a ``default`` one is created if it has none."""
        self.ensure_functions([function])
        with self._lock:
            return dict(self._functions[_function(function)])

    def to_json(self) -> dict[str, Any]:
        """Everything, in the shape of the key file (``az functionapp keys list`` + functions)."""
        with self._lock:
            return {
                "masterKey": self._master,
                "functionKeys": dict(self._host),
                "functions": {f: dict(k) for f, k in sorted(self._functions.items())},
            }

    # -- checking a presented key ----------------------------------------------------------

    def match(self, presented: str | None, function: str | None = None) -> KeyMatch | None:
        """Which key ``presented`` is: the master key, a host key, or a key of ``function``.

        Every key is compared (in constant time) whatever matched first, so timing tells
        nothing. Another function's key is no match, nor is any function key without
        ``function`` (the admin API has none).
        """
        if not presented:
            return None
        given = presented.encode()
        with self._lock:
            candidates: list[tuple[str, str, Scope]] = [(MASTER_KEY_NAME, self._master, "master")]
            candidates += [(name, value, "host") for name, value in self._host.items()]
            own = self._functions.get(_function(function), {}) if function else {}
            candidates += [(name, value, "function") for name, value in own.items()]
        found: KeyMatch | None = None
        for name, value, scope in candidates:
            if hmac.compare_digest(given, value.encode()) and found is None:
                found = KeyMatch(name, scope, function if scope == "function" else None)
        return found

    def authorizes(self, auth_level: str, function_name: str, presented_key: str | None) -> bool:
        """Whether ``presented_key`` lets a request into ``function_name`` at ``auth_level``.

        ``anonymous``: always. ``function``: the master key, any host key, or a key of this
        function. ``admin`` (and levels this host does not model, such as ``system``): the
        master key only.
        """
        level = auth_level.lower()
        if level == "anonymous":
            return True
        found = self.match(presented_key, function_name)
        if found is None:
            return False
        return found.scope == "master" or level == "function"

    # -- changing --------------------------------------------------------------------------

    def ensure_functions(self, functions: Iterable[str]) -> None:
        """Gives each function without keys its ``default`` key (as Azure does on first use)."""
        with self._lock:
            missing = [f for f in map(_function, functions) if f not in self._functions]
            for function in missing:
                self._functions[function] = {DEFAULT_KEY_NAME: new_key()}
            if missing:
                self.save()

    def set_master_key(self, value: str | None = None) -> str:
        """Replaces the master key (generated when ``value`` is None); returns it."""
        with self._lock:
            self._master = _value(value) if value is not None else new_key()
            self.save()
            return self._master

    def set_host_key(self, name: str, value: str | None = None) -> tuple[str, bool]:
        """Creates or replaces host key ``name``; returns its value and whether it is new."""
        with self._lock:
            name = _name(name)
            created = name not in self._host
            self._host[name] = _value(value) if value is not None else new_key()
            self.save()
            return self._host[name], created

    def set_function_key(
        self, function: str, name: str, value: str | None = None
    ) -> tuple[str, bool]:
        """Creates or replaces key ``name`` of ``function``; returns its value and whether it is
        new."""
        with self._lock:
            keys = self._functions.setdefault(_function(function), {})
            name = _name(name)
            created = name not in keys
            keys[name] = _value(value) if value is not None else new_key()
            self.save()
            return keys[name], created

    def save(self) -> None:
        """Writes the ring to its file (atomically, owner-only); a no-op for a ring in memory."""
        if self._path is None:
            return
        with self._lock:
            text = json.dumps(self.to_json(), indent=2, sort_keys=True)
            write_atomically(self._path, text + "\n", private=True)


def key_ring(function_key: str | None, keys: KeyRing | None) -> KeyRing:
    """The ring a host runs with: ``keys``, or one in memory whose ``default`` host key is
    ``function_key`` (the single key of earlier versions, still valid for every function)."""
    if keys is not None:
        if function_key is not None:
            raise ValueError("pass function_key or keys, not both")
        return keys
    if not function_key:
        raise ValueError("function_key must not be empty")
    return KeyRing.generate(default_host_key=function_key)


def _name(name: str) -> str:
    if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
        raise KeyRingError(
            f"invalid key name {name!r}: letters, digits, '-', '_' and '.', not starting with '_'"
        )
    return name


def _value(value: str) -> str:
    if not isinstance(value, str) or not _KEY_VALUE.fullmatch(value):
        raise KeyRingError("a key value is 1 to 256 visible ASCII characters")
    return value


def _function(function: str | None) -> str:
    if not isinstance(function, str) or not function:
        raise KeyRingError(f"invalid function name {function!r}")
    return function.lower()
