"""Graph accepts a ``storageLocation`` only once it has tried the SAS itself, in a fixed order.

The service never sees the account key: it learns what the SAS allows by using it, so these
checks run for real against the container (Azurite offline), and the first that fails names
the error: no SAS at all, an account SAS, not a blob container, list access, no write or add
(found by creating ``RequestInfo.json``, which also marks the container used: a second export
into it is ``StorageLocationAlreadyUsed``), read access; anything else that goes wrong is
``StorageLocationInvalid``.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
)
from azure.storage.blob import BlobClient, ContainerClient

from .redaction import log, storage_log
from .replies import GraphError, iso

REQUEST_INFO = "RequestInfo.json"


def storage_location(body: bytes) -> str:
    """The submit body's ``storageLocation``, which must be an absolute URI."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = None
    location = data.get("storageLocation") if isinstance(data, dict) else None
    parts = urlsplit(location) if isinstance(location, str) else None
    if parts is None or not parts.scheme or not parts.netloc:
        raise _storage_error("StorageLocationInvalid", "storageLocation must be an absolute URI.")
    return str(location)


def request_info(op_id: str, user_id: str, submitted: datetime) -> bytes:
    """The content of ``RequestInfo.json``, the service's receipt in the container.

    As in the service's own source: indented JSON, written while the SAS is validated and
    before the command is posted; its ``CommandId`` is the id the export call returns and the
    one ``dataPolicyOperations/{id}`` answers to.
    """
    info = {
        "Description": "Data export request",
        "CorrelationId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"correlation:{op_id}")),
        "CommandId": op_id,
        "Subject": user_id,
        "Timestamp": iso(submitted),
        "RequestGuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"request:{op_id}")),
    }
    return json.dumps(info, indent=2).encode()


def validate_storage_location(
    location: str, request_info: bytes, *, ca_bundle: str, refuse_user_delegation_sas: bool
) -> None:
    """Run the seven checks through the SAS itself, the way the service does."""
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    if parts.scheme not in ("http", "https") or not parts.hostname or "sig" not in query:
        raise _storage_error("SharedAccessSignatureTokenInvalid", "The SAS token is invalid.")
    if "ss" in query:
        raise _storage_error(
            "StorageLocationNotServiceSAS", "The storage location must be a service SAS."
        )
    if "skoid" in query and refuse_user_delegation_sas:
        raise _storage_error("StorageLocationInvalid", "The storage location is invalid.")
    segments = [s for s in parts.path.split("/") if s]
    if _path_style(parts.hostname):
        segments = segments[1:]  # emulator URLs carry the account as the first segment
    if len(segments) != 1 or not _blob_host(parts.hostname):
        raise _storage_error(
            "StorageLocationNotAzureBlob",
            "The storage location must be an Azure Blob storage container.",
        )
    try:
        container = ContainerClient.from_container_url(
            location,
            connection_verify=ca_bundle,
            retry_total=0,
            connection_timeout=10,
            read_timeout=30,
            logger=storage_log,
        )
        with container:
            _refuse_listing(container)
            blob = container.get_blob_client(REQUEST_INFO)
            _create_request_info(blob, request_info)
            _refuse_reading(blob)
    except GraphError:
        raise
    except Exception as error:  # noqa: BLE001 - rule 7: anything else
        log.info("storage location invalid: %s", type(error).__name__)
        raise _storage_error("StorageLocationInvalid", "The storage location is invalid.") from None


def _refuse_listing(container: ContainerClient) -> None:
    try:
        next(iter(container.list_blobs(results_per_page=1)), None)
    except AzureError:
        return
    raise _storage_error(
        "StorageLocationShouldNotAllowListAccess",
        "The storage location should not allow list access.",
    )


def _create_request_info(blob: BlobClient, content: bytes) -> None:
    try:
        blob.create_append_blob(match_condition=MatchConditions.IfMissing)
    except (ResourceExistsError, ResourceModifiedError):
        raise _storage_error(
            "StorageLocationAlreadyUsed",
            "The storage location has already been used. "
            f"Delete '{REQUEST_INFO}' from the container and try again.",
        ) from None
    except HttpResponseError as error:
        if error.status_code == 403:
            raise _needs_write() from None
        raise
    try:
        blob.append_block(content)
    except HttpResponseError as error:
        if error.status_code == 403:
            raise _needs_write() from None
        raise


def _refuse_reading(blob: BlobClient) -> None:
    try:
        blob.download_blob().readall()
    except AzureError:
        return
    with contextlib.suppress(AzureError):
        blob.delete_blob()
    raise _storage_error(
        "StorageLocationShouldNotAllowReadAccess",
        "The storage location should not allow read access.",
    )


def _path_style(host: str) -> bool:
    return host == "localhost" or bool(re.fullmatch(r"[\d.]+|\[?[0-9a-fA-F:]+\]?", host))


def _blob_host(host: str) -> bool:
    return _path_style(host) or ".blob." in host


def _storage_error(code: str, message: str) -> GraphError:
    return GraphError(400, code, message)


def _needs_write() -> GraphError:
    return _storage_error(
        "StorageLocationNeedsWriteAddPermissions",
        "The storage location needs write and add permissions.",
    )
