"""local.settings.json is read like Core Tools reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from devhost.local_settings import LocalSettingsError, load_local_settings


def write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


def test_values_fill_the_environment_without_overriding(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "IsEncrypted": False,
            "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": "from-file"},
            "Host": {"LocalHttpPort": 7072},
        },
    )
    environ = {"AzureWebJobsStorage": "from-env"}
    settings = load_local_settings(path, environ=environ)
    assert environ == {"AzureWebJobsStorage": "from-env", "FUNCTIONS_WORKER_RUNTIME": "python"}
    assert settings.applied == ("FUNCTIONS_WORKER_RUNTIME",)
    assert settings.values["AzureWebJobsStorage"] == "from-file"
    assert settings.local_http_port == 7072


def test_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_TOY_SETTING", raising=False)
    path = write(tmp_path, {"Values": {"DSR_TOY_SETTING": "x"}})
    load_local_settings(path)
    assert os.environ["DSR_TOY_SETTING"] == "x"
    monkeypatch.delenv("DSR_TOY_SETTING")


def test_missing_file(tmp_path: Path) -> None:
    settings = load_local_settings(tmp_path / "absent.json", environ={})
    assert (dict(settings.values), settings.local_http_port) == ({}, None)
    with pytest.raises(LocalSettingsError, match="not found"):
        load_local_settings(tmp_path / "absent.json", environ={}, missing_ok=False)


def test_utf8_bom_and_no_host_section(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"Values": {"A": "1"}}).encode())
    assert load_local_settings(path, environ={}).values == {"A": "1"}


def test_encrypted_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"IsEncrypted": True, "Values": {"A": "c2VjcmV0"}})
    environ: dict[str, str] = {}
    with pytest.raises(LocalSettingsError, match="IsEncrypted is true"):
        load_local_settings(path, environ=environ)
    assert environ == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"Values": {"A": "1",}}', r"not valid JSON \(line 1, column"),
        ("[1, 2]", "top level must be a JSON object"),
        ({"Values": ["A=1"]}, "Values must be a JSON object"),
        ({"Values": {"PORT": 7071}}, r"Values.PORT must be a string, got int"),
        ({"Values": {"FLAG": True}}, r"Values.FLAG must be a string, got bool"),
        ({"Values": {"A=B": "1"}}, "invalid setting name"),
        ({"Host": {"LocalHttpPort": "seventy"}}, "LocalHttpPort must be a port number"),
        ({"Host": {"LocalHttpPort": 70000}}, "LocalHttpPort must be a port number"),
        ({"Host": []}, "Host must be a JSON object"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path: Path, content: Any, message: str) -> None:
    path = write(tmp_path, content)
    environ: dict[str, str] = {}
    with pytest.raises(LocalSettingsError, match=message) as raised:
        load_local_settings(path, environ=environ)
    assert str(path) in str(raised.value)
    assert environ == {}


def test_non_string_value_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, {"Values": {"SECRET_NUMBER": 987654321}})
    with pytest.raises(LocalSettingsError) as raised:
        load_local_settings(path, environ={})
    assert "987654321" not in str(raised.value)
