"""Where a package's review is kept: ``package-review.json`` in its delivery container.

Every write is conditional on the ETag read (or on there being none yet): two reviewers who
decide at once cannot both win; the second gets :class:`ReviewConflict` and reads again. A
rebuild of the package keeps the document (``package_builder.KEPT_BLOBS``).
"""

from __future__ import annotations

import json

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings

from dsr_export.adapters.package_builder import MANIFEST_COPY_BLOB, REVIEW_BLOB
from dsr_export.domain.package_manifest import delivery_container
from dsr_export.domain.review import Review


class ReviewConflict(RuntimeError):
    """Someone else changed the review between our read and our write."""


class ReviewStore:
    """Reads and writes the review documents of one account's delivery containers."""

    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    def _blob(self, request_id: str, name: str) -> BlobClient:
        return self._service.get_container_client(delivery_container(request_id)).get_blob_client(
            name
        )

    def read(self, request_id: str) -> tuple[Review | None, str | None]:
        """The review and its ETag, or (None, None) when nobody opened it yet."""
        try:
            downloaded = self._blob(request_id, REVIEW_BLOB).download_blob()
        except ResourceNotFoundError:
            return None, None
        return Review.from_dict(json.loads(downloaded.readall())), downloaded.properties.etag

    def preview_manifest(self, request_id: str) -> dict[str, object] | None:
        """The built package's manifest (its copy beside the parts), or None."""
        try:
            raw = self._blob(request_id, MANIFEST_COPY_BLOB).download_blob().readall()
        except ResourceNotFoundError:
            return None
        document = json.loads(raw)
        return document if isinstance(document, dict) else None

    def write(self, request_id: str, review: Review, etag: str | None) -> str:
        """Store ``review`` if nobody wrote since ``etag`` was read (None: if none exists);
        its new ETag. :class:`ReviewConflict` otherwise."""
        body = json.dumps(review.to_dict(), indent=2, sort_keys=True).encode()
        blob = self._blob(request_id, REVIEW_BLOB)
        settings = ContentSettings(content_type="application/json")
        try:
            if etag is None:
                answer = blob.upload_blob(body, overwrite=False, content_settings=settings)
            else:
                answer = blob.upload_blob(
                    body,
                    overwrite=True,
                    content_settings=settings,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            raise ReviewConflict("the review was changed by someone else meanwhile") from None
        return str(answer["etag"])

    def discard(self, request_id: str) -> None:
        """Forget the review (the package it was of is gone: a new export, a new review)."""
        try:
            self._blob(request_id, REVIEW_BLOB).delete_blob()
        except ResourceNotFoundError:
            return
