"""Reads `local.settings.json` the way Core Tools does, for the offline host.

`Values` become environment variables (app settings are environment variables in Azure too), but
a variable already set in the environment wins, so CI and one-off overrides need no file edits.
An encrypted file is refused: its values are only readable by Core Tools on the machine that
encrypted it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LocalSettings", "LocalSettingsError", "load_local_settings"]


class LocalSettingsError(ValueError):
    """local.settings.json cannot be used; the message says why and where."""


@dataclass(frozen=True)
class LocalSettings:
    path: Path
    values: Mapping[str, str] = field(default_factory=dict)
    local_http_port: int | None = None
    #: Names taken from the file; the others were already set in the environment.
    applied: tuple[str, ...] = ()


def load_local_settings(
    path: str | os.PathLike[str] = "local.settings.json",
    *,
    environ: MutableMapping[str, str] | None = None,
    missing_ok: bool = True,
) -> LocalSettings:
    """Loads the file and applies its `Values` to `environ` (default: `os.environ`).

    A missing file is not an error unless `missing_ok` is false: Core Tools also runs without
    one, taking every setting from the environment.
    """
    target = os.environ if environ is None else environ
    file = Path(path)
    if not file.exists():
        if missing_ok:
            return LocalSettings(path=file)
        raise LocalSettingsError(f"{file}: not found")
    try:
        data: Any = json.loads(file.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise LocalSettingsError(
            f"{file}: not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise LocalSettingsError(f"{file}: cannot be read: {error}") from None
    if not isinstance(data, dict):
        raise LocalSettingsError(f"{file}: the top level must be a JSON object")
    encrypted = data.get("IsEncrypted", False)
    if encrypted is True or (isinstance(encrypted, str) and encrypted.lower() == "true"):
        raise LocalSettingsError(
            f"{file}: IsEncrypted is true; its values can only be decrypted by Core Tools on the "
            "machine that encrypted them. Decrypt it there (`func settings decrypt`) or write "
            'the values in plain text with "IsEncrypted": false.'
        )
    values = _values(file, data.get("Values", {}))
    port = _port(file, data.get("Host", {}))
    applied = []
    for name, value in values.items():
        if name not in target:
            target[name] = value
            applied.append(name)
    return LocalSettings(path=file, values=values, local_http_port=port, applied=tuple(applied))


def _values(file: Path, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LocalSettingsError(f"{file}: Values must be a JSON object of strings")
    values: dict[str, str] = {}
    for name, value in raw.items():
        if not name or "=" in name or "\0" in name:
            raise LocalSettingsError(f"{file}: Values has an invalid setting name {name!r}")
        if not isinstance(value, str):
            raise LocalSettingsError(
                f"{file}: Values.{name} must be a string, got {type(value).__name__} "
                "(write the value in double quotes)"
            )
        if "\0" in value:
            raise LocalSettingsError(f"{file}: Values.{name} contains a NUL character")
        values[name] = value
    return values


def _port(file: Path, host: Any) -> int | None:
    if host is None:
        return None
    if not isinstance(host, dict):
        raise LocalSettingsError(f"{file}: Host must be a JSON object")
    port = host.get("LocalHttpPort")
    if port is None:
        return None
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise LocalSettingsError(f"{file}: Host.LocalHttpPort must be a port number, got {port!r}")
    return port
