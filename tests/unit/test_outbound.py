"""The URL judge and the callback sender: the two bypasses a hostile review found, closed.

Both were parser differentials: the allowlist and the token pin judged a URL with ``urlsplit``
while urllib3 sent it. Each test here sends for real to HTTPS receivers on loopback and counts
what arrives, so a regression shows as a request that reached the wrong place.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken

from devhost.tls import TlsFiles, make_tls_files, server_ssl_context
from dsr_export.adapters import outbound
from dsr_export.adapters.callbacks import CallbackSender
from dsr_export.adapters.graph import GraphClient
from dsr_export.adapters.graph_errors import GraphError
from dsr_export.domain.errors import CallbackRefused
from dsr_export.settings import GraphSettings

TOKEN = "eyJ0eXAiOiJKV1QifQ.eyJyb2xlcyI6WyJVc2VyLkV4cG9ydC5BbGwiXX0.c2ln"
ALLOW = frozenset({"*.wild.example", "acme.service-now.com", "127.0.0.1"})


class Receiver:
    """An HTTPS server on loopback that records every request it gets (and its headers)."""

    def __init__(self, tls: TlsFiles, answer: int = 204, body: bytes = b"") -> None:
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                outer.seen.append(
                    {"path": self.path, **{k.lower(): v for k, v in self.headers.items()}}
                )
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(answer)
                for name, value in outer.extra_headers.items():
                    self.send_header(name, value.replace("{port}", str(outer.port)))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        self.extra_headers: dict[str, str] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = server_ssl_context(tls).wrap_socket(
            self._server.socket, server_side=True
        )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def receivers(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Receiver]]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls.ca_bundle)
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def _receiver(receivers: list[Receiver], tls: TlsFiles, **kwargs: object) -> Receiver:
    receiver = Receiver(tls, **kwargs)  # type: ignore[arg-type]
    receivers.append(receiver)
    return receiver


# -- the judge ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://localhost\\.wild.example/x", "backslash"),
        ("https://a.wild.example\\@evil.example/x", "backslash"),
        ("https://a.wild.example\n.evil/x", "control"),
        ("https://a.wild.example/x y", "whitespace"),
        ("https://a.wild\u200b.example/x", "format"),
        ("https://user:pw@a.wild.example/x", "credentials"),
        ("https://a.wild.example@evil.example/x", "credentials"),
        ("http://a.wild.example/x", "https"),
        ("https:///x", "host"),
        ("https://a.wild.example:8443/x", "port 443"),
        ("https://evil.example/x", "allowlist"),
        ("https://wild.example.evil/x", "allowlist"),
    ],
)
def test_callback_urls_that_parsers_could_read_differently_are_refused(url: str, why: str):
    with pytest.raises(CallbackRefused, match=why):
        outbound.check_url(url, ALLOW)


def test_a_plain_allowlisted_url_passes_and_keeps_its_query():
    url = "https://dsr.wild.example:443/api/cb?ticket=RITM1"
    assert outbound.check_url(url, ALLOW) == url
    assert outbound.judge(url).request_uri == "/api/cb?ticket=RITM1"


def test_loopback_receivers_need_the_loudly_named_setting():
    with pytest.raises(CallbackRefused, match="port 443"):
        outbound.check_url("https://127.0.0.1:8443/cb", ALLOW)
    assert outbound.check_url("https://127.0.0.1:8443/cb", ALLOW, allow_loopback=True)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "metadata"),
        ("168.63.129.16", "metadata"),
        ("fe80::1", "link-local"),
        ("100.64.1.1", "CGNAT"),
        ("::ffff:10.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - the address under test
    ],
)
def test_hosts_resolving_to_non_public_addresses_are_refused(address: str, kind: str):
    target = outbound.judge("https://dsr.wild.example/cb")
    with pytest.raises(CallbackRefused, match=kind):
        outbound.resolve_public(target, resolver=lambda host, port: [address])


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 of 169.254.169.254
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:5601:5601", "metadata"),  # Teredo, client 169.254.169.254
        ("2001:0:a00:1:8000:63bf:3fff:fdd2", "private"),  # Teredo, server 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 (RFC 6052) of 169.254.169.254
        ("64:ff9b::a00:1", "private"),
        ("64:ff9b:1::a9fe:a9fe", "NAT64"),  # local-use NAT64 (RFC 8215): never public
        ("64:ff9b:1:a9fe:a9fe::", "NAT64"),
    ],
)
def test_ipv6_forms_embedding_a_forbidden_ipv4_are_refused(address: str, kind: str):
    """I-4: the IPv4 inside a 6to4, Teredo or NAT64 address is judged like the address."""
    target = outbound.judge("https://dsr.wild.example/cb")
    with pytest.raises(CallbackRefused, match=kind):
        outbound.resolve_public(target, resolver=lambda host, port: [address])


def test_one_private_answer_among_public_ones_is_enough_to_refuse():
    target = outbound.judge("https://dsr.wild.example/cb")
    with pytest.raises(CallbackRefused, match="private"):
        outbound.resolve_public(target, resolver=lambda host, port: ["20.1.1.1", "10.0.0.1"])
    assert outbound.resolve_public(target, resolver=lambda host, port: ["20.1.1.1"]) == "20.1.1.1"


# -- the callback sender -----------------------------------------------------------------------
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_a_loopback_receiver_sees_nothing_from_the_backslash_bypass(
    tls: TlsFiles, receivers: list[Receiver]
):
    loopback = _receiver(receivers, tls)
    sender = CallbackSender(backoff_factor=0)
    bypass = f"https://localhost:{loopback.port}\\.wild.example/x"
    delivery = sender.deliver(bypass, b"k" * 32, "msg_1", b"{}", NOW)
    assert delivery.delivered is False
    assert delivery.permanent is True
    plain = sender.deliver(f"https://localhost:{loopback.port}/x", b"k" * 32, "msg_1", b"{}", NOW)
    assert plain.permanent is True
    assert "loopback" in str(plain.reason)
    assert loopback.seen == []


def test_the_sender_connects_to_the_checked_address_and_names_the_host(
    tls: TlsFiles, receivers: list[Receiver]
):
    receiver = _receiver(receivers, tls)
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])  # a rebinding DNS: the second answer differs
    sender = CallbackSender(
        backoff_factor=0, allow_loopback=True, resolver=lambda host, port: next(answers)
    )
    url = f"https://localhost:{receiver.port}/cb?ticket=1"
    delivery = sender.deliver(url, b"k" * 32, "msg_1", b'{"a":1}', NOW)
    assert delivery.delivered is True
    assert len(receiver.seen) == 1
    assert receiver.seen[0]["host"] == f"localhost:{receiver.port}"  # TLS and Host: the name
    assert receiver.seen[0]["path"] == "/cb?ticket=1"
    assert receiver.seen[0]["webhook-id"] == "msg_1"
    refused = sender.deliver(url, b"k" * 32, "msg_2", b"{}", NOW)  # now resolves privately
    assert refused.permanent is True
    assert len(receiver.seen) == 1


# -- the Graph token pin -----------------------------------------------------------------------
class _Credential:
    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        return AccessToken(TOKEN, 4_102_444_800)


def _graph_client(graph: Receiver) -> GraphClient:
    settings = GraphSettings(base_url=f"https://127.0.0.1:{graph.port}", timeout_seconds=5)
    return GraphClient(settings, _Credential(), backoff_factor=0)


@pytest.mark.parametrize(
    "location",
    [
        "https://localhost:{foreign}\\@127.0.0.1:{graph}/beta/dataPolicyOperations/x",
        "https://127.0.0.1:{graph}@localhost:{foreign}/beta/dataPolicyOperations/x",
        "https://localhost:{foreign}/beta/dataPolicyOperations/x",
        "https://127.0.0.1:{foreign}/beta/dataPolicyOperations/x",
    ],
)
def test_a_foreign_host_never_sees_the_bearer_token(
    tls: TlsFiles, receivers: list[Receiver], location: str
):
    foreign = _receiver(receivers, tls, answer=200, body=b'{"status": "running"}')
    graph = _receiver(receivers, tls, answer=202)
    crafted = location.format(foreign=foreign.port, graph=graph.port)
    graph.extra_headers = {"Location": crafted}
    client = _graph_client(graph)
    with pytest.raises(GraphError) as submitted:
        client.submit_export("6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b", "https://acct/c?sig=x")
    assert submitted.value.code == "ForeignLocation"
    # The same URL read back from a tampered task hub: judged again before the poll.
    with pytest.raises(GraphError) as polled:
        client.get_operation(crafted)
    assert polled.value.code == "ForeignLocation"
    assert foreign.seen == []
    assert all(
        "authorization" not in seen or seen["path"].startswith("/beta/users") for seen in graph.seen
    )


def test_the_configured_origin_still_gets_its_polls(tls: TlsFiles, receivers: list[Receiver]):
    graph = _receiver(receivers, tls, answer=200, body=json.dumps({"status": "running"}).encode())
    client = _graph_client(graph)
    operation = client.get_operation(f"https://127.0.0.1:{graph.port}/beta/dataPolicyOperations/o")
    assert operation.status == "running"
    assert graph.seen[0]["authorization"] == f"Bearer {TOKEN}"
