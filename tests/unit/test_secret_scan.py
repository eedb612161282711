"""The suite-wide secret scan (tests/secret_scan.py) holds when pytest runs in xdist workers, as
``make test`` runs it: a worker's exit status does not reach the run's, so the controller must
judge what each worker recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LEAKY_TESTS = """\
import logging


def test_logs_a_signature():
    logging.getLogger("leaky").warning("GET https://a/c?sv=1&sig=AbCdEf0123%2B45 200")


def test_logs_nothing_secret():
    logging.getLogger("leaky").warning("GET https://a/c?sv=1&sig=REDACTED 200")
"""


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pytest", "-p", "tests.secret_scan", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, "-q", "-c", os.devnull, "--rootdir", str(folder), *args, str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_signature_logged_in_a_worker_fails_the_run(tmp_path: Path) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist (requirements-dev.txt) is not installed")
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS, encoding="utf-8")
    run = _pytest(tmp_path, "-n", "2")
    assert "2 passed" in run.stdout, run.stdout + run.stderr
    assert "SECRET SCAN: 1 log line(s) carry a secret" in run.stdout, run.stdout
    assert "leaky: GET https://a/c?sv=1&sig=AbCdEf0123%2B45" in run.stdout
    assert run.returncode == 1
