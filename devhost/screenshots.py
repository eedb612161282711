"""``python -m devhost screenshots``: the pictures of the subject's package in docs/, taken
from a real package in a real browser (never drawn by hand).

Builds the sample package (devhost/sample_package.py) in a throw-away Azurite, unpacks it, and
has headless Chromium photograph the first page and one file's page.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Final

from azure.storage.blob import BlobServiceClient

from devhost import sample_package
from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from devhost.browser import BrowserError, chromium, launch
from dsr_export.domain.package_manifest import file_page

SHOTS: Final = {
    "package-index.png": "index.html",
    "package-file.png": file_page("Exchange/Mailbox.json"),
}


async def _photograph(root: Path, out: Path) -> None:
    async with launch() as browser:
        for png, member in SHOTS.items():
            await browser.open((root / member).as_uri())
            await browser.screenshot(out / png, width=1100, height=1000)
            print(f"wrote {out / png}")


def run(out: Path, language: str = "en") -> int:
    """Build the sample package and write the screenshots to ``out``; 0 on success."""
    if chromium() is None:
        print(
            "devhost screenshots: chromium is not installed (apt-get install -y chromium)",
            file=sys.stderr,
        )
        return 1
    out.mkdir(parents=True, exist_ok=True)
    with Azurite() as azurite, tempfile.TemporaryDirectory(prefix="dsr-sample-") as unpacked:
        service = BlobServiceClient(
            azurite.blob_endpoint,
            credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
        )
        root = sample_package.build(
            service, Path(unpacked), language=language, request_id="RITM0012345"
        )
        try:
            asyncio.run(_photograph(root, out))
        except BrowserError as error:
            print(f"devhost screenshots: {error}", file=sys.stderr)
            return 1
    return 0
