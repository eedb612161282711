"""The simulator with ``export_layout``: an export written in the service's own layout
(``{assetGroupId}/{agentId}/...``, zips, large files), every listed file arriving with its
size, Graph's ``RequestInfo.json`` kept as the simulator wrote it."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from azure.storage.blob import ContainerClient

from devhost.graph import GraphSimulator
from devhost.graph.export_files import ExportLayout
from devhost.tls import TlsFiles
from tests.clock import ManualClock
from tests.devhost.test_graph_sim import (  # noqa: F401 - blob_service, container: fixtures
    ADELE,
    DAY,
    Graph,
    blob_service,
    blobs,
    container,
    make_token,
    op_id_of,
    policy_sas,
)

pytestmark = pytest.mark.azurite

LAYOUT = ExportLayout("service", 3 * 1024 * 1024, large_bytes=1024 * 1024, large_every=8)


def test_the_service_layout_is_written_as_listed(
    tls_files: TlsFiles,
    container: ContainerClient,  # noqa: F811 - the fixture imported above
) -> None:
    clock = ManualClock()
    with GraphSimulator(
        tls_files,
        clock=clock,
        export_duration=timedelta(days=3),
        tick_interval=None,
        export_layout=LAYOUT,
    ) as sim:
        graph = Graph(sim, tls_files.ca_bundle, make_token())
        op_id = op_id_of(graph.submit(ADELE, policy_sas(container)))
        expected = sim.expected_files(op_id)
        clock.advance(3 * DAY)
        assert graph.poll(op_id).json()["status"] == "complete"
    written = blobs(container)
    request_info = json.loads(container.download_blob("RequestInfo.json").readall())
    assert isinstance(request_info, dict)
    assert "records" not in request_info, "Graph's own receipt, not a generated file"
    written.pop("RequestInfo.json")
    assert written.keys() == expected.keys()
    # A zip's listed size is its content's (its own is known once made): JSON files match.
    assert {n: s for n, s in written.items() if n.endswith(".json")} == {
        n: s for n, s in expected.items() if n.endswith(".json")
    }
    assert all(re.fullmatch(r"[0-9a-f-]{36}/[0-9a-f-]{36}/.+", name) for name in written)
    assert any(name.endswith(".zip") for name in written)
    assert any(size == LAYOUT.large_bytes for size in written.values())
