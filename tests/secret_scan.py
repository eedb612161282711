"""A pytest plugin: no log line produced by the whole test suite may carry a SAS signature.

It records every log record (message and exception text) from every logger while the suite
runs, and fails the session if any holds a real-looking ``sig=`` value or bearer token. The
end-to-end tests additionally scan the task hub itself (see tests/e2e).
"""

from __future__ import annotations

import logging
import re
from typing import Final

import pytest

#: A signature that is not the redacted placeholder.
SECRET: Final = re.compile(r"(?i)\bsig=(?!REDACTED)[A-Za-z0-9%/+=]{8,}|Bearer\s+(?!REDACTED)eyJ")


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.hits: list[str] = []
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to judge
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]}"
        if SECRET.search(text):
            self.hits.append(f"{record.name}: {text[:300]}")


_RECORDER = _Recorder()


def pytest_sessionstart(session: pytest.Session) -> None:
    root = logging.getLogger()
    root.addHandler(_RECORDER)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_RECORDER)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # An xdist worker: its exit status does not reach the run's, so the controller judges
        # what every worker recorded (pytest_testnodedown below).
        workeroutput["secret_scan"] = {"hits": _RECORDER.hits, "count": _RECORDER.count}
        return
    if _RECORDER.hits:
        lines = "\n  ".join(_RECORDER.hits[:20])
        print(f"\nSECRET SCAN: {len(_RECORDER.hits)} log line(s) carry a secret:\n  {lines}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        print(f"\nsecret scan: {_RECORDER.count} log records, no SAS signature or token")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """An xdist worker is done (``pytest -n``): its records count as the controller's own. A
    worker that died without a report fails the scan: its logs went unread."""
    scanned = getattr(node, "workeroutput", {}).get("secret_scan")
    if scanned is None:
        _RECORDER.hits.append(f"{node}: a worker ended without its secret scan ({error})")
        return
    _RECORDER.hits.extend(scanned["hits"])
    _RECORDER.count += scanned["count"]
