"""Collecting the unit tests loads no part of the offline host (issue 18).

Unit tests replay orchestrators with :mod:`testsupport.replay` and fake the app's I/O through the
composition seam; the emulators (Azurite, the Graph simulator, the managed-identity endpoint, the
Durable engine, the Functions host) belong to the tiers that start them, whose conftests import
their fixtures from ``tests/fixtures/``. A fresh interpreter collects ``tests/unit`` and lists the
``devhost`` modules it loaded: only the local stand-ins a unit test talks to may be among them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What a unit test may load of devhost: a local token issuer over TLS (Entra), App Service's
#: auth header, the certificates, and the small parts these stand on. No emulator of the platform.
STAND_INS = {
    "devhost",
    "devhost._service",
    "devhost._state",
    "devhost.entra",
    "devhost.entra_federation",  # the local Entra's token endpoint (TENANCY=multi)
    "devhost.https_server",
    "devhost.platform_auth",
    "devhost.tls",
}

_COLLECT = """
import json, sys
import pytest
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests/unit"])
loaded = sorted(m for m in sys.modules if m == "devhost" or m.startswith("devhost."))
print("LOADED=" + json.dumps({"code": int(code), "modules": loaded}))
"""


def _devhost_modules_loaded_by_collecting_unit() -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", _COLLECT], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("LOADED=")), None)
    assert line is not None, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(line.removeprefix("LOADED="))
    assert result["code"] == 0, run.stdout[-2000:]
    return list(result["modules"])


def test_collecting_the_unit_tests_imports_no_offline_host_part() -> None:
    loaded = _devhost_modules_loaded_by_collecting_unit()
    assert "devhost.entra" in loaded, "the check sees what collection loads"
    host_parts = sorted(set(loaded) - STAND_INS)
    assert host_parts == [], f"collecting tests/unit loaded parts of the offline host: {host_parts}"
