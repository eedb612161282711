"""The key ring follows Azure's key model and survives a restart of the host."""

from __future__ import annotations

import hmac
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from devhost._state import StateFileError
from devhost.keys import KEYS_FILE, KeyMatch, KeyRing, KeyRingError, key_ring


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing(
        master_key="the-master",
        host_keys={"default": "host-default", "servicenow": "host-servicenow"},
        function_keys={
            "submit_dsr": {"default": "submit-default"},
            "get_dsr": {"default": "get-default", "poller": "get-poller"},
        },
    )


@pytest.mark.parametrize(
    ("level", "function", "key", "expected"),
    [
        # function level: any host key, a key of this function, the master key
        ("function", "get_dsr", "host-default", True),
        ("function", "get_dsr", "host-servicenow", True),
        ("function", "get_dsr", "get-default", True),
        ("function", "get_dsr", "get-poller", True),
        ("function", "get_dsr", "the-master", True),
        ("function", "get_dsr", "submit-default", False),  # another function's key
        ("function", "submit_dsr", "get-poller", False),
        ("function", "get_dsr", "wrong", False),
        ("function", "get_dsr", "", False),
        ("function", "get_dsr", None, False),
        ("function", "unknown_fn", "host-default", True),
        ("FUNCTION", "GET_DSR", "get-default", True),  # as the host: case does not matter
        # admin level: the master key only
        ("admin", "get_dsr", "the-master", True),
        ("admin", "get_dsr", "host-default", False),
        ("admin", "get_dsr", "get-default", False),
        # levels this host does not model (system keys belong to extensions): master only
        ("system", "get_dsr", "host-default", False),
        ("system", "get_dsr", "the-master", True),
        # anonymous: anything, nothing included
        ("anonymous", "get_dsr", None, True),
        ("anonymous", "get_dsr", "wrong", True),
    ],
)
def test_authorizes_follows_azures_key_model(
    ring: KeyRing, level: str, function: str, key: str | None, expected: bool
) -> None:
    assert ring.authorizes(level, function, key) is expected


def test_match_names_the_key_and_its_kind(ring: KeyRing) -> None:
    assert ring.match("the-master") == KeyMatch("_master", "master")
    assert ring.match("the-master").level == "admin"  # type: ignore[union-attr]
    assert ring.match("host-servicenow", "get_dsr") == KeyMatch("servicenow", "host")
    assert ring.match("get-poller", "get_dsr") == KeyMatch("poller", "function", "get_dsr")
    assert ring.match("get-poller", "get_dsr").level == "function"  # type: ignore[union-attr]
    assert ring.match("get-poller") is None  # no function (the admin API): no function key
    assert ring.match("get-poller", "submit_dsr") is None


def test_every_key_is_compared_whichever_matches(
    ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Constant time: hmac.compare_digest for each candidate, even after a match."""
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr("devhost.keys.hmac.compare_digest", counting)
    for key in ("the-master", "host-default", "get-poller", "wrong"):
        calls.clear()
        ring.match(key, "get_dsr")
        assert len(calls) == 1 + 2 + 2  # master, two host keys, get_dsr's two keys


def test_generate_uses_the_given_default_host_key_and_random_others() -> None:
    one, two = KeyRing.generate(default_host_key="devkey"), KeyRing.generate()
    assert one.default_host_key == "devkey"
    assert one.host_keys() == {"default": "devkey"}
    assert len({one.master_key, two.master_key, two.default_host_key, "devkey"}) == 4
    assert len(two.master_key) >= 43  # 256 random bits
    assert one.path is None
    one.save()  # in memory: nothing to write, no error


def test_functions_get_a_default_key_once(ring: KeyRing) -> None:
    ring.ensure_functions(["cancel_dsr", "get_dsr"])
    assert set(ring.function_keys("cancel_dsr")) == {"default"}
    first = ring.function_keys("cancel_dsr")["default"]
    ring.ensure_functions(["cancel_dsr"])
    assert ring.function_keys("CANCEL_DSR") == {"default": first}
    assert ring.function_keys("get_dsr") == {"default": "get-default", "poller": "get-poller"}
    assert set(ring.function_keys("list_dsrs")) == {"default"}  # created on first read
    assert "list_dsrs" in ring.functions()


def test_keys_are_created_and_replaced(ring: KeyRing) -> None:
    value, created = ring.set_host_key("jira")
    assert created
    assert ring.authorizes("function", "submit_dsr", value)
    again, created = ring.set_host_key("jira", "jira-chosen")
    assert (again, created) == ("jira-chosen", False)
    assert not ring.authorizes("function", "submit_dsr", value)
    value, created = ring.set_function_key("submit_dsr", "intake")
    assert created
    assert ring.authorizes("function", "submit_dsr", value)
    assert not ring.authorizes("function", "get_dsr", value)
    master = ring.set_master_key()
    assert master != "the-master"
    assert ring.authorizes("admin", "x", master)
    assert not ring.authorizes("admin", "x", "the-master")


@pytest.mark.parametrize("name", ["", "_master", "_system", "a b", "x/y", "é"])
def test_invalid_key_names_are_refused(ring: KeyRing, name: str) -> None:
    with pytest.raises(KeyRingError, match="invalid key name"):
        ring.set_host_key(name)


@pytest.mark.parametrize("value", ["", "with space", "tab\tkey", "ключ", "x" * 257])
def test_invalid_key_values_are_refused(ring: KeyRing, value: str) -> None:
    with pytest.raises(KeyRingError, match="visible ASCII"):
        ring.set_host_key("ok", value)


def test_load_or_create_writes_a_private_file_and_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / KEYS_FILE
    first = KeyRing.load_or_create(path, default_host_key=None)
    first.ensure_functions(["submit_dsr"])
    first.set_host_key("servicenow", "sn-key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # secrets: owner only
    saved = json.loads(path.read_text("utf-8"))
    assert saved == {
        "masterKey": first.master_key,
        "functionKeys": {"default": first.default_host_key, "servicenow": "sn-key"},
        "functions": {"submit_dsr": {"default": first.function_keys("submit_dsr")["default"]}},
    }
    assert [p.name for p in tmp_path.iterdir()] == [KEYS_FILE]  # no temporary file left
    again = KeyRing.load_or_create(path, default_host_key=None)  # a restart
    assert again.to_json() == first.to_json()
    assert again.path == path


def test_a_given_default_host_key_replaces_the_saved_one(tmp_path: Path) -> None:
    path = tmp_path / KEYS_FILE
    first = KeyRing.load_or_create(path, default_host_key="devkey")
    assert first.default_host_key == "devkey"
    second = KeyRing.load_or_create(path, default_host_key="other")
    assert second.default_host_key == "other"
    assert second.master_key == first.master_key  # nothing else changes
    third = KeyRing.load_or_create(path, default_host_key=None)
    assert third.default_host_key == "other"


def test_a_file_without_a_default_host_key_gets_one(tmp_path: Path) -> None:
    path = tmp_path / KEYS_FILE
    path.write_text(json.dumps({"masterKey": "m", "functionKeys": {}}), "utf-8")
    ring = KeyRing.load_or_create(path, default_host_key=None)
    saved = json.loads(path.read_text("utf-8"))
    assert saved["functionKeys"] == {"default": ring.default_host_key}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "empty"),
        ("{torn", "not JSON"),
        ("[]", "not a key file"),
        ('{"functionKeys": {}}', "masterKey is missing"),
        ('{"masterKey": "m", "functionKeys": []}', "must be objects"),
        ('{"masterKey": "m", "functionKeys": {}, "functions": {"f": "k"}}', "must be an object"),
        ('{"masterKey": "m", "functionKeys": {"bad name": "k"}}', "invalid key name"),
        ('{"masterKey": "", "functionKeys": {}}', "visible ASCII"),
    ],
)
def test_an_unreadable_key_file_stops_the_start(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / KEYS_FILE
    path.write_text(content, "utf-8")
    with pytest.raises(StateFileError, match=reason) as error:
        KeyRing.load_or_create(path, default_host_key="devkey")
    assert str(path) in str(error.value)
    assert path.read_text("utf-8") == content  # left as it was, for whoever looks into it


def test_key_ring_takes_function_key_or_keys() -> None:
    assert key_ring("devkey", None).default_host_key == "devkey"
    ring = KeyRing.generate()
    assert key_ring(None, ring) is ring
    with pytest.raises(ValueError, match="not both"):
        key_ring("devkey", ring)
    with pytest.raises(ValueError, match="must not be empty"):
        key_ring("", None)
    with pytest.raises(ValueError, match="must not be empty"):
        key_ring(None, None)
