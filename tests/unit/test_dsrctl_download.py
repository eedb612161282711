"""``dsrctl download``: every blob into the folder, each checked against manifest.json, the link
never shown; against a fake container, and once against Azurite with a real read+list SAS."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from dsrctl import download, output
from dsrctl.commands import cli
from dsrctl.download import BlobCheck, RemoteBlob

SECRET_URL = "https://acct.blob.core.windows.net/dsr-ritm1?sv=2024&sp=rl&sig=TOPSECRETsig%3D"


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def manifest(blobs: dict[str, bytes], *, md5s: bool = True, **override) -> bytes:
    entries = [
        {"name": name, "size": len(data), "md5": md5(data) if md5s else None}
        for name, data in blobs.items()
    ]
    return json.dumps({"requestId": "RITM1", "blobs": entries, **override}).encode()


class FakeContainer:
    """A container listing and its blobs, served in small chunks."""

    def __init__(self, blobs: dict[str, bytes], *, listed_md5: bool = True) -> None:
        self.blobs = blobs
        self.listed_md5 = listed_md5
        self.downloads: list[str] = []

    def list(self) -> list[RemoteBlob]:
        return [
            RemoteBlob(name, len(data), md5(data) if self.listed_md5 else None)
            for name, data in self.blobs.items()
        ]

    def chunks(self, name: str) -> Iterator[bytes]:
        self.downloads.append(name)
        data = self.blobs[name]
        for start in range(0, len(data), 7):
            yield data[start : start + 7]


EXPORT = {
    "Exchange/mail-1.json": b'{"subject": "hello"}' * 20,
    "OneDrive/files/report.docx": b"\x00\x01binary" * 50,
    "RequestInfo.json": b'{"requestId": "op-1"}',
}


def full_container(**changes: bytes) -> FakeContainer:
    blobs = {**EXPORT, "manifest.json": manifest(EXPORT), "audit.json": b"{}"}
    blobs.update(changes)
    return FakeContainer(blobs)


# -- the verification ---------------------------------------------------------------------------
def test_every_blob_is_downloaded_and_verified(tmp_path: Path):
    source = full_container()
    seen_bytes: list[int] = []
    report = download.download_all(source, tmp_path / "out", on_bytes=seen_bytes.append)
    assert report.ok, report.checks
    assert (tmp_path / "out/OneDrive/files/report.docx").read_bytes() == EXPORT[
        "OneDrive/files/report.docx"
    ]
    assert source.downloads[0] == "manifest.json"
    assert sorted(c.name for c in report.checks) == sorted(source.blobs)
    assert sum(seen_bytes) == sum(len(data) for data in source.blobs.values())
    assert not list((tmp_path / "out").rglob("*.part"))
    assert report.summary().startswith("verified against manifest.json: 5 files")


def test_running_it_again_keeps_what_is_already_there(tmp_path: Path):
    download.download_all(full_container(), tmp_path)
    again = full_container()
    report = download.download_all(again, tmp_path)
    assert report.ok
    assert again.downloads == []
    assert all(check.kept for check in report.checks)


def test_a_blob_that_differs_from_the_manifest_fails(tmp_path: Path):
    source = full_container(**{"Exchange/mail-1.json": b'{"subject": "HELLO"}' * 20})
    report = download.download_all(source, tmp_path)
    assert not report.ok
    bad = [check for check in report.checks if not check.ok]
    assert [check.name for check in bad] == ["Exchange/mail-1.json"]
    assert str(bad[0].problem).startswith("MD5 ")
    assert "NOT VERIFIED: 1 of 5 file(s) do not match manifest.json" in report.summary()


def test_without_md5_the_size_is_checked(tmp_path: Path):
    blobs = {**EXPORT, "manifest.json": manifest(EXPORT, md5s=False)}
    blobs["RequestInfo.json"] = b'{"requestId": "op-1"} plus'
    source = FakeContainer(blobs, listed_md5=False)
    report = download.download_all(source, tmp_path)
    sizes = len(blobs["RequestInfo.json"]), len(EXPORT["RequestInfo.json"])
    assert [c.problem for c in report.checks if not c.ok] == [
        f"size {sizes[0]}, the manifest says {sizes[1]}"
    ]


def test_missing_and_unlisted_blobs_fail(tmp_path: Path):
    source = full_container(**{"Teams/chat.json": b"{}"})
    del source.blobs["RequestInfo.json"]
    report = download.download_all(source, tmp_path)
    problems = {check.name: check.problem for check in report.checks if not check.ok}
    assert problems == {
        "Teams/chat.json": "not listed in manifest.json (unverified)",
        "RequestInfo.json": "in the manifest but not in the container",
    }


def test_no_manifest_means_not_verified(tmp_path: Path):
    source = FakeContainer(dict(EXPORT))
    report = download.download_all(source, tmp_path)
    assert not report.ok
    assert "no manifest.json" in report.summary()
    assert (tmp_path / "RequestInfo.json").exists()


def test_a_manifest_that_is_not_one(tmp_path: Path):
    report = download.download_all(full_container(**{"manifest.json": b"[1, 2]"}), tmp_path)
    assert not report.ok
    assert report.manifest_problem == "manifest.json has no list of blobs"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../escape.json", "a '..' part would leave the folder"),
        ("/abs.json", "an absolute name"),
        ("a/../../b", "a '..' part would leave the folder"),
        ("a\\b", "a backslash"),
        ("", "an empty name"),
        ("a\x00b", "a NUL character"),
    ],
)
def test_a_blob_name_that_would_leave_the_folder_is_not_written(
    tmp_path: Path, name: str, why: str
):
    blobs = {name: b"evil"}
    source = FakeContainer({**blobs, "manifest.json": manifest(blobs)})
    report = download.download_all(source, tmp_path / "out")
    assert not report.ok
    [problem] = [c.problem for c in report.checks if not c.ok]
    assert str(problem).startswith(f"not written: {why}")
    assert not (tmp_path / "escape.json").exists()
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["manifest.json"]
    assert name not in source.downloads


# -- names that collide or cannot be written: refused one by one (F-9) -------------------------
def _ok_files_are_what_was_downloaded(report: download.Report, source: FakeContainer) -> None:
    """Every blob reported ok (or kept) has its own bytes in its file at the end: nothing was
    overwritten after its ``ok`` was printed."""
    for check in report.checks:
        if check.ok:
            path = report.folder.joinpath(*check.name.split("/"))
            assert path.read_bytes() == source.blobs[check.name], check.name


@pytest.mark.parametrize(
    ("unlisted", "why"),
    [
        ("Exchange//mail-1.json", "an empty part"),  # was Exchange/mail-1.json's file
        ("RequestInfo.json/", "an empty part"),  # was RequestInfo.json's file
        ("./RequestInfo.json", "a '.' part"),  # storage has no such blob: "erased?" and abort
        ("Exchange/./mail-1.json", "a '.' part"),
    ],
)
def test_a_name_that_would_be_another_blobs_file_is_refused_and_the_rest_downloads(
    tmp_path: Path, unlisted: str, why: str
):
    # F-9: "a//b" and "a/b" (and "x/" and "x") were one local file: the unlisted blob
    # overwrote a listed one already printed "ok".
    source = full_container(**{unlisted: b"forged"})
    seen: list[BlobCheck] = []
    report = download.download_all(source, tmp_path / "out", on_blob=seen.append)
    assert not report.ok
    problems = {check.name: check.problem for check in report.checks if not check.ok}
    assert list(problems) == [unlisted]
    assert str(problems[unlisted]).startswith(f"not written: {why}")
    assert unlisted not in source.downloads
    assert sum(1 for check in report.checks if check.ok) == 5, "the rest still downloads"
    _ok_files_are_what_was_downloaded(report, source)
    assert [check.name for check in seen] == [check.name for check in report.checks]


def test_a_blob_beside_a_folder_of_the_same_name_is_refused_not_a_traceback(tmp_path: Path):
    # F-9: "a" beside "a/b" raised NotADirectoryError out of the download (and, the other way
    # round, IsADirectoryError).
    blobs = {"Teams": b"a file", "Teams/chat.json": b"{}", "Exchange/mail-1.json": b"mail"}
    source = FakeContainer({**blobs, "manifest.json": manifest(blobs)})
    report = download.download_all(source, tmp_path / "out")
    problems = {check.name: check.problem for check in report.checks if not check.ok}
    assert problems == {"Teams/chat.json": "not written: its folder Teams is another blob's file"}
    _ok_files_are_what_was_downloaded(report, source)
    folders = {"OneDrive": b"x", "OneDrive/a.txt": b"a"}  # the folder first, then the file
    source = FakeContainer({**folders, "manifest.json": manifest({"OneDrive/a.txt": b"a"})})
    report = download.download_all(source, tmp_path / "two")
    problems = {check.name: check.problem for check in report.checks if not check.ok}
    assert problems == {"OneDrive": "not written: a folder of that name holds other blobs"}
    _ok_files_are_what_was_downloaded(report, source)


def test_a_name_too_long_for_the_file_system_is_refused_and_the_rest_downloads(tmp_path: Path):
    # F-9: a 300-character name raised "File name too long" out of the download.
    long_name = "Exchange/" + "m" * 300 + ".json"
    source = full_container(**{long_name: b"long"})
    progress: list[int] = []
    report = download.download_all(source, tmp_path / "out", on_bytes=progress.append)
    problems = {check.name: check.problem for check in report.checks if not check.ok}
    assert list(problems) == [long_name]
    assert str(problems[long_name]).startswith("not written: ")
    assert "too long" in str(problems[long_name]).lower()
    assert sum(1 for check in report.checks if check.ok) == 5
    assert sum(progress) == sum(len(data) for data in source.blobs.values())
    assert not [path for path in (tmp_path / "out").rglob("*") if path.name.endswith(".part")]


def test_a_listed_blob_is_never_displaced_by_an_unlisted_one(tmp_path: Path):
    # Unlisted blobs come after every listed one: "Exchange" (unlisted, sorted first) does not
    # take the folder the listed Exchange/mail-1.json needs.
    source = full_container(Exchange=b"squatter")
    report = download.download_all(source, tmp_path / "out")
    problems = {check.name: check.problem for check in report.checks if not check.ok}
    assert problems == {"Exchange": "not written: a folder of that name holds other blobs"}
    _ok_files_are_what_was_downloaded(report, source)


def test_a_file_reached_twice_through_the_file_system_is_not_overwritten(tmp_path: Path):
    """Two names, one file (here through a link in the folder; on macOS or Windows by case or
    Unicode normalisation): the second is refused, the first keeps what it was checked with."""
    folder = tmp_path / "out"
    (folder / "real").mkdir(parents=True)
    (folder / "alias").symlink_to(folder / "real", target_is_directory=True)
    blobs = {"alias/x.json": b"second", "real/x.json": b"first"}
    source = FakeContainer({**blobs, "manifest.json": manifest({"real/x.json": b"first"})})
    report = download.download_all(source, folder)
    problems = {check.name: check.problem for check in report.checks if not check.ok}
    assert problems == {"alias/x.json": "not written: its file is already real/x.json's"}
    assert (folder / "real/x.json").read_bytes() == b"first"


def test_a_blob_deleted_after_the_listing_is_named_and_the_rest_downloads(tmp_path: Path):
    class Vanishing(FakeContainer):
        def chunks(self, name: str) -> Iterator[bytes]:
            if name == "RequestInfo.json":
                raise download.BlobGone(name)
            yield from super().chunks(name)

    source = Vanishing(full_container().blobs)
    report = download.download_all(source, tmp_path)
    problems = {check.name: check.problem for check in report.checks if not check.ok}
    assert problems == {"RequestInfo.json": "no longer in storage (deleted after the listing)"}
    assert sum(1 for check in report.checks if check.ok) == 4


def test_a_folder_that_cannot_be_made_is_one_error(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(download.DownloadFailed, match="cannot create the folder"):
        download.download_all(full_container(), tmp_path / "file" / "out")


# -- the command ------------------------------------------------------------------------------
GRANT = {
    "url": SECRET_URL,
    "expiresAt": "2026-12-01T11:00:00+00:00",
    "container": "dsr-ritm1-0123",
}


@pytest.fixture
def granted(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/api/exports/RITM1/download", method="POST").respond_with_json(
        GRANT, status=201
    )
    return httpserver


def dsrctl(server: HTTPServer, *args: str):
    base = ["--url", server.url_for("/"), "--function-key", "k"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def no_secret_anywhere(text: str, folder: Path) -> None:
    assert "TOPSECRET" not in text
    assert "sig=" not in text
    for path in folder.rglob("*"):
        if path.is_file():
            assert b"TOPSECRET" not in path.read_bytes()


def test_download_command_plain_lines_and_summary(
    granted: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    opened: list[str] = []

    def fake_open(url: str, *, verify: bool | str = True) -> FakeContainer:
        opened.append(url)
        return full_container()

    monkeypatch.setattr(download, "open_container", fake_open)
    folder = tmp_path / "RITM1"
    result = dsrctl(granted, "download", "RITM1", "--to", str(folder))
    assert result.exit_code == 0, result.output
    assert opened == [SECRET_URL]
    assert "container dsr-ritm1-0123, link valid until 2026-12-01 11:00 UTC" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ok", "manifest.json", str(len(manifest(EXPORT))), "B"]
    assert lines[-1].startswith("verified against manifest.json: 5 files")
    no_secret_anywhere(result.output, folder)
    as_json = dsrctl(granted, "--json", "download", "RITM1", "--to", str(folder))
    report = json.loads(as_json.stdout)
    assert report["ok"] is True
    assert report["container"] == "dsr-ritm1-0123"
    assert "url" not in report
    assert all(entry["kept"] for entry in report["files"])
    no_secret_anywhere(as_json.output, folder)


def test_download_command_fails_on_a_mismatch(
    granted: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(
        download,
        "open_container",
        lambda url, verify=True: full_container(**{"RequestInfo.json": b"changed"}),
    )
    result = dsrctl(granted, "download", "RITM1", "--to", str(tmp_path))
    assert result.exit_code == 1
    assert "FAILED RequestInfo.json: size 7, the manifest says" in result.stdout
    assert "NOT VERIFIED" in result.stdout


def test_download_on_a_terminal_shows_a_byte_progress_bar(
    granted: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(output, "is_interactive", lambda stream=None: True)
    monkeypatch.setattr(download, "open_container", lambda url, verify=True: full_container())
    result = dsrctl(granted, "download", "RITM1", "--to", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "downloading" in result.stdout
    assert "5/5 files" in result.stdout
    no_secret_anywhere(result.output, tmp_path)


def test_a_storage_error_is_scrubbed(granted: HTTPServer, tmp_path: Path, monkeypatch):
    from azure.core.exceptions import ServiceRequestError

    class Failing(FakeContainer):
        def list(self) -> list[RemoteBlob]:
            with download._StorageErrors(SECRET_URL):
                raise ServiceRequestError(f"Max retries exceeded with url: {SECRET_URL}")

    monkeypatch.setattr(download, "open_container", lambda url, verify=True: Failing({}))
    result = dsrctl(granted, "download", "RITM1", "--to", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "error: cannot reach the export storage"
    no_secret_anywhere(result.output, tmp_path)


def test_download_refuses_names_one_by_one_escaped_and_exits_non_zero(
    granted: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # F-9 and F-10: refused names are named, escaped (a name is another party's text), the
    # rest is downloaded and printed ok, and the exit status says something was refused.
    hostile = "Teams/\x1b]0;x\x07\rok    forged.json\u202e.json"
    source = full_container(
        **{"Exchange//mail-1.json": b"forged", "a" * 300: b"long", hostile: b"{}"}
    )
    monkeypatch.setattr(download, "open_container", lambda url, verify=True: source)
    result = dsrctl(granted, "download", "RITM1", "--to", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("ok ")] == [
        "manifest.json",
        "Exchange/mail-1.json",
        "OneDrive/files/report.docx",
        "RequestInfo.json",
        "audit.json",
    ]
    assert "FAILED Exchange//mail-1.json: not written: an empty part" in result.stdout
    assert f"FAILED {'a' * 300}: not written: " in result.stdout
    assert (
        "FAILED Teams/\\x1b]0;x\\x07\\rok    forged.json\\u202e.json: not listed in manifest.json"
        in result.stdout
    )
    assert [c for c in result.output if not c.isprintable() and c != "\n"] == []
    assert lines[-1].startswith("NOT VERIFIED: 3 of 8 file(s) do not match manifest.json")
    as_json = dsrctl(granted, "--json", "download", "RITM1", "--to", str(tmp_path / "out"))
    assert as_json.exit_code == 1
    assert [c for c in as_json.stdout if not c.isprintable() and c != "\n"] == []
    files = {entry["name"]: entry for entry in json.loads(as_json.stdout)["files"]}
    assert files[hostile]["ok"] is False


def test_download_refused_by_the_api(httpserver: HTTPServer, tmp_path: Path):
    httpserver.expect_request("/api/exports/RITM1/download", method="POST").respond_with_json(
        {"title": "Export not available", "status": 409, "detail": "the DSR is exporting"},
        status=409,
        content_type="application/problem+json",
    )
    result = dsrctl(httpserver, "download", "RITM1", "--to", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: 409 Export not available: the DSR is exporting"
    assert not (tmp_path / "x").exists()


def test_a_check_reads_as_json():
    assert BlobCheck("a", 3, "bad").to_dict() == {
        "name": "a",
        "size": 3,
        "ok": False,
        "problem": "bad",
    }
