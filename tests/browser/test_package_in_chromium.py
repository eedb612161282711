"""The subject's package in a real browser: Debian's headless Chromium opens the unpacked
package's index.html from disk (fresh profile, no network), and the test checks what the
person sees: the summary, every file of the manifest reachable by links, a JSON file rendered
as a table, no console error, no network request, and hostile names and values inert.

Skipped only where Chromium is not installed; CI installs it (.ci/run), so it runs there.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from azure.storage.blob import BlobServiceClient

from devhost import sample_package
from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from devhost.browser import Browser, chromium, launch
from dsr_export.domain.package_manifest import PackageManifest, file_page

pytestmark = [
    pytest.mark.azurite,
    pytest.mark.skipif(
        chromium() is None, reason="chromium is not installed (apt-get install -y chromium)"
    ),
]


@pytest.fixture(scope="module")
def package(azurite: Azurite, tls_files, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)
        service = BlobServiceClient(
            azurite.blob_endpoint,
            credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
        )
        out = tmp_path_factory.mktemp("package")
        return sample_package.build(service, out, request_id="RITM0012345")


def _local(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


async def _crawl(browser: Browser, root: Path) -> tuple[set[Path], dict[str, object]]:
    """Every file reachable by links from index.html (pages are opened, other files noted)."""
    seen: set[Path] = set()
    queue: deque[Path] = deque([root / "index.html"])
    first: dict[str, object] = {}
    while queue:
        page = queue.popleft()
        if page in seen:
            continue
        seen.add(page)
        await browser.open(page.as_uri())
        if not first:
            first = await browser.evaluate(
                "({title: document.title,"
                " request: document.getElementById('request-id').textContent,"
                " files: document.getElementById('file-count').textContent,"
                " sections: document.querySelectorAll('#products tbody tr').length,"
                " chart: document.querySelectorAll('svg rect').length})"
            )
        hrefs = await browser.evaluate(
            "Array.from(document.querySelectorAll('a[href]'), a => a.href)"
        )
        for href in hrefs:
            if not href.startswith("file:"):
                continue
            target = _local(href)
            if target.suffix == ".html" and target.is_relative_to(root):
                queue.append(target)
            else:
                seen.add(target)
    return seen, first


def test_the_package_opens_from_disk_and_every_file_is_reachable(package: Path):
    manifest = PackageManifest.from_bytes((package / "manifest.json").read_bytes())

    async def run() -> None:
        async with launch() as browser:
            reached, first = await _crawl(browser, package)
            assert first["request"] == "RITM0012345"
            assert first["files"] == str(len(sample_package.sample_files()))
            assert first["sections"] == 6
            assert first["chart"] == 6
            missing = sorted(
                item.path for item in manifest.files if package / item.path not in reached
            )
            assert not missing, missing
            await browser.open((package / file_page("Exchange/Mailbox.json")).as_uri())
            table = await browser.evaluate(
                "Array.from(document.querySelectorAll('table.json-table thead th'),"
                " th => th.textContent)"
            )
            assert table == ["Folder", "Items", "LastAccess"]
            cells = await browser.evaluate(
                "document.querySelectorAll('table.json-table tbody tr').length"
            )
            assert cells == 4
            assert browser.report.console_errors == []
            assert browser.report.exceptions == []
            assert browser.report.network == []

    asyncio.run(run())


def test_hostile_names_and_values_render_inert(package: Path):
    async def run() -> None:
        async with launch() as browser:
            await browser.open((package / file_page(sample_package.HOSTILE_NAME)).as_uri())
            state = await browser.evaluate(
                "({pwned: typeof window.__pwned, title: document.title,"
                " scripts: document.scripts.length, images: document.images.length,"
                " heading: document.querySelector('h1').textContent,"
                " jsLinks: Array.from(document.links)"
                ".filter(a => a.protocol === 'javascript:').length,"
                " body: document.body.innerText})"
            )
            assert state["pwned"] == "undefined"
            assert state["title"] != "pwned"
            assert state["scripts"] == 0
            assert state["images"] == 0
            assert state["jsLinks"] == 0
            assert "<script>" in state["heading"]
            assert "\u202e" not in state["body"]
            assert "[U+202E]" in state["body"]
            assert browser.report.network == []
            assert browser.report.console_errors == []

    asyncio.run(run())


def test_the_manifest_lists_what_is_on_disk(package: Path):
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    on_disk = {str(path.relative_to(package)) for path in package.rglob("*") if path.is_file()} - {
        "manifest.json",
        "receipt.jws",
    }
    assert {item["path"] for item in manifest["files"]} == on_disk
