"""``python -m devhost serve|demo``: the offline host's command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

from devhost.demo import run_demo
from devhost.stack import REPO_ROOT, DevStack, StackOptions


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
        default=REPO_ROOT / ".devhost",
        help="task hub, Azurite data and certificates (default .devhost/)",
    )
    serve.add_argument("--settings", type=Path, help="local.settings.json to read")
    serve.add_argument("--sas-mode", choices=["stored-policy", "user-delegation"])
    serve.add_argument(
        "--export-days",
        type=float,
        default=3.0,
        help="how long a simulated export takes, in Graph days (default 3)",
    )

    demo = commands.add_parser("demo", help="run several DSRs end to end and report")
    demo.add_argument("--state", type=Path, help="state directory (default: a fresh temp dir)")

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command == "serve" else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "demo":
        if args.state:
            return run_demo(args.state)
        with tempfile.TemporaryDirectory(prefix="dsr-demo-") as state:
            return run_demo(Path(state))
    return _serve(args)


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
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with DevStack(options) as stack:
        print("DEVHOST READY " + json.dumps(stack.endpoints()), flush=True)
        print(
            f"\n  curl -H 'x-functions-key: {stack.function_key}' {stack.api_url}/exports/<id>\n"
            "  Ctrl-C stops the host; state stays in "
            f"{options.state_dir} and in-flight DSRs resume on the next start.\n",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
