"""The HTTP layer of the offline Functions host: a threaded loopback server that parses and
refuses requests as Kestrel does, reads bodies within the host's limit, and writes replies.

Split from ``devhost/triggers/http.py`` along its seams (issue 18); the host's behaviour is
described there. Nothing here knows routes, keys or functions: a request goes to ``dispatch``
and its ``Reply`` is written back.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import azure.functions as func

log = logging.getLogger("devhost.functions")

#: The Functions host's request body limit (``ScriptConstants.DefaultMaxRequestBodySize``).
MAX_BODY_BYTES = 104_857_600
#: The app setting that changes it, as in the Functions host (a whole number of bytes).
BODY_SIZE_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
#: Kestrel's defaults, which the Functions host keeps: the request line including its CRLF, and
#: the header section (each line with its CRLF).
MAX_REQUEST_LINE_BYTES = 8192
MAX_REQUEST_HEADERS_BYTES = 32_768
FUNCTION_KEY_HEADER = "x-functions-key"
FUNCTION_KEY_QUERY = "code"


def body_size_limit(env: Mapping[str, str]) -> int:
    """The body limit in force: ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` when it is a number."""
    try:
        return int(env.get(BODY_SIZE_LIMIT_SETTING, ""))
    except ValueError:
        return MAX_BODY_BYTES


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class ThreadedServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default (5) drops bursts of connections for a second


def json_reply(status: int, body: Any, headers: Sequence[tuple[str, str]] = ()) -> Reply:
    content = [("Content-Type", "application/json; charset=utf-8"), *headers]
    return Reply(status, content, json.dumps(body).encode())


def text_reply(status: int, text: str) -> Reply:
    return Reply(status, [("Content-Type", "text/plain; charset=utf-8")], text.encode())


def presented_key(headers: Mapping[str, str], query: Sequence[tuple[str, str]]) -> str | None:
    """The key the host checks: the header whenever it is sent, else the first ``code``."""
    if FUNCTION_KEY_HEADER in headers:
        return headers[FUNCTION_KEY_HEADER]
    return next((value for name, value in query if name == FUNCTION_KEY_QUERY), None)


def to_reply(result: Any) -> Reply:
    """Converts the function's return value as the worker's `http` output converter does."""
    if isinstance(result, str):
        return Reply(200, [("Content-Type", "text/plain; charset=utf-8")], result.encode())
    if result is None:
        return Reply(HTTPStatus.NO_CONTENT)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"HTTP function returned {type(result).__name__}, not an HttpResponse")
    headers = [(str(k), str(v)) for k, v in result.headers.items()]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mimetype = str(result.mimetype)
        charset = str(result.charset)
        ct = f"{mimetype}; charset={charset}" if mimetype.startswith("text/") else mimetype
        headers.append(("Content-Type", ct))
    return Reply(int(result.status_code), headers, result.get_body() or b"")


_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


Dispatch = Callable[[str, str, Mapping[str, str], Callable[[], bytes]], Reply]


@dataclass(frozen=True)
class _Target:
    """Where a server's handler sends each request, and the body limit it reads within."""

    dispatch: Dispatch
    max_body_bytes: int


def make_handler(
    dispatch: Dispatch, max_body_bytes: int = MAX_BODY_BYTES
) -> type[BaseHTTPRequestHandler]:
    """The request handler class for one server: every request goes to ``dispatch``."""
    return type("Handler", (_Handler,), {"target": _Target(dispatch, max_body_bytes)})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections give their thread back
    server_version = "devhost-functions"
    target: ClassVar[_Target]

    def parse_request(self) -> bool:
        """Kestrel's request line and header limits on top of the stdlib's parsing."""
        if len(self.raw_requestline) > MAX_REQUEST_LINE_BYTES:
            self.requestline = self.command = self.request_version = ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        if not super().parse_request():
            return False
        refusal = _header_refusal(self.headers.items())
        if refusal is not None:
            self.send_error(refusal)
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A refusal of the HTTP layer itself, the way Kestrel writes one: the status, an
        empty body, the connection closed (the stdlib would send an HTML page)."""
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def __getattr__(self, name: str) -> Any:
        # Kestrel takes any method token to routing (which answers 404 where none fits);
        # the stdlib would answer 501 for a method without a do_ handler.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _handle(self) -> None:
        headers = _joined_headers(self.headers.items())
        body_read = False

        def read_body() -> bytes:
            nonlocal body_read
            body_read = True
            return _read_body(self.rfile, headers, self.target.max_body_bytes)

        try:
            reply = self.target.dispatch(self.command.upper(), self.path, headers, read_body)
        except _BodyError as error:
            reply = Reply(error.status)
            self.close_connection = True
        except Exception:
            log.exception("devhost HTTP dispatch failed; answering 500")
            reply = Reply(HTTPStatus.INTERNAL_SERVER_ERROR)
            self.close_connection = True
        if not body_read and _may_have_body(headers):
            self.close_connection = True  # an unread body would be read as the next request
        _write(self, reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the access log would print paths and query strings (keys in `code`)."""

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


def _header_refusal(items: Iterable[tuple[str, str]]) -> HTTPStatus | None:
    """Kestrel's refusal of a header section: too large (431), or a Content-Length that is not
    a number (400); None when the headers pass."""
    pairs = list(items)
    if sum(len(name) + len(value) + 4 for name, value in pairs) > MAX_REQUEST_HEADERS_BYTES:
        return HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
    length = next((v for n, v in pairs if n.lower() == "content-length"), None)
    if length is not None and not (length.isascii() and length.strip().isdigit()):
        return HTTPStatus.BAD_REQUEST
    return None


def _joined_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers by lower-case name; a repeated header's values joined with ``, ``."""
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _may_have_body(headers: Mapping[str, str]) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


def _read_body(rfile: io.BufferedIOBase, headers: Mapping[str, str], max_body_bytes: int) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(rfile, max_body_bytes)
    try:
        length = int(headers.get("content-length", "0") or "0")
    except ValueError:
        raise _BodyError(HTTPStatus.BAD_REQUEST) from None
    if length < 0:
        raise _BodyError(HTTPStatus.BAD_REQUEST)
    if length > max_body_bytes:
        raise _BodyError(_BODY_TOO_LARGE)
    return rfile.read(length) if length else b""


def _read_chunked(rfile: io.BufferedIOBase, max_body_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = rfile.readline(1024).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise _BodyError(HTTPStatus.BAD_REQUEST) from None
        if size == 0:
            while rfile.readline(1024).strip():
                pass  # trailers
            return b"".join(chunks)
        total += size
        if total > max_body_bytes:
            raise _BodyError(_BODY_TOO_LARGE)
        chunks.append(rfile.read(size))
        rfile.readline(1024)


def _write(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    handler.send_response(reply.status)
    for name, value in reply.headers:
        if name.lower() not in _HOP_BY_HOP:
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(reply.body)))
    if handler.close_connection:
        handler.send_header("Connection", "close")
    handler.end_headers()
    try:
        if handler.command != "HEAD" and reply.body:
            handler.wfile.write(reply.body)
        handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True  # the caller gave up; nothing left to tell it


#: What the Functions host answers for a body over its limit (azure-functions-host#10519).
_BODY_TOO_LARGE = HTTPStatus.INTERNAL_SERVER_ERROR


class _BodyError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
