"""``python -m devhost serve|demo|queue|screenshots``: the offline host's command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import signal
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

from devhost._state import PortInUseError, StateFileError, StateInUseError
from devhost.demo import run_demo
from devhost.demo_tenants import run_tenants_demo
from devhost.queue_cli import DEFAULT_QUEUE, QueueToolError, peek_messages, send_message
from devhost.stack import REPO_ROOT, DevStack, StackOptions

DEFAULT_STATE = REPO_ROOT / ".devhost"
#: A user the Graph simulator's directory holds (Adele Vance), for the printed curl line.
SAMPLE_USER = "6e7b768e-07e2-4810-8459-485f84f8f204"
#: Loggers that write a line per HTTP request or token: WARNING unless ``serve --verbose``.
#: (The app keeps the first at WARNING itself, in Azure as here; the host does it too, so that
#: its own SDK calls, the Graph simulator's storage calls among them, stay quiet as well.)
QUIET_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run function_app.py offline until Ctrl-C")
    serve.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071)")
    serve.add_argument("--function-key", help="function key (default: random, printed)")
    serve.add_argument("--speed", type=float, default=1.0, help="clock speed-up (default 1)")
    serve.add_argument("--graph", metavar="URL", help="use this Graph instead of the simulator")
    serve.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE,
        help="task hub, Azurite data, the simulator's operations, ports, clock and "
        "certificates (default .devhost/)",
    )
    serve.add_argument("--settings", type=Path, help="local.settings.json to read")
    serve.add_argument("--sas-mode", choices=["stored-policy", "user-delegation"])
    serve.add_argument(
        "--export-days",
        type=float,
        default=3.0,
        help="how long a simulated export takes, in Graph days (default 3)",
    )
    serve.add_argument(
        "--verbose",
        action="store_true",
        help="also log every Graph request, orchestration episode, token and SDK HTTP call",
    )

    serve.add_argument(
        "--no-platform-auth",
        action="store_true",
        help="no App Service authentication in front of the app (the app still validates "
        "callers' Entra tokens itself; WEBSITE_AUTH_ENABLED stays unset)",
    )

    rotate = commands.add_parser(
        "rotate-key", help="make the running host's local Entra tenant sign with a new key"
    )
    rotate.add_argument(
        "--drop-previous",
        action="store_true",
        help="stop publishing the old key at once (default: kept published for a grace)",
    )
    rotate.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE,
        help="the running host's state directory (default .devhost/)",
    )

    demo = commands.add_parser("demo", help="run several DSRs end to end and report")
    demo.add_argument("--state", type=Path, help="state directory (default: a fresh temp dir)")
    demo.add_argument(
        "--tenants",
        action="store_true",
        help="instead: one deployment serving two customer tenants (TENANCY=multi), isolated",
    )

    queue = commands.add_parser("queue", help="send a message to the running host's queue")
    queue_commands = queue.add_subparsers(dest="queue_command", required=True)
    send = queue_commands.add_parser(
        "send", help="put FILE's content on a queue, encoded as host.json says (base64)"
    )
    send.add_argument("file", help="the message body, sent as it is ('-': standard input)")
    send.add_argument(
        "--raw",
        action="store_true",
        help="send it unencoded, as a producer that forgot the base64 (it gets poisoned)",
    )
    peek = queue_commands.add_parser("peek", help="print the messages on a queue, decoded")
    peek.add_argument("--count", type=int, default=32, help="at most this many (max 32)")
    for sub in (send, peek):
        sub.add_argument("--queue", default=DEFAULT_QUEUE, help=f"(default {DEFAULT_QUEUE})")
        sub.add_argument(
            "--state",
            type=Path,
            default=DEFAULT_STATE,
            help="the running host's state directory (default .devhost/)",
        )

    shots = commands.add_parser(
        "screenshots", help="photograph a sample subject's package in headless Chromium"
    )
    shots.add_argument("--out", type=Path, default=REPO_ROOT / "docs", help="(default docs/)")
    shots.add_argument("--language", default="en", choices=("en", "de"))

    args = parser.parse_args(argv)
    _configure_logging(args.command, verbose=getattr(args, "verbose", False))
    if args.command == "screenshots":
        from devhost.screenshots import run

        return run(args.out, args.language)
    if args.command == "demo":
        act = run_tenants_demo if args.tenants else run_demo
        if args.state:
            return act(args.state)
        with tempfile.TemporaryDirectory(prefix="dsr-demo-") as state:
            return act(Path(state))
    if args.command == "queue":
        return _queue(args)
    if args.command == "rotate-key":
        return _rotate_key(args.state, keep_previous=not args.drop_previous)
    return _serve(args)


def _rotate_key(state: Path, *, keep_previous: bool) -> int:
    """``POST /.auth/devhost/rotate`` on the host running on ``state``, with its master key."""
    import requests

    try:
        endpoints = json.loads((state / "endpoints.json").read_text(encoding="utf-8"))
        url, master = endpoints["rotateEndpoint"], endpoints["masterKey"]
    except (OSError, ValueError, KeyError) as error:
        print(f"devhost: no running host with a local tenant on {state} ({error})", file=sys.stderr)
        return 1
    if not url:
        print("devhost: that host has no local Entra tenant", file=sys.stderr)
        return 1
    answer = requests.post(
        url, json={"keepPrevious": keep_previous}, headers={"x-functions-key": master}, timeout=30
    )
    if answer.status_code != 200:
        print(f"devhost: rotation refused ({answer.status_code})", file=sys.stderr)
        return 1
    published = [key["kid"] for key in answer.json()["keys"]["keys"]]
    print(f"signing key {answer.json()['kid']}; published: {', '.join(published)}")
    return 0


def _configure_logging(command: str, *, verbose: bool) -> None:
    """``serve`` logs at INFO, without the per-request lines unless ``--verbose``; the other
    commands only errors."""
    if command != "serve":
        logging.basicConfig(level=logging.ERROR, format=_FORMAT)
        return
    logging.basicConfig(level=logging.INFO, format=_FORMAT)
    if verbose:
        logging.getLogger("devhost").setLevel(logging.DEBUG)
        return
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _serve(args: argparse.Namespace) -> int:
    options = StackOptions(
        state_dir=args.state,
        port=args.port,
        function_key=args.function_key,
        speed=args.speed,
        graph_url=args.graph,
        settings_file=args.settings,
        sas_mode=args.sas_mode,
        export_duration=timedelta(days=args.export_days),
        platform_auth=not args.no_platform_auth,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        with DevStack(options) as stack:
            sys.stderr.flush()  # the start-up log first: the banner is the last thing printed
            print(banner(stack), flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stopped.wait()
    except (StateFileError, StateInUseError, PortInUseError) as error:
        print(f"devhost: {error}", file=sys.stderr)
        return 1
    return 0


def banner(stack: DevStack) -> str:
    """``DEVHOST READY {endpoints}``, then what a person needs, curl lines that work included."""
    endpoints = stack.endpoints()
    api = stack.api_url
    header = shlex.quote(f"x-functions-key: {stack.function_key}")
    body = shlex.quote(json.dumps({"requestId": "LOCAL-1", "user": SAMPLE_USER}))
    state = "" if stack.state_dir == DEFAULT_STATE.resolve() else f" --state {stack.state_dir}"
    graph = endpoints["graph"]
    if stack.graph is not None:
        graph = f"{graph} (simulator; admin API {graph}/_sim/operations, /_sim/stats)"
    return "\n".join(
        [
            "DEVHOST READY " + json.dumps(endpoints),
            "",
            f"  API           {api}",
            f"  host key      {stack.function_key}  (x-functions-key or ?code=; every function)",
            f"  master key    {stack.keys.master_key if stack.keys else '-'}  (admin API:"
            f" {api.removesuffix('/api')}/admin/host/keys, /admin/functions/NAME/keys)",
            f"  Graph         {graph}",
            f"  Entra tenant  {endpoints.get('authority') or '-'}  (caller tokens: POST"
            f" {endpoints.get('tokenEndpoint') or '-'}; new signing key: {_python()} -m devhost"
            f" rotate-key{state})",
            f"  state         {stack.state_dir}",
            "",
            "  Submit a DSR, then read its status:",
            f"    curl -sS -X POST {api}/exports -H {header} \\",
            "         -H 'content-type: application/json' \\",
            f"         -d {body}",
            f"    curl -sS {api}/exports/LOCAL-1 -H {header}",
            "  Or put a message on the dsr-requests queue:",
            f"    {_python()} -m devhost queue send FILE{state}",
            "",
            "  Ctrl-C stops the host; start the same command again and in-flight DSRs resume.",
        ]
    )


def _python() -> str:
    """This interpreter, as short as it can be said from here (``.venv/bin/python``)."""
    executable = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return shlex.quote(str(executable.relative_to(Path.cwd())))
    return shlex.quote(str(executable))


def _queue(args: argparse.Namespace) -> int:
    try:
        if args.queue_command == "send":
            body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
            message_id = send_message(args.state, body, args.queue, raw=args.raw)
            print(f"sent message {message_id} to queue {args.queue} ({len(body)} bytes)")
        else:
            for text in peek_messages(args.state, args.queue, args.count):
                print(text)
    except (OSError, StateFileError, QueueToolError) as error:
        print(f"devhost queue: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
