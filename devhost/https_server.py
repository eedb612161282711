"""The local HTTPS services (Graph, Entra) are reached over TLS only, and a client that stalls
must not stall the others.

Each TLS handshake runs in its request's thread (wrapping the listening socket would run it
in the accept loop, where one silent client blocks everybody), and a fault can drop the
connection without an answer, as a failing front end does. The server knows nothing of Graph
or Entra (it sits outside ``devhost/graph`` so that a local Entra tenant needs no Graph
simulator): it hands each request to a ``Handle`` and writes back the ``Reply``.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from devhost._state import PortInUseError
from devhost.tls import TlsFiles, server_ssl_context


@dataclass
class Reply:
    """What a handler answers; ``drop`` closes the connection without an answer (a fault)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    error: tuple[str, str] | None = None  # (code, message), rendered by the service's router


# (method, request target, headers with lower-case names, body) -> what to answer
Handle = Callable[[str, str, dict[str, str], bytes], Reply]


class HttpsServer:
    """Serves ``handle`` on a loopback port, in a background thread, until stopped.

    ``port=0`` takes a free one; a given port that is taken raises ``PortInUseError`` (a
    restarted simulator must come back where its operation URLs point, or not at all).
    """

    def __init__(self, tls: TlsFiles, handle: Handle, *, port: int = 0) -> None:
        try:
            self._server = _TlsServer(server_ssl_context(tls), _handler_for(handle), port)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(port, f"port {port} is in use") from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="graph-sim", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class _TlsServer(ThreadingHTTPServer):
    """Threaded HTTPS server doing each TLS handshake in the request's thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self, context: ssl.SSLContext, handler: type[BaseHTTPRequestHandler], port: int
    ) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self._context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        # An answer goes out as two writes (head, body): with Nagle on, the body waits for the
        # client's delayed ACK of the head, some 40 ms a request.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self._context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def shutdown_request(self, request: Any) -> None:
        with contextlib.suppress(OSError):
            request.close()


def _handler_for(handle: Handle) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Microsoft-IIS/10.0"
        sys_version = ""

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = handle(self.command, self.path, headers, body)
            if reply.drop:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the router logs each request once, with signatures redacted."""

    return Handler
