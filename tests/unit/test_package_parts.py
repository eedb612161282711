"""The package's pure parts: member names, the manifest's one byte form, zip listings within
limits, the organisation profile, the catalog, and rendering that keeps hostile input inert, in
English and German."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract
from babel.messages.pofile import read_po

from dsr_export.domain import archive
from dsr_export.domain.export_catalog import catalog, explain_product, explain_request_info_field
from dsr_export.domain.organisation import OrganisationProfile, ProfileInvalid
from dsr_export.domain.package_manifest import (
    PackageFile,
    PackageManifest,
    data_member,
    delivery_container,
    file_page,
    manifest_of,
    part_names,
    product_of,
)
from dsr_export.rendering import render
from dsr_export.rendering.render import Facts, FileEntry, Renderer, product_entry
from dsr_export.rendering.views import view_of
from dsr_export.settings import PackageSettings, SettingsError
from tests.package_fixtures import PROFILE, nested_zip

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
TEMPLATES = Path(render.__file__).parent / "templates"


# -- names and the manifest ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("blob", "member"),
    [
        ("Exchange/Mailbox.json", "data/Exchange/Mailbox.json"),
        ("../../etc/passwd", "data/%2E%2E/%2E%2E/etc/passwd"),
        ("a\\b:c.json", "data/a%5Cb%3Ac.json"),
        ("x/\u202egnp.exe", "data/x/%E2%80%AEgnp.exe"),
        ("/abs//x", "data/%/abs/%/x"),
        ("100%.json", "data/100%25.json"),
    ],
)
def test_a_blob_name_becomes_a_member_that_stays_in_data(blob: str, member: str):
    assert data_member(blob) == member
    assert ".." not in member.split("/")


def test_pages_and_containers_are_named_safely():
    assert re.fullmatch(r"pages/file-[0-9a-f]{16}\.html", file_page("<script>.json"))
    assert delivery_container("RITM0012345").endswith("-pkg")
    assert len(delivery_container("X" * 100)) <= 63
    assert product_of("RequestInfo.json") == "RequestInfo"
    assert product_of("8f2c/agent/x.zip") == "8f2c"
    assert product_of("loose.json") == "(root)"
    assert part_names(1) == ["package.zip"]
    assert part_names(3)[-1] == "package.part-003.zip"


def test_the_manifest_has_one_byte_form_and_reads_back():
    files = [
        PackageFile("index.html", 3, "b" * 64, "text/html", None, "index"),
        PackageFile(
            "data/RequestInfo.json", 2, "a" * 64, "application/json", "RequestInfo", "data"
        ),
    ]
    manifest = manifest_of("RITM1", 1, NOW, files, ["package.zip"])
    content = manifest.to_bytes()
    assert content.endswith(b"}\n")
    document = json.loads(content)
    assert list(document) == sorted(document)
    assert [item["path"] for item in document["files"]] == ["data/RequestInfo.json", "index.html"]
    assert document["packagedAt"] == "2026-12-07T18:00:00Z"
    assert PackageManifest.from_bytes(content).to_bytes() == content
    assert manifest.total_bytes == 5


# -- zip listings -------------------------------------------------------------------------------
def test_a_zip_is_listed_with_every_hostile_member_flagged_and_nothing_extracted(tmp_path):
    listing = archive.inspect_zip(io.BytesIO(nested_zip()))
    flags = {member.name: member.flag for member in listing.members}
    assert flags["../../escape.txt"] == archive.UNSAFE_NAME
    assert flags["secret.bin"] == archive.ENCRYPTED
    assert flags["bomb.txt"] == archive.RATIO
    assert flags["events.json"] is None
    nested = next(member for member in listing.members if member.name == "nested.zip")
    assert nested.nested is not None
    assert [m.name for m in nested.nested.members] == ["inner.json"]
    assert list(tmp_path.iterdir()) == []


def test_limits_on_depth_members_and_not_a_zip():
    limits = archive.ArchiveLimits(max_depth=1, max_members=2)
    listing = archive.inspect_zip(io.BytesIO(nested_zip()), limits)
    assert listing.truncated
    assert listing.problem == archive.TOO_MANY
    assert len(listing.members) == 2
    deep = archive.inspect_zip(io.BytesIO(nested_zip()), archive.ArchiveLimits(max_depth=1))
    assert next(m for m in deep.members if m.name == "nested.zip").flag == archive.TOO_DEEP
    assert archive.inspect_zip(io.BytesIO(b"not a zip")).problem == archive.NOT_A_ZIP


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "C:\\x", "a/../../b", "..", "a\\..\\b", "x\u202e", ""]
)
def test_unsafe_member_names(name: str):
    assert archive.unsafe_name(name)


def test_a_plain_name_is_safe():
    assert not archive.unsafe_name("Teams/chat.json")


def test_a_declared_total_over_the_limit_is_not_opened():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("a.zip", b"x" * 100)
    listing = archive.inspect_zip(buffer, archive.ArchiveLimits(max_total_bytes=10))
    assert listing.members[0].flag == archive.TOO_LARGE


# -- the organisation's profile -----------------------------------------------------------------
def test_a_profile_missing_a_field_is_refused_naming_it():
    broken = json.loads(json.dumps(PROFILE))
    del broken["processing"]["complaint"]
    with pytest.raises(ProfileInvalid, match=r"processing\.complaint: is required"):
        OrganisationProfile.parse(broken)
    with pytest.raises(SettingsError, match=r"ORGANISATION_PROFILE.*processing\.complaint"):
        PackageSettings.from_env({"ORGANISATION_PROFILE": json.dumps(broken)})


def test_the_sample_profile_in_the_docs_is_valid():
    chosen = PackageSettings.from_env({"ORGANISATION_PROFILE": "docs/organisation.sample.json"})
    assert chosen.organisation is not None
    assert chosen.organisation.text("processing.purposes", "de").startswith("Bereitstellung")


def test_package_settings_name_what_is_wrong():
    with pytest.raises(SettingsError, match="PACKAGE_LANGUAGE"):
        PackageSettings.from_env({"PACKAGE_LANGUAGE": "fr"})
    with pytest.raises(SettingsError, match="PACKAGE_PART_MAX_BYTES"):
        PackageSettings.from_env({"PACKAGE_PART_MAX_BYTES": "10"})
    assert PackageSettings.from_env({}).organisation is None


# -- the catalog --------------------------------------------------------------------------------
def test_every_catalog_entry_has_a_source_and_both_languages():
    document = catalog()
    entries = [*document["products"].values(), *document["requestInfoFields"].values()]
    for entry in [*entries, document["unknown"]]:
        assert entry["source"]
        assert set(entry["summary"]) >= {"en", "de"}
    assert document["reference"]["url"].startswith("https://learn.microsoft.com/")


def test_an_unknown_folder_gets_the_generic_explanation():
    assert explain_product("Exchange", "en").known
    unknown = explain_product("8f2c1a8e-0000-4000-8000-000000000001", "de")
    assert not unknown.known
    assert "Agent" in unknown.text
    assert explain_request_info_field("CommandId", "en") is not None
    assert explain_request_info_field("Nope", "en") is None


# -- rendering ----------------------------------------------------------------------------------
def _renderer(language: str = "en") -> Renderer:
    return Renderer(
        language, OrganisationProfile.parse(PROFILE), Facts("RITM1", NOW, completed_at=NOW)
    )


def test_hostile_names_and_values_render_inert():
    name = "Exchange/<script>alert(1)</script>\u202egnp.json"
    entry = FileEntry(
        name, data_member(name), 10, "a" * 64, "application/json", "Exchange", file_page(name)
    )
    content = json.dumps(
        [{"href": "javascript:alert(1)", "who": "\u202eevil", "<b>": "<img src=x>"}]
    )
    page = _renderer().file_page(entry, view_of("application/json", content.encode())).decode()
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;script&gt;" in page
    assert "\u202e" not in page
    assert "[U+202E]" in page
    assert 'href="javascript:' not in page
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert all(not href.startswith(("http:", "https:", "javascript:")) for href in hrefs), hrefs


def test_pages_load_nothing_from_the_network():
    product = product_entry("Exchange", "en")
    index = _renderer().index([product], ["package.zip"]).decode()
    assert "Content-Security-Policy" in index
    assert "default-src 'none'" in index
    assert not re.search(r"<(script|link|img|iframe)\b", index)
    assert not re.search(r'src="https?:', index)


def test_german_pages_use_german_words_and_formats():
    renderer = _renderer("de")
    product = product_entry("Exchange", "de")
    index = renderer.index([product], ["package.zip"]).decode()
    assert "Ihre personenbezogenen Daten" in index
    assert renderer.size(1_500_000) == "1,5 MB"
    assert renderer.when(NOW).startswith("07.12.2026")
    assert _renderer("en").size(1_500_000) == "1.5 MB"


def test_every_message_of_the_templates_has_a_german_translation():
    wanted: set[str] = set()
    for template in TEMPLATES.iterdir():
        with template.open("rb") as handle:
            for _, message, _, _ in extract(
                "jinja2.ext.babel_extract", handle, options={"extensions": "jinja2.ext.i18n"}
            ):
                wanted.add(message if isinstance(message, str) else message[0])
    source = Path(render.__file__).read_text(encoding="utf-8")
    wanted |= set(re.findall(r'^\s+"[a-zA-Z-]+": \(?\s*"([^"]+)"', source, re.MULTILINE))
    wanted |= set(re.findall(r'_gettext\("([^"]+)"\)', source))
    with (Path(render.__file__).parent / "messages/de.po").open("rb") as handle:
        # A plural message is there when each of its forms is.
        german = {
            (m.id[0] if isinstance(m.id, tuple) else m.id): all(m.string)
            if isinstance(m.string, tuple)
            else bool(m.string)
            for m in read_po(handle)
            if m.id
        }
    missing = sorted(m for m in wanted if not german.get(m))
    assert not missing, missing


def test_json_csv_text_and_unreadable_files_each_get_their_view():
    assert view_of("application/json", b'{"a": [1, 2]}').mode == "json"
    assert view_of("application/json", b"{broken").problem == "invalid-json"
    csv_view = view_of("text/csv", b"a,b\n1,2\n")
    assert csv_view.header == ["a", "b"]
    assert csv_view.rows == [["1", "2"]]
    assert view_of("text/plain", b"hello").text == "hello"
    assert view_of("application/json", b"\xff\xfe\x00").problem == "unreadable"
    assert view_of("application/octet-stream", bytes(range(256))).mode == "none"
    assert view_of("application/json", None).problem == "too-large"


def test_request_info_fields_are_explained_on_its_page():
    entry = FileEntry(
        "RequestInfo.json",
        "data/RequestInfo.json",
        10,
        "a" * 64,
        "application/json",
        "RequestInfo",
        file_page("RequestInfo.json"),
    )
    page = _renderer("de").file_page(entry, view_of("application/json", b'{"CommandId": "x"}'))
    text = page.decode()
    assert "Was die Felder bedeuten" in text
    assert "Vorgangs-ID" in text
