"""The subject's package at size: an export in the service's own layout (many small JSON files,
some of tens of MB, zips with zips inside), made by the Graph simulator's file generator,
packaged from Azurite to Azurite by the app's own builder; against a plain blob-to-blob copy of
the same bytes on the same Azurite.

Two figures, beside the goals of issue 19 (item 6):

- **throughput**: the package's MB/s (export bytes read / seconds) over the plain copy's MB/s
  (goal >= 0.6x);
- **peak RSS** of the worker that packages (goal <= 300 MB), at two sizes (a quarter, and the
  full size): streaming means it does not grow with the export.

Each run is a fresh interpreter (``python -m bench.package_worker``) so its peak RSS is its own.
Nothing here asserts. ``make bench`` packages 1 GB (after 0.25 GB): a few minutes. The issue's
size, about 5 GB (after 1.25 GB), is ``python -m bench package --package-gb 5``: about half an
hour on a shared 2-core machine, and about 20 GB free in the temporary folder (Azurite keeps the
export, its copy and the package on disk). ``--quick``: 0.25 GB only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from azure.core.credentials import TokenCredential
from azure.storage.blob import BlobServiceClient

from devhost.azurite import Azurite
from devhost.graph.export_files import ExportLayout, content_of, files_of
from devhost.tls import make_tls_files
from dsr_export.adapters.storage import ExportStorage
from dsr_export.domain.request import container_name
from dsr_export.settings import ExportStorageSettings, SasMode

GOAL_RATIO = 0.6
GOAL_RSS_MB = 300.0
DEFAULT_GB = 1.0
QUICK_GB = 0.25
MB = 1_000_000


def write_export(service: BlobServiceClient, request_id: str, size: int) -> tuple[str, int, int]:
    """An export of about ``size`` bytes in the service layout, finalised as the app does:
    (container, blob count, bytes)."""
    name = container_name(request_id)
    container = service.get_container_client(name)
    container.create_container()
    files = files_of(7, request_id, ExportLayout("service", size))
    written = 0
    for item in files:
        data = content_of(7, request_id, item)
        container.upload_blob(item.path, data, overwrite=True, max_concurrency=2)
        written += len(data)
    settings = ExportStorageSettings(
        blob_endpoint=service.url.rstrip("/"),
        sas_mode=SasMode.STORED_POLICY,
        sas_lifetime=timedelta(days=60),
        account_key=service.credential.account_key,
    )
    ExportStorage(settings, cast(TokenCredential, None)).write_manifest(
        name, request_id, datetime.now(UTC)
    )
    return name, len(files), written


def run_worker(mode: str, connection: str, request_id: str, env: dict[str, str]) -> dict[str, Any]:
    """One measured run in a fresh interpreter; its JSON answer."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.package_worker", mode, request_id],
        env={**env, "BENCH_STORAGE": connection},
        capture_output=True,
        text=True,
        check=False,
    )
    if answer.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{answer.stderr[-3000:]}")
    return cast(dict[str, Any], json.loads(answer.stdout.strip().splitlines()[-1]))


def main(size_gb: float = DEFAULT_GB, *, one_size: bool = False) -> dict[str, Any]:
    """Both runs (a quarter of ``size_gb``, then all of it), or only the full size."""
    full = int(size_gb * 1e9)
    sizes = (full,) if one_size else (full // 4, full)
    print(
        "package throughput and memory: exports of "
        + " and ".join(f"{size / 1e9:.2f}" for size in sizes)
        + " GB"
    )
    with tempfile.TemporaryDirectory(prefix="bench-package-") as temp:
        tls = make_tls_files(Path(temp) / "tls")
        env = {**os.environ, "REQUESTS_CA_BUNDLE": tls.ca_bundle}
        os.environ["REQUESTS_CA_BUNDLE"] = tls.ca_bundle
        with Azurite(tls, location=Path(temp) / "azurite") as azurite:
            service = BlobServiceClient.from_connection_string(azurite.connection_string)
            results: list[dict[str, Any]] = []
            for index, size in enumerate(sizes):
                request_id = f"BENCH-{index + 1}"
                started = time.monotonic()
                _, count, written = write_export(service, request_id, size)
                print(
                    f"  export {request_id}: {count} blobs, {written / MB:,.0f} MB written in "
                    f"{time.monotonic() - started:.0f}s"
                )
                copy = run_worker("copy", azurite.connection_string, request_id, env)
                package = run_worker("package", azurite.connection_string, request_id, env)
                row = {"bytes": written, "blobs": count, "copy": copy, "package": package}
                row["ratio"] = (written / package["seconds"]) / (written / copy["seconds"])
                results.append(row)
                print(
                    f"    plain copy  {written / MB / copy['seconds']:7.1f} MB/s  "
                    f"peak RSS {copy['rssMb']:6.1f} MB\n"
                    f"    package     {written / MB / package['seconds']:7.1f} MB/s  "
                    f"peak RSS {package['rssMb']:6.1f} MB  ({package['parts']} part(s), "
                    f"{package['zipBytes'] / MB:,.0f} MB zipped)\n"
                    f"    ratio {row['ratio']:.2f}x of the plain copy (goal >= {GOAL_RATIO}x)"
                )
    small, large = results[0], results[-1]
    if len(results) > 1:
        growth = large["package"]["rssMb"] - small["package"]["rssMb"]
        print(
            f"  peak RSS of the packaging worker: {small['package']['rssMb']:.0f} MB at "
            f"{small['bytes'] / 1e9:.2f} GB, {large['package']['rssMb']:.0f} MB at "
            f"{large['bytes'] / 1e9:.2f} GB ({growth:+.0f} MB; goal <= {GOAL_RSS_MB:.0f} MB, "
            "not growing with size)"
        )
    print(
        f"  goals: throughput {'met' if large['ratio'] >= GOAL_RATIO else 'NOT met'}, "
        f"memory {'met' if large['package']['rssMb'] <= GOAL_RSS_MB else 'NOT met'}"
    )
    return {"runs": results}
