"""``dsrctl verify``: a package built here per docs/delivery.md passes, and each way it can
differ from what was signed fails with exit 1 and a line naming the difference."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer

from dsrctl.commands import cli
from tests.receipts import (
    DEFAULT_FILES,
    BuiltPackage,
    LocalSigner,
    build_package,
    manifest_bytes,
    read_members,
    write_zip,
)


@pytest.fixture
def signer() -> LocalSigner:
    return LocalSigner()


@pytest.fixture
def jwks_file(tmp_path: Path, signer: LocalSigner) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(signer.jwks()))
    return path


@pytest.fixture
def package(tmp_path: Path, signer: LocalSigner) -> BuiltPackage:
    return build_package(tmp_path / "received", signer)


def dsrctl_verify(path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["verify", str(path), *args], catch_exceptions=False)


def rewrite(package: BuiltPackage, **changes: bytes | None) -> None:
    """Rewrite the package's ZIP with members changed (bytes) or removed (None)."""
    members = read_members(package.path)
    for name, data in changes.items():
        name = name.replace("__", "/").replace("_dot_", ".")
        if data is None:
            del members[name]
        else:
            members[name] = data
    write_zip(package.path, members)


def test_a_good_package_passes_offline_with_a_jwks_file(package, jwks_file, signer):
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: package.zip is the package https://dsr.example.com")
    assert f"{len(DEFAULT_FILES)} file(s)" in result.output
    assert signer.kid in result.output
    assert "RITM0012345" in result.output


def test_one_byte_changed_fails_naming_the_file(package, jwks_file):
    data = bytearray(DEFAULT_FILES["data/Exchange/mailbox.json"])
    data[3] ^= 0x01
    rewrite(package, data__Exchange__mailbox_dot_json=bytes(data))
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "data/Exchange/mailbox.json: its SHA-256 is" in result.output
    assert "the file was changed" in result.output


def test_a_file_removed_fails_naming_it(package, jwks_file):
    rewrite(package, data__RequestInfo_dot_json=None)
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "data/RequestInfo.json: listed in the manifest but missing" in result.output


def test_a_file_added_fails_naming_it(package, jwks_file):
    rewrite(package, data__extra_dot_json=b"{}")
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "data/extra.json: in the package but not in the manifest" in result.output


def test_a_manifest_edited_to_match_a_changed_file_fails_against_the_receipt(package, jwks_file):
    """The careful forger: change a file and update the manifest to match; the receipt
    signed the old manifest."""
    files = {**DEFAULT_FILES, "data/RequestInfo.json": b'{"requestId": "someone else"}\n'}
    rewrite(
        package,
        data__RequestInfo_dot_json=files["data/RequestInfo.json"],
        manifest_dot_json=manifest_bytes(files),
    )
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "manifest.json: its SHA-256 is" in result.output
    assert "the manifest was edited" in result.output
    assert "data/RequestInfo.json" not in result.output  # the file matches the new manifest


def test_a_receipt_signed_by_another_key_fails(tmp_path, jwks_file):
    other = build_package(tmp_path / "forged", LocalSigner())
    result = dsrctl_verify(other.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "receipt: kid:" in result.output
    assert "signed by another key" in result.output


def test_a_receipt_re_signed_by_another_key_under_the_published_kid_fails(
    tmp_path, jwks_file, signer
):
    other = build_package(tmp_path / "forged", LocalSigner(kid=signer.kid))
    result = dsrctl_verify(other.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "receipt: signature: does not verify" in result.output


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_an_unsigned_or_hmac_receipt_fails(package, jwks_file, signer, alg):
    header = _b64(json.dumps({"alg": alg, "kid": signer.kid, "typ": "dsr-receipt+jwt"}).encode())
    payload = package.token.split(".")[1]
    secret = json.dumps(signer.jwks()["keys"][0]).encode()
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    signature = "" if alg == "none" else _b64(mac)
    rewrite(package, receipt_dot_jws=f"{header}.{payload}.{signature}".encode())
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert f"receipt: alg: must be ES256, the receipt says '{alg}'" in result.output


def test_a_receipt_whose_counts_disagree_with_the_manifest_fails(tmp_path, jwks_file, signer):
    built = build_package(tmp_path / "p", signer, claims_edit={"file_count": 3})
    result = dsrctl_verify(built.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "lists 4 files, the receipt 3" in result.output


def test_a_member_twice_in_the_zip_fails(package, jwks_file):
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(package.path, "a") as archive,
    ):
        archive.writestr("data/RequestInfo.json", b"a second copy")
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "data/RequestInfo.json appears more than once" in result.output


def test_every_difference_is_listed_not_only_the_first(package, jwks_file):
    rewrite(package, data__RequestInfo_dot_json=None, data__extra_dot_json=b"{}")
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "missing from the package" in result.output
    assert "not in the manifest" in result.output


def test_the_keys_come_from_a_url(package, signer, httpserver: HTTPServer):
    httpserver.expect_request("/api/.well-known/jwks.json").respond_with_json(signer.jwks())
    url = httpserver.url_for("/api/.well-known/jwks.json")
    assert dsrctl_verify(package.path, "--jwks", url).exit_code == 0
    # Without --jwks, from the service --url names.
    result = CliRunner().invoke(
        cli, ["--url", httpserver.url_for("/"), "verify", str(package.path)]
    )
    assert result.exit_code == 0, result.output


def test_json_output_for_scripts(package, jwks_file):
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file), "--json")
    document = json.loads(result.output)
    assert document["ok"] is True
    assert document["problems"] == []
    assert document["receipt"]["requestId"] == "RITM0012345"


@pytest.mark.parametrize(
    ("jwks_text", "message"),
    [("not json", "is not JSON"), ('{"k": 1}', "is not a JWK Set")],
)
def test_keys_that_are_not_a_jwk_set_fail_with_a_message(package, tmp_path, jwks_text, message):
    path = tmp_path / "keys.json"
    path.write_text(jwks_text)
    result = dsrctl_verify(package.path, "--jwks", str(path))
    assert result.exit_code == 1
    assert message in result.output


def test_without_keys_it_says_how_to_give_them(package):
    result = dsrctl_verify(package.path)
    assert result.exit_code == 1
    assert "--jwks FILE" in result.output


def test_not_a_zip_is_named(tmp_path, jwks_file):
    path = tmp_path / "package.zip"
    path.write_bytes(b"not a zip")
    result = dsrctl_verify(path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "not a readable ZIP file" in result.output


def test_a_package_in_parts_is_checked_across_its_parts(tmp_path, signer, jwks_file):
    files = dict(DEFAULT_FILES)
    manifest = json.loads(manifest_bytes(files))
    manifest["parts"] = ["package.part-001.zip", "package.part-002.zip"]
    raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    from tests.receipts import claims_for

    token = signer.sign_receipt(claims_for(raw, files, signer.issuer))
    first, second = tmp_path / "package.part-001.zip", tmp_path / "package.part-002.zip"
    names = sorted(files)
    write_zip(
        first,
        {n: files[n] for n in names[:2]} | {"manifest.json": raw, "receipt.jws": token.encode()},
    )
    write_zip(second, {n: files[n] for n in names[2:]})
    result = dsrctl_verify(first, "--jwks", str(jwks_file))
    assert result.exit_code == 0, result.output
    second.unlink()
    result = dsrctl_verify(first, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "package.part-002.zip: a part the manifest names is missing" in result.output


def test_a_corrupted_member_is_named_as_unreadable(package, jwks_file):
    """A member whose compressed bytes were damaged fails its CRC: named, not a crash."""
    raw = bytearray(package.path.read_bytes())
    with zipfile.ZipFile(package.path) as archive:
        info = archive.getinfo("data/Exchange/mailbox.json")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 2] ^= 0xFF
    package.path.write_bytes(bytes(raw))
    result = dsrctl_verify(package.path, "--jwks", str(jwks_file))
    assert result.exit_code == 1
    assert "data/Exchange/mailbox.json: cannot be read" in result.output


def test_a_renamed_package_still_verifies(package, jwks_file):
    """A browser saves a second download as ``package (1).zip``: the bytes are what count."""
    renamed = package.path.with_name("package (1).zip")
    package.path.rename(renamed)
    result = dsrctl_verify(renamed, "--jwks", str(jwks_file))
    assert result.exit_code == 0, result.output
