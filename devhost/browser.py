"""A real browser for the offline tooling: Debian's headless Chromium driven through the Chrome
DevTools Protocol, over a websocket (aiohttp's client, already a dependency), with nothing
downloaded and nothing reached on the network.

Chromium starts with a fresh profile and the flags that keep it from calling home
(``--disable-background-networking`` and friends; docs/delivery.md). :class:`Browser` opens a
page, collects console errors, uncaught exceptions and every network request it makes, and
evaluates expressions in it; the package's browser test and ``python -m devhost screenshots``
use it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

#: Where Debian's ``chromium`` package puts the browser.
CHROMIUM: Final = Path("/usr/bin/chromium")
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
#: Schemes a page from disk may load without touching the network.
LOCAL_SCHEMES: Final = ("file:", "data:", "about:", "chrome:", "devtools:")


def chromium() -> Path | None:
    """The browser's executable, or None when it is not installed."""
    found = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    return Path(found) if found else None


@dataclass
class PageReport:
    """What a page did while it was open: console errors, uncaught exceptions, and every
    request it made that left the disk."""

    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)


class BrowserError(RuntimeError):
    """Chromium did not start or did not answer; the message says what it printed."""


class Browser:
    """One headless Chromium with one tab, driven over CDP (use :func:`launch`)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: str) -> None:
        self._ws, self._session = ws, session
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.report = PageReport()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif "method" in data:
                self._note(data)
                await self._events.put(data)

    def _note(self, event: dict[str, Any]) -> None:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.report.console_errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.report.exceptions.append(str(details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.report.console_errors.append(str(params["entry"].get("text")))
        elif method == "Network.requestWillBeSent":
            url = str(params.get("request", {}).get("url", ""))
            if not url.startswith(LOCAL_SCHEMES):
                self.report.network.append(url)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = True
    ) -> dict[str, Any]:
        """Send one command and wait for its answer (BrowserError on a CDP error)."""
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        await self._ws.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, timeout=30)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def open(self, url: str) -> None:
        """Navigate and wait until the page has loaded."""
        while not self._events.empty():
            self._events.get_nowait()
        await self.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            event = await asyncio.wait_for(self._events.get(), timeout=deadline - time.monotonic())
            if event["method"] == "Page.loadEventFired":
                return
        raise BrowserError(f"{url} did not load")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (by value)."""
        answer = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression}: {answer['exceptionDetails'].get('text')}")
        return answer["result"].get("value")

    async def screenshot(self, out: Path, width: int = 1200, height: int = 900) -> None:
        """A PNG of the page as a reader sees it (the viewport, ``width`` x ``height``)."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        out.write_bytes(base64.b64decode(shot["data"]))


def _endpoint(profile: Path, process: subprocess.Popen[bytes], deadline: float) -> str:
    port_file = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise BrowserError("chromium did not open its DevTools port")


@contextlib.asynccontextmanager
async def launch(executable: Path | None = None) -> AsyncIterator[Browser]:
    """Start Chromium with a fresh profile, attach to a new tab; stop it all afterwards."""
    binary = executable or chromium()
    if binary is None:
        raise BrowserError("chromium is not installed (apt-get install -y chromium)")
    # Chromium's helpers (zygote, crashpad) may still write into the profile for a moment after
    # the browser exits: the group is killed below, and a file they leave does not fail a test.
    with tempfile.TemporaryDirectory(
        prefix="dsr-chromium-", ignore_cleanup_errors=True
    ) as profile_dir:
        profile = Path(profile_dir)
        process = subprocess.Popen(
            [str(binary), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            url = _endpoint(profile, process, time.monotonic() + 30)
            async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
                browser = await _attach(ws)
                try:
                    yield browser
                finally:
                    browser._reader.cancel()
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


async def _attach(ws: aiohttp.ClientWebSocketResponse) -> Browser:
    await ws.send_str(
        json.dumps({"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}})
    )
    target = await _answer(ws, 1)
    await ws.send_str(
        json.dumps(
            {
                "id": 2,
                "method": "Target.attachToTarget",
                "params": {"targetId": target["targetId"], "flatten": True},
            }
        )
    )
    attached = await _answer(ws, 2)
    browser = Browser(ws, attached["sessionId"])
    for domain in ("Page", "Runtime", "Network", "Log"):
        await browser.send(f"{domain}.enable")
    return browser


async def _answer(ws: aiohttp.ClientWebSocketResponse, number: int) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(ws.receive(), timeout=30)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise BrowserError(f"the DevTools connection closed ({message.type})")
        data = json.loads(message.data)
        if data.get("id") == number:
            if "error" in data:
                raise BrowserError(str(data["error"]))
            result: dict[str, Any] = data["result"]
            return result
