"""The session's scan of the hosts' own logs finds a SAS signature or a bearer token planted
in one, and passes a redacted line (the hosts write their logs in their own processes, out of
the pytest secret scan's sight)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.e2e import host as e2e_host


def test_a_planted_signature_or_token_in_a_host_log_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "host.log"
    log.write_text(
        "event=sas_issued url=https://a.blob.core.windows.net/c?sp=w&sig=REDACTED\n"
        "event=leak url=https://a.blob.core.windows.net/c?sp=w&sig=AbCdEf0123456789%3D\n"
        "event=leak header=Bearer eyJhbGciOi.x.y\n"
    )
    monkeypatch.setattr(e2e_host, "HOSTS", [SimpleNamespace(log_path=log)])
    found = e2e_host.secrets_in_host_logs()
    assert len(found) == 2
    assert all("event=leak" in line for line in found)
