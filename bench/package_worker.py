"""One measured run of the package benchmark, in its own interpreter (its peak RSS is its own):
``copy`` (every blob of the export streamed to another container, the SDK's plain download and
upload) or ``package`` (the app's builder). Prints one JSON line: seconds, peak RSS."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from devhost.sample_package import SAMPLE_PROFILE
from dsr_export.adapters.package_builder import PackageBuilder, PackageJob, PackageOptions
from dsr_export.adapters.storage import MANIFEST_BLOB
from dsr_export.domain.organisation import OrganisationProfile
from dsr_export.domain.request import container_name
from dsr_export.rendering.render import Facts
from testsupport.receipt_signer import LocalSigner


def copy(service: BlobServiceClient, request_id: str) -> dict[str, object]:
    source = service.get_container_client(container_name(request_id))
    target = service.get_container_client(container_name(request_id) + "-copy")
    target.create_container()
    total = 0
    for blob in source.list_blobs():
        if blob.name == MANIFEST_BLOB:
            continue
        stream = source.download_blob(blob.name)
        target.upload_blob(blob.name, stream.chunks(), length=blob.size, overwrite=True)
        total += int(blob.size or 0)
    return {"bytesCopied": total}


def package(service: BlobServiceClient, request_id: str) -> dict[str, object]:
    profile = OrganisationProfile.parse(json.loads(Path(SAMPLE_PROFILE).read_text("utf-8")))
    now = datetime.now(UTC)
    facts = Facts(
        request_id,
        packaged_at=now,
        received_at=now - timedelta(days=9),
        deadline=now + timedelta(days=21),
        completed_at=now - timedelta(days=1),
        regulation="GDPR",
    )
    result = PackageBuilder(service, profile, PackageOptions()).build(
        PackageJob(request_id, container_name(request_id), "en", facts),
        LocalSigner(),
        now=now,
        completed_at=(now - timedelta(days=1)).isoformat(),
        evidence_head=None,
    )
    return {
        "parts": len(result.parts),
        "zipBytes": sum(int(p["size"]) for p in result.parts),
        "files": result.file_count,
    }


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``), in MB. Not ``getrusage``'s ``ru_maxrss``: Linux
    carries the forking parent's high-water mark over ``exec`` into it."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1_000_000
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1_000_000


def main() -> int:
    mode, request_id = sys.argv[1], sys.argv[2]
    service = BlobServiceClient.from_connection_string(os.environ["BENCH_STORAGE"])
    started = time.monotonic()
    answer = copy(service, request_id) if mode == "copy" else package(service, request_id)
    seconds = time.monotonic() - started
    rss_mb = peak_rss_mb()
    print(json.dumps({**answer, "seconds": seconds, "rssMb": rss_mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
