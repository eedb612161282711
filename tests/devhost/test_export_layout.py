"""The simulator's service layout (``ExportLayout("service", ...)``): ``{assetGroupId}/
{agentId}/...`` folders, some files zipped with a zip inside, some large, about the size asked,
the same every time; JSON files are valid JSON of exactly their listed size. The default layout
is unchanged (Microsoft's product folders)."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest

from devhost.graph.export_files import ExportLayout, content_of, files_of, manifest

GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
LAYOUT = ExportLayout("service", 12 * 1024 * 1024, large_bytes=3 * 1024 * 1024, large_every=10)


def test_the_default_layout_is_the_product_folders():
    assert files_of(3, "user") == manifest(3, "user")


def test_the_service_layout_has_agent_folders_zips_large_files_and_the_size_asked():
    files = files_of(3, "user", LAYOUT)
    assert files == files_of(3, "user", LAYOUT), "the same every time"
    assert all(re.fullmatch(rf"{GUID}/{GUID}/\w+/\d{{6}}\.(json|zip)", f.path) for f in files)
    assert len({f.path.split("/")[0] for f in files}) > 1, "several asset groups"
    assert any(f.path.endswith(".zip") for f in files)
    assert sum(1 for f in files if f.size == LAYOUT.large_bytes) >= 2
    assert sum(f.size for f in files) == pytest.approx(LAYOUT.total_bytes, rel=0.01)


def test_each_json_file_is_valid_json_of_its_size_and_each_zip_holds_a_zip():
    for item in files_of(3, "user", LAYOUT):
        data = content_of(3, "user", item)
        if item.path.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                assert "nested.zip" in archive.namelist()
                with zipfile.ZipFile(io.BytesIO(archive.read("nested.zip"))) as inner:
                    json.loads(inner.read("inner.json"))
                for name in archive.namelist():
                    if name.endswith(".json"):
                        json.loads(archive.read(name))
        else:
            assert len(data) == item.size
            json.loads(data)


def test_a_layout_that_cannot_be_written_is_refused():
    with pytest.raises(ValueError, match="neither"):
        ExportLayout("flat")
    with pytest.raises(ValueError, match="total_bytes"):
        ExportLayout("service")
