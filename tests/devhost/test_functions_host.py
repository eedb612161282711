"""The trigger host runs real functions through the SDK's entry points, like the Functions host."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func
import pytest
import requests
from azure.durable_functions.models.utils import http_utils
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost.entra import EntraTenant
from devhost.functions_host import FunctionsHost, UnsupportedFunctionError, connection_from_env
from devhost.keys import KeyRing
from devhost.platform_auth import PlatformAuth
from devhost.tls import TlsFiles
from devhost.triggers.common import _worker_loop
from devhost.triggers.http import (
    BODY_SIZE_LIMIT_SETTING,
    MAX_BODY_BYTES,
    MAX_REQUEST_LINE_BYTES,
    body_size_limit,
    compile_route,
)
from devhost.triggers.queue import QueueOptions
from devhost.triggers.timer import parse_schedule
from tests.devhost.host_toy_app import CLIENT_QUEUE, LEAKY_TEXT, QUEUE, Recorder, build_app

KEY = "toy-function-key"
HTTP_FUNCTIONS = [
    "hello",
    "echo",
    "admin_ping",
    "boom",
    "cookies",
    "together",
    "async_catch_all",
    "status",
]
REPO = Path(__file__).resolve().parents[2]
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- HTTP ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rec() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def binding() -> dict[str, Any]:
    return {"taskHubName": "ToyHub", "creationUrls": {}, "managementUrls": {}}


@pytest.fixture(scope="module")
def http_host(rec: Recorder, binding: dict[str, Any]) -> Iterator[FunctionsHost]:
    host = FunctionsHost(
        build_app(rec).get_functions(),
        function_key=KEY,
        client_binding=lambda: dict(binding),
        host_json={"functions": HTTP_FUNCTIONS},
    )
    with host:
        yield host


@pytest.fixture
def api(http_host: FunctionsHost) -> str:
    return f"{http_host.base_url}/api"


def test_anonymous_route_with_constraint(api: str) -> None:
    response = requests.get(f"{api}/hello/world", timeout=10)
    assert response.status_code == 200
    assert response.text == "hello world"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert requests.get(f"{api}/HELLO/Bob", timeout=10).text == "hello Bob"
    assert requests.get(f"{api}/hello/w0rld", timeout=10).status_code == 404  # {name:alpha}


def _assert_bare(response: requests.Response, status: int) -> None:
    """A refusal of the Functions host itself: the status, no body, no content type."""
    assert response.status_code == status
    assert response.content == b""
    assert "Content-Type" not in response.headers
    for header in ("Allow", "WWW-Authenticate"):
        assert header not in response.headers


def _raw(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is on a fresh connection: status, headers, body."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def test_function_and_admin_levels_need_the_key(api: str, http_host: FunctionsHost) -> None:
    missing = requests.get(f"{api}/items/5", timeout=10)
    _assert_bare(missing, 401)
    assert requests.get(f"{api}/items/5?code=wrong", timeout=10).status_code == 401
    header = requests.get(f"{api}/items/5", headers={"x-functions-key": KEY}, timeout=10)
    assert header.status_code == 201
    assert requests.get(f"{api}/items/5", params={"code": KEY}, timeout=10).status_code == 201
    assert requests.get(f"{api}/admin/ping", timeout=10).status_code == 401
    # `function_key=` is the default *host* key: function level everywhere, not admin level.
    hosted = requests.get(f"{api}/admin/ping", headers={"x-functions-key": KEY}, timeout=10)
    _assert_bare(hosted, 401)
    master = {"x-functions-key": http_host.keys.master_key}
    admin = requests.get(f"{api}/admin/ping", headers=master, timeout=10)
    assert (admin.status_code, admin.text) == (200, "pong")


def test_request_carries_method_url_params_route_headers_and_body(api: str) -> None:
    response = requests.post(
        f"{api}/items/7/extra?x=1&y=2",
        data=b'{"a": 1}',
        headers={"x-functions-key": KEY, "X-Test": "yes"},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["route"] == {"id": "7", "part": "extra"}
    assert seen["params"] == {"x": "1", "y": "2"}
    assert seen["body"] == '{"a": 1}'
    assert seen["x_test"] == "yes"
    assert seen["url"].endswith("/api/items/7/extra?x=1&y=2")
    optional = requests.get(f"{api}/items/8", headers={"x-functions-key": KEY}, timeout=10)
    assert optional.json()["route"] == {"id": "8"}


def test_chunked_request_body(api: str) -> None:
    response = requests.post(
        f"{api}/items/3",
        data=iter([b"ab", b"cd"]),  # a generator body is sent chunked
        headers={"x-functions-key": KEY},
        timeout=10,
    )
    assert response.json()["body"] == "abcd"


def test_the_key_header_is_the_key_whenever_it_is_sent(api: str) -> None:
    # As the host's AuthenticationLevelHandler: the header if present (even empty), else the
    # first `code`; a wrong key is the same 401 as none.
    for headers, query in [
        ({"x-functions-key": "wrong"}, f"code={KEY}"),
        ({"x-functions-key": ""}, f"code={KEY}"),
        ({}, f"code=wrong&code={KEY}"),
        ({}, "code="),
    ]:
        _assert_bare(requests.get(f"{api}/items/5?{query}", headers=headers, timeout=10), 401)
    first = requests.get(f"{api}/items/5?code={KEY}&code=wrong", timeout=10)
    assert first.status_code == 201


def test_unknown_routes_and_wrong_methods_are_a_bare_404(
    api: str, http_host: FunctionsHost
) -> None:
    _assert_bare(requests.get(f"{api}/nope", timeout=10), 404)
    _assert_bare(requests.get(f"{http_host.base_url}/hello/bob", timeout=10), 404)
    _assert_bare(requests.get(f"{api}/items/abc", params={"code": KEY}, timeout=10), 404)
    # A method the route does not take is no match (HttpMethodRouteConstraint): 404, not 405,
    # before the key is looked at; HEAD is not GET; any method token reaches routing.
    _assert_bare(requests.delete(f"{api}/hello/bob", timeout=10), 404)
    _assert_bare(requests.head(f"{api}/hello/bob", timeout=10), 404)
    _assert_bare(requests.request("PROPFIND", f"{api}/hello/bob", timeout=10), 404)
    _assert_bare(requests.put(f"{api}/items/5", data=b"{}", timeout=10), 404)
    assert requests.request("PROPFIND", f"{api}/admin/ping", timeout=10).status_code == 401


def test_a_request_line_over_8_kib_is_a_bare_414(http_host: FunctionsHost) -> None:
    def line_of(size: int) -> bytes:
        head, tail = b"GET /api/hello/", b" HTTP/1.1\r\n"
        return head + b"a" * (size - len(head) - len(tail)) + tail

    request_end = b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
    status, _, _ = _raw(http_host.base_url, line_of(MAX_REQUEST_LINE_BYTES) + request_end)
    assert status == 200  # Kestrel's MaxRequestLineSize counts the line with its CRLF
    status, headers, body = _raw(
        http_host.base_url, line_of(MAX_REQUEST_LINE_BYTES + 1) + request_end
    )
    assert (status, body) == (414, b"")
    assert headers["content-length"] == "0"
    assert headers["connection"] == "close"
    assert "content-type" not in headers
    status, headers, body = _raw(http_host.base_url, line_of(70_000) + request_end)
    assert (status, body, headers.get("content-type")) == (414, b"", None)


def test_headers_over_kestrels_limits_are_a_bare_431(http_host: FunctionsHost) -> None:
    def get(headers: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        return _raw(http_host.base_url, f"GET /api/hello/bob HTTP/1.1\r\n{lines}\r\n".encode())

    host = [("Host", "x"), ("Connection", "close")]
    assert get(host + [(f"x-h{i}", "v") for i in range(90)])[0] == 200
    # More than MaxRequestHeaderCount (100); the stdlib's parser stops one header short of it.
    status, headers, body = get(host + [(f"x-h{i}", "v") for i in range(100)])
    assert (status, body, headers["connection"]) == (431, b"", "close")
    # MaxRequestHeadersTotalSize, 32 KiB: each line with its CRLF.
    used = sum(len(name) + len(value) + 4 for name, value in host)
    filler = ("x-big", "v" * (32_768 - used - len("x-big") - 4))
    assert get([*host, filler])[0] == 200
    status, headers, body = get([*host, (filler[0], filler[1] + "v")])
    assert (status, body, headers.get("content-type")) == (431, b"", None)


def test_a_malformed_content_length_is_a_bare_400(http_host: FunctionsHost) -> None:
    request = b"POST /api/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"
    status, headers, body = _raw(http_host.base_url, request)
    assert (status, body, headers["connection"]) == (400, b"", "close")
    assert "content-type" not in headers


def test_the_hosts_body_limit_is_100_mb_unless_the_setting_says_otherwise() -> None:
    assert body_size_limit({}) == MAX_BODY_BYTES == 100 * 1024 * 1024
    assert body_size_limit({BODY_SIZE_LIMIT_SETTING: "2048"}) == 2048
    assert body_size_limit({BODY_SIZE_LIMIT_SETTING: "lots"}) == MAX_BODY_BYTES


def test_a_body_over_the_hosts_limit_is_a_bare_500_after_routing_and_the_key(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BODY_SIZE_LIMIT_SETTING, "16")
    host = FunctionsHost(
        build_app(rec).get_functions(),
        function_key=KEY,
        client_binding=None,
        host_json={"functions": ["echo"]},
    )
    with host:
        api, key = f"{host.base_url}/api", {"x-functions-key": KEY}
        assert (
            requests.post(f"{api}/items/1", data=b"x" * 16, headers=key, timeout=10).status_code
            == 201
        )
        # Kestrel throws when the body is read, and the host's exception handling answers 500
        # (azure-functions-host#10519): not 413, and only once routing and the key passed.
        too_large = requests.post(f"{api}/items/1", data=b"x" * 17, headers=key, timeout=10)
        _assert_bare(too_large, 500)
        chunked = requests.post(
            f"{api}/items/1", data=iter([b"x" * 10] * 2), headers=key, timeout=10
        )
        _assert_bare(chunked, 500)
        _assert_bare(requests.post(f"{api}/items/1", data=b"x" * 17, timeout=10), 401)
        _assert_bare(requests.post(f"{api}/nope", data=b"x" * 17, headers=key, timeout=10), 404)
        status, _, body = _raw(
            host.base_url,
            f"POST /api/items/1 HTTP/1.1\r\nHost: x\r\nx-functions-key: {KEY}\r\n"
            "Content-Length: 1000000000000\r\n\r\n".encode(),
        )
        assert (status, body) == (500, b"")


def test_unhandled_exception_is_a_bare_500(api: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="devhost.functions"):
        response = requests.get(f"{api}/boom", timeout=10)
    assert response.status_code == 500
    assert response.content == b""
    assert LEAKY_TEXT not in str(response.headers)
    assert any(r.levelno == logging.ERROR and "boom" in r.getMessage() for r in caplog.records)
    assert any("function=boom" in m and "status=500" in m for m in caplog.messages)


def test_multiple_headers_and_binary_body(api: str) -> None:
    response = requests.get(f"{api}/cookies", timeout=10)
    assert response.content == b"\x00\x01"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.headers["Content-Type"] == "application/octet-stream"


def test_twenty_concurrent_requests(api: str) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(
            pool.map(lambda _: requests.get(f"{api}/together", timeout=20).status_code, range(20))
        )
    assert statuses == [200] * 20  # the function waits on a 20-party barrier


def test_async_function_catch_all_and_context(api: str) -> None:
    response = requests.get(f"{api}/async/a/b/c", timeout=10)
    assert (response.status_code, response.text) == (200, "a/b/c|async_catch_all")


def test_durable_client_function_talks_to_the_binding_rpc_url(
    api: str, binding: dict[str, Any], httpserver: Any
) -> None:
    httpserver.expect_request(
        "/runtime/webhooks/durabletask/instances/abc", method="GET"
    ).respond_with_json({"instanceId": "abc", "name": "o", "runtimeStatus": "Running"}, status=202)
    binding["rpcBaseUrl"] = httpserver.url_for("/runtime/webhooks/durabletask/")

    def call(_: int) -> tuple[int, Any]:
        response = requests.get(f"{api}/status/abc", headers={"x-functions-key": KEY}, timeout=20)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=5) as pool:  # the SDK's shared aiohttp session
        results = list(pool.map(call, range(5)))
    assert results == [(200, {"status": "Running"})] * 5


def test_client_survives_a_session_left_by_asyncio_run_elsewhere(
    api: str, binding: dict[str, Any], httpserver: Any
) -> None:
    httpserver.expect_request(
        "/runtime/webhooks/durabletask/instances/xyz", method="GET"
    ).respond_with_json({"instanceId": "xyz", "name": "o", "runtimeStatus": "Completed"})
    binding["rpcBaseUrl"] = httpserver.url_for("/runtime/webhooks/durabletask/")
    client = df.DurableOrchestrationClient(json.dumps(binding))
    # Close the session the host's loop holds (as if no host had run yet), then leave the SDK's
    # process-wide session bound to a loop that is closed right after.
    asyncio.run_coroutine_threadsafe(http_utils._close_session(), _worker_loop()).result()
    assert asyncio.run(client.get_status("xyz")).runtime_status is not None
    response = requests.get(f"{api}/status/xyz", headers={"x-functions-key": KEY}, timeout=20)
    assert (response.status_code, response.json()) == (200, {"status": "Completed"})


def test_invocation_log_line_has_no_body_headers_or_key(
    api: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devhost.functions"):
        requests.post(
            f"{api}/items/9?q=QUERY-SECRET",
            data=b"BODY-SECRET",
            headers={"x-functions-key": KEY, "x-test": "HEADER-SECRET"},
            timeout=10,
        )
    lines = [m for m in caplog.messages if "function=echo" in m]
    assert len(lines) == 1
    assert re.search(r"trigger=httpTrigger status=201 duration_ms=[\d.]+ ", lines[0])
    assert "route=items/{id:int}/{part?}" in lines[0]
    for secret in ("BODY-SECRET", "HEADER-SECRET", "QUERY-SECRET", KEY):
        assert not any(secret in m for m in caplog.messages)


def test_route_templates() -> None:
    assert compile_route("a/{x:int:min(2)}").match("a/3") == {"x": "3"}
    assert compile_route("a/{x:int:min(2)}").match("a/1") is None
    assert compile_route("a/{x:regex(^b+$)}").match("a/bbb") == {"x": "bbb"}
    assert compile_route("a/{x:regex(^b+$)}").match("a/bc") is None
    assert compile_route("a/{x=dflt}").match("a") == {"x": "dflt"}
    assert compile_route("a/{x:guid}").match("a/0f8fad5b-d9cb-469f-a165-70867728950e")
    assert compile_route("{*all}").match("") == {"all": ""}
    assert compile_route("f/{name}.{ext}").match("f/report.tar.gz") == {
        "name": "report",
        "ext": "tar.gz",
    }
    assert compile_route("a/{x:unknownconstraint}").match("a/b") == {"x": "b"}  # tolerated
    with pytest.raises(ValueError, match="parameter name"):
        compile_route("a/{x y}")
    literal, param = compile_route("items/special"), compile_route("items/{id}")
    assert literal.precedence < param.precedence


def _plain_app(build: Callable[[df.DFApp], None]) -> list[Any]:
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    build(app)
    return list(app.get_functions())


def test_load_errors_surface_when_the_host_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("Storage", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)

    def mismatch(app: df.DFApp) -> None:
        @app.route(route="x")
        def x(request: func.HttpRequest) -> func.HttpResponse:  # binding is named "req"
            return func.HttpResponse()

    with pytest.raises(UnsupportedFunctionError, match="request"):
        FunctionsHost(_plain_app(mismatch), function_key=KEY, client_binding=None)

    def client(app: df.DFApp) -> None:
        @app.route(route="x")
        @app.durable_client_input(client_name="client")
        async def x(req: func.HttpRequest, client: Any) -> func.HttpResponse:
            return func.HttpResponse()

    with pytest.raises(UnsupportedFunctionError, match="client_binding"):
        FunctionsHost(_plain_app(client), function_key=KEY, client_binding=None)

    def queue_fn(app: df.DFApp) -> None:
        @app.queue_trigger(arg_name="msg", queue_name="q", connection="Storage")
        def x(msg: func.QueueMessage) -> None:
            return None

    host = FunctionsHost(_plain_app(queue_fn), function_key=KEY, client_binding=None)
    with pytest.raises(UnsupportedFunctionError, match="no connection string for connection"):
        host.start()  # Storage and AzureWebJobsStorage unset: fails before anything listens
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{host.base_url}/api/x", timeout=5)


def test_connection_from_env_follows_the_azurewebjobs_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("Storage", raising=False)
    monkeypatch.setenv("AzureWebJobsStorage", "from-prefixed")
    assert connection_from_env("Storage") == "from-prefixed"
    monkeypatch.setenv("Storage", "exact")
    assert connection_from_env("Storage") == "exact"
    with pytest.raises(KeyError):
        connection_from_env("NoSuchConnectionSetting")


def test_multi_segment_route_prefix(rec: Recorder) -> None:
    host = FunctionsHost(
        build_app(rec).get_functions(),
        function_key=KEY,
        client_binding=None,
        host_json={"functions": ["hello"], "extensions": {"http": {"routePrefix": "v1/fn"}}},
    )
    with host:
        assert requests.get(f"{host.base_url}/v1/fn/hello/x", timeout=10).text == "hello x"
        assert requests.get(f"{host.base_url}/api/hello/x", timeout=10).status_code == 404
    bare = FunctionsHost(
        build_app(rec).get_functions(),
        function_key=KEY,
        client_binding=None,
        host_json={"functions": ["hello"], "extensions": {"http": {"routePrefix": ""}}},
    )
    with bare:
        assert requests.get(f"{bare.base_url}/hello/y", timeout=10).text == "hello y"


# --- keys: Azure's model (host keys, per-function keys, the master key) ---------------------


def _keys_app(app: df.DFApp) -> None:
    """Two function-level routes like the app's, an admin one, an anonymous one, a durable one."""

    @app.route(route="exports", methods=["POST"])
    def submit_dsr(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("submitted", status_code=202)

    @app.route(route="exports/{requestId}", methods=["GET"])
    def get_dsr(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.route_params["requestId"])

    @app.route(route="ping", auth_level=func.AuthLevel.ADMIN)
    def admin_only(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    @app.route(route="health", auth_level=func.AuthLevel.ANONYMOUS)
    def get_health(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")

    @app.orchestration_trigger(context_name="context")
    def export_personal_data(context: df.DurableOrchestrationContext) -> Any:
        return (yield context.call_activity("nothing", 1))


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys") / "keys.json"


@pytest.fixture(scope="module")
def tenant(tls_files: TlsFiles) -> Iterator[EntraTenant]:
    with EntraTenant(tls_files) as local_tenant:
        yield local_tenant


@pytest.fixture(scope="module")
def keys_host(keys_file: Path, tenant: EntraTenant) -> Iterator[FunctionsHost]:
    ring = KeyRing.load_or_create(keys_file, default_host_key=None)
    host = FunctionsHost(
        _plain_app(_keys_app),
        keys=ring,
        client_binding=None,
        platform_auth=PlatformAuth(tenant),
    )
    with host:
        yield host


def _get(host: FunctionsHost, path: str, key: str | None = None, **kwargs: Any) -> Any:
    headers = {"x-functions-key": key} if key is not None else {}
    return requests.get(f"{host.base_url}{path}", headers=headers, timeout=10, **kwargs)


def _submit(host: FunctionsHost, key: str | None, **kwargs: Any) -> Any:
    headers = {"x-functions-key": key} if key is not None else {}
    return requests.post(f"{host.base_url}/api/exports", headers=headers, timeout=10, **kwargs)


def test_every_http_function_has_its_own_default_key(keys_host: FunctionsHost) -> None:
    ring = keys_host.keys
    submit, get = ring.function_keys("submit_dsr"), ring.function_keys("get_dsr")
    assert set(submit) == set(get) == {"default"}
    assert len({submit["default"], get["default"], ring.default_host_key, ring.master_key}) == 4


def test_another_functions_key_is_a_wrong_key(keys_host: FunctionsHost) -> None:
    submit_key = keys_host.keys.function_keys("submit_dsr")["default"]
    get_key = keys_host.keys.function_keys("get_dsr")["default"]
    assert _submit(keys_host, submit_key).status_code == 202
    assert _get(keys_host, "/api/exports/T-1", get_key).text == "T-1"
    # The deploy guide's old mistake: submit_dsr's key on get_dsr. Azure answers 401.
    _assert_bare(_get(keys_host, "/api/exports/T-1", submit_key), 401)
    _assert_bare(_submit(keys_host, get_key), 401)
    _assert_bare(_get(keys_host, "/api/ping", submit_key), 401)


def test_a_host_key_opens_every_function_level_route(keys_host: FunctionsHost) -> None:
    servicenow, _ = keys_host.keys.set_host_key("servicenow")
    for key in (keys_host.keys.default_host_key, servicenow):
        assert _submit(keys_host, key).status_code == 202
        assert _get(keys_host, "/api/exports/T-2", key).status_code == 200
        _assert_bare(_get(keys_host, "/api/ping", key), 401)  # admin level: the master key only


def test_the_master_key_opens_every_route_and_the_admin_api(keys_host: FunctionsHost) -> None:
    master = keys_host.keys.master_key
    assert _submit(keys_host, master).status_code == 202
    assert _get(keys_host, "/api/exports/T-3", master).status_code == 200
    assert _get(keys_host, "/api/ping", master).text == "pong"
    assert _get(keys_host, "/admin/host/keys", master).status_code == 200


def test_the_code_parameter_and_the_header_that_wins_over_it(keys_host: FunctionsHost) -> None:
    submit_key = keys_host.keys.function_keys("submit_dsr")["default"]
    get_key = keys_host.keys.function_keys("get_dsr")["default"]
    assert _get(keys_host, "/api/exports/T-4", params={"code": get_key}).status_code == 200
    assert _get(keys_host, "/api/exports/T-4", params={"code": submit_key}).status_code == 401
    # The header is the key whenever it is sent, even when `code` holds a good one.
    _assert_bare(_get(keys_host, "/api/exports/T-4", submit_key, params={"code": get_key}), 401)
    assert _get(keys_host, "/api/exports/T-4", get_key, params={"code": "wrong"}).ok


def test_an_anonymous_route_needs_no_key(keys_host: FunctionsHost) -> None:
    assert _get(keys_host, "/api/health").text == "ok"
    assert _get(keys_host, "/api/health", "wrong").text == "ok"  # a wrong key is no key


def test_listing_keys_needs_the_master_key(keys_host: FunctionsHost) -> None:
    ring = keys_host.keys
    submit_key = ring.function_keys("submit_dsr")["default"]
    for path in ("/admin/host/keys", "/admin/functions/submit_dsr/keys"):
        _assert_bare(_get(keys_host, path), 401)
        _assert_bare(_get(keys_host, path, "wrong"), 401)
        # The admin API knows no function, so no function key matches there: 401. A host key
        # is a valid key of too low a level: authenticated, not authorized, 403.
        _assert_bare(_get(keys_host, path, submit_key), 401)
        _assert_bare(_get(keys_host, path, ring.default_host_key), 403)
        assert _get(keys_host, path, params={"code": ring.master_key}).status_code == 200


def test_the_admin_api_lists_keys_like_the_functions_host(keys_host: FunctionsHost) -> None:
    ring, master = keys_host.keys, keys_host.keys.master_key
    hosts = _get(keys_host, "/admin/host/keys", master)
    assert hosts.headers["Content-Type"].startswith("application/json")
    listed = {k["name"]: k["value"] for k in hosts.json()["keys"]}
    assert listed == ring.host_keys()
    assert master not in listed.values()  # the master key is not a host key in the listing
    assert hosts.json()["links"][0]["rel"] == "self"
    assert (
        _get(keys_host, "/admin/host/functionkeys", master).json()["keys"] == (hosts.json()["keys"])
    )
    one = _get(keys_host, "/admin/host/keys/default", master).json()
    assert (one["name"], one["value"]) == ("default", ring.default_host_key)
    assert _get(keys_host, "/admin/host/systemkeys/_master", master).json()["value"] == master
    assert _get(keys_host, "/admin/host/systemkeys", master).json()["keys"] == []
    functions = _get(keys_host, "/admin/functions/get_dsr/keys", master).json()["keys"]
    assert functions == [{"name": "default", "value": ring.function_keys("get_dsr")["default"]}]
    # A function without an HTTP trigger gets its default key on first use, as in Azure.
    durable = _get(keys_host, "/ADMIN/Functions/export_personal_data/keys", master)
    assert [k["name"] for k in durable.json()["keys"]] == ["default"]
    _assert_bare(_get(keys_host, "/admin/functions/nope/keys", master), 404)
    _assert_bare(_get(keys_host, "/admin/host/keys/nope", master), 404)
    _assert_bare(_get(keys_host, "/admin/host/nope", master), 404)  # not the key API: routing


def test_the_admin_api_creates_and_replaces_keys(keys_host: FunctionsHost, keys_file: Path) -> None:
    base, master = keys_host.base_url, {"x-functions-key": keys_host.keys.master_key}
    created = requests.post(f"{base}/admin/host/keys/jira", headers=master, timeout=10)
    assert created.status_code == 201
    jira = created.json()["value"]
    assert created.json()["name"] == "jira"
    assert _submit(keys_host, jira).status_code == 202
    assert _get(keys_host, "/api/exports/T-5", jira).status_code == 200
    renewed = requests.post(f"{base}/admin/host/keys/jira", headers=master, timeout=10)
    assert renewed.status_code == 200
    assert _submit(keys_host, jira).status_code == 401  # the old value is gone
    assert _submit(keys_host, renewed.json()["value"]).status_code == 202

    url = f"{base}/admin/functions/get_dsr/keys/poller"
    chosen = "poller-key-0123456789"
    put = requests.put(url, json={"name": "poller", "value": chosen}, headers=master, timeout=10)
    assert (put.status_code, put.json()["value"]) == (201, chosen)
    assert _get(keys_host, "/api/exports/T-6", chosen).status_code == 200
    assert _submit(keys_host, chosen).status_code == 401  # a function key: get_dsr only
    assert requests.put(url, json={}, headers=master, timeout=10).status_code == 400
    bad_name = requests.post(f"{base}/admin/host/keys/_nope", headers=master, timeout=10)
    assert bad_name.status_code == 400
    deleted = requests.delete(url, headers=master, timeout=10)
    assert (deleted.status_code, deleted.headers["Allow"]) == (405, "GET, POST, PUT")
    host_key = {"x-functions-key": keys_host.keys.default_host_key}
    assert requests.post(url, headers=host_key, timeout=10).status_code == 403

    saved = KeyRing.load_or_create(keys_file, default_host_key=None)  # what a restart reads
    assert saved.host_keys()["jira"] == renewed.json()["value"]
    assert saved.function_keys("get_dsr")["poller"] == chosen


def test_the_token_endpoint_takes_a_host_key_not_a_function_key(
    keys_host: FunctionsHost,
) -> None:
    url = f"{keys_host.base_url}/.auth/devhost/token"
    submit_key = keys_host.keys.function_keys("submit_dsr")["default"]
    for key, status in [
        (keys_host.keys.default_host_key, 200),
        (keys_host.keys.master_key, 200),
        (submit_key, 401),
        ("wrong", 401),
    ]:
        answer = requests.post(
            url, json={"roles": []}, headers={"x-functions-key": key}, timeout=10
        )
        assert answer.status_code == status
    # I-6: no token for an id Entra never issues (it made a submit answer 503).
    host_key = {"x-functions-key": keys_host.keys.default_host_key}
    for asked in ({"id": "ada@contoso.example"}, {"id": "x", "kind": "user"}):
        answer = requests.post(
            url, json={"roles": ["DSR.Submit"], **asked}, headers=host_key, timeout=10
        )
        assert answer.status_code == (400 if "@" in asked["id"] else 200)


def test_the_rotation_hook_takes_the_master_key_only_and_rolls_the_key_over(
    keys_host: FunctionsHost, tenant: EntraTenant
) -> None:
    url = f"{keys_host.base_url}/.auth/devhost/rotate"
    host_key = {"x-functions-key": keys_host.keys.default_host_key}
    master = {"x-functions-key": keys_host.keys.master_key}
    assert requests.post(url, json={}, headers=host_key, timeout=10).status_code == 403
    assert requests.post(url, json={}, timeout=10).status_code == 401
    before = tenant.signing_kid
    kept = requests.post(url, json={"keepPrevious": True}, headers=master, timeout=30)
    assert kept.status_code == 200
    assert [k["kid"] for k in kept.json()["keys"]["keys"]] == [kept.json()["kid"], before]
    dropped = requests.post(url, json={"keepPrevious": False}, headers=master, timeout=30)
    assert [k["kid"] for k in dropped.json()["keys"]["keys"]] == [tenant.signing_kid]
    bad = requests.post(url, json={"keepPrevious": "yes"}, headers=master, timeout=10)
    assert bad.status_code == 400


def test_function_key_and_keys_are_one_or_the_other() -> None:
    with pytest.raises(ValueError, match="not both"):
        FunctionsHost(
            _plain_app(_keys_app), function_key=KEY, keys=KeyRing.generate(), client_binding=None
        )
    with pytest.raises(ValueError, match="must not be empty"):
        FunctionsHost(_plain_app(_keys_app), function_key="", client_binding=None)
    with pytest.raises(ValueError, match="must not be empty"):
        FunctionsHost(_plain_app(_keys_app), client_binding=None)


# --- queues (Azurite) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def azurite_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Azurite queue service on a free port; yields its connection string."""
    process = subprocess.Popen(
        [
            str(REPO / "node_modules/.bin/azurite-queue"),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            "0",
            "--location",
            str(tmp_path_factory.mktemp("azurite")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 20
    port = None
    try:
        while port is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                raise RuntimeError("Azurite queue service did not start")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            found = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={DEV_ACCOUNT_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


QUEUE_HOST_JSON = {
    "extensions": {
        "queues": {
            "maxDequeueCount": 2,
            "visibilityTimeout": "00:00:00",
            "maxPollingInterval": "00:00:00.200",
            "batchSize": 4,
        }
    },
    "functions": ["on_item", "on_client_item"],
}


@pytest.fixture(scope="module")
def queue_rec() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def queue_host(azurite_queue: str, queue_rec: Recorder) -> Iterator[FunctionsHost]:
    for name in (QUEUE, CLIENT_QUEUE):
        QueueClient.from_connection_string(azurite_queue, name).create_queue()
    connections: list[str] = []

    def resolve(name: str) -> str:
        connections.append(name)
        return azurite_queue

    host = FunctionsHost(
        build_app(queue_rec).get_functions(),
        function_key=KEY,
        client_binding=lambda: {"taskHubName": "ToyHub", "creationUrls": {}, "managementUrls": {}},
        queue_connection=resolve,
        host_json=QUEUE_HOST_JSON,
    )
    with host:
        assert connections == ["ToyStorage", "ToyStorage"]
        yield host


def _producer(conn: str, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        conn, name, message_encode_policy=TextBase64EncodePolicy()
    )


def _count(conn: str, name: str) -> int:
    client = QueueClient.from_connection_string(conn, name)
    return int(client.get_queue_properties().approximate_message_count or 0)


@pytest.mark.azurite
def test_base64_message_is_processed_then_deleted(
    queue_host: FunctionsHost, azurite_queue: str, queue_rec: Recorder
) -> None:
    sent = _producer(azurite_queue, QUEUE).send_message("hello queue")
    seen = wait_for(lambda: [e for e in queue_rec.of("queue") if e["id"] == sent.id], what="msg")
    assert seen[0]["body"] == "hello queue"
    assert seen[0]["dequeue_count"] == 1
    assert seen[0]["pop_receipt"]
    assert isinstance(seen[0]["inserted"], datetime)
    wait_for(lambda: _count(azurite_queue, QUEUE) == 0, what="message deleted")


@pytest.mark.azurite
def test_failing_message_is_retried_then_moved_to_poison(
    queue_host: FunctionsHost, azurite_queue: str, queue_rec: Recorder
) -> None:
    sent = _producer(azurite_queue, QUEUE).send_message("fail please")
    poison = QueueClient.from_connection_string(azurite_queue, f"{QUEUE}-poison")

    def poisoned() -> list[Any]:
        try:
            return list(poison.peek_messages(max_messages=32))
        except Exception:  # noqa: BLE001 - the host creates the poison queue on first use
            return []

    encoded = base64.b64encode(b"fail please").decode()
    moved = wait_for(lambda: [m for m in poisoned() if m.content == encoded], what="poison")
    assert len(moved) == 1  # moved unchanged, still base64
    attempts = [e["dequeue_count"] for e in queue_rec.of("queue") if e["id"] == sent.id]
    assert attempts == [1, 2]
    wait_for(lambda: _count(azurite_queue, QUEUE) == 0, what="original removed")


@pytest.mark.azurite
def test_invalid_base64_is_a_failed_delivery(
    queue_host: FunctionsHost, azurite_queue: str, queue_rec: Recorder
) -> None:
    raw = QueueClient.from_connection_string(azurite_queue, QUEUE)
    sent = raw.send_message("not base64 !")
    poison = QueueClient.from_connection_string(azurite_queue, f"{QUEUE}-poison")
    wait_for(
        lambda: any(m.content == "not base64 !" for m in poison.peek_messages(max_messages=32)),
        what="poison",
    )
    assert not [e for e in queue_rec.of("queue") if e["id"] == sent.id]


@pytest.mark.azurite
def test_queue_client_function_gets_the_durable_binding(
    queue_host: FunctionsHost, azurite_queue: str, queue_rec: Recorder
) -> None:
    _producer(azurite_queue, CLIENT_QUEUE).send_message(json.dumps({"id": 1}))
    seen = wait_for(lambda: queue_rec.of("client_queue"), what="client queue message")
    assert seen == [{"body": '{"id": 1}', "hub": "ToyHub"}]


@pytest.mark.azurite
def test_message_encoding_none(azurite_queue: str) -> None:
    QueueClient.from_connection_string(azurite_queue, "plain-items").create_queue()
    rec = Recorder()
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.queue_trigger(arg_name="msg", queue_name="%PLAIN_QUEUE%", connection="Storage")
    def plain(msg: func.QueueMessage) -> None:
        rec.add("plain", body=msg.get_body())

    monkey = pytest.MonkeyPatch()
    monkey.setenv("PLAIN_QUEUE", "plain-items")
    try:
        host = FunctionsHost(
            app.get_functions(),
            function_key=KEY,
            client_binding=None,
            queue_connection=lambda _: azurite_queue,
            host_json={"extensions": {"queues": {"messageEncoding": "none"}}},
        )
    finally:
        monkey.undo()
    with host:
        QueueClient.from_connection_string(azurite_queue, "plain-items").send_message("raw {}")
        assert wait_for(lambda: rec.of("plain"), what="plain message") == [{"body": b"raw {}"}]


def test_queue_options_from_host_json() -> None:
    defaults = QueueOptions.from_host_json(None)
    assert (defaults.max_dequeue_count, defaults.batch_size, defaults.message_encoding) == (
        5,
        16,
        "base64",
    )
    options = QueueOptions.from_host_json(
        {"extensions": {"queues": {"maxPollingInterval": "00:01:00", "visibilityTimeout": 1500}}}
    )
    assert options.max_polling_interval_s == 2.0  # capped for dev
    assert options.visibility_timeout_s == 1.5  # numbers are milliseconds
    with pytest.raises(ValueError, match="messageEncoding"):
        QueueOptions.from_host_json({"extensions": {"queues": {"messageEncoding": "utf8"}}})


# --- timers -------------------------------------------------------------------------------


def _at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", _at(2026, 1, 1, 12, 3, 10), _at(2026, 1, 1, 12, 5, 0)),
        ("0 */5 * * * *", _at(2026, 1, 1, 12, 5, 0), _at(2026, 1, 1, 12, 10, 0)),
        ("*/15 * * * * *", _at(2026, 1, 1, 0, 0, 59), _at(2026, 1, 1, 0, 1, 0)),
        ("0 30 9 * * 1-5", _at(2026, 11, 27, 10, 0, 0), _at(2026, 11, 30, 9, 30, 0)),  # Fri->Mon
        ("0 0 0 29 2 *", _at(2026, 3, 1), _at(2028, 2, 29)),
        ("0 0 12 * JAN,jul MON", _at(2026, 2, 1), _at(2026, 7, 6, 12)),
        ("0 0 6,18 1-3 * *", _at(2026, 1, 3, 19), _at(2026, 2, 1, 6)),
        ("0 0 0 * * 7", _at(2026, 11, 28), _at(2026, 11, 29)),  # 7 is Sunday too
        ("0 0 * * *", _at(2026, 1, 1, 0, 30), _at(2026, 1, 2)),  # five fields: seconds = 0
        ("00:10:00", _at(2026, 1, 1), _at(2026, 1, 1, 0, 10)),  # TimeSpan: every 10 minutes
    ],
)
def test_ncrontab_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expression).next_after(after) == expected


@pytest.mark.parametrize(
    "expression", ["* * * *", "60 * * * * *", "0 0 0 31 2 *", "*/0 * * * * *", "0 5-1 * * * *"]
)
def test_ncrontab_rejects_bad_schedules(expression: str) -> None:
    with pytest.raises(ValueError, match=r"NCRONTAB|never fires"):
        parse_schedule(expression)


def test_timer_runs_on_startup_then_on_schedule() -> None:
    rec = Recorder()
    host = FunctionsHost(
        build_app(rec).get_functions(),
        function_key=KEY,
        client_binding=None,
        host_json={"functions": ["tick"]},
    )
    with host:
        first = wait_for(lambda: rec.of("tick"), timeout=5, what="startup run")
        assert first[0] == {"past_due": False}
        wait_for(lambda: len(rec.of("tick")) >= 3, timeout=5, what="two scheduled runs")
