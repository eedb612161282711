"""``python -m devhost serve`` as a person meets it: quiet by default, the READY banner last, and
the README's curl lines exactly what ``make serve`` prints (they work as printed)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from devhost.__main__ import DEFAULT_STATE, banner
from devhost.keys import KeyRing
from devhost.stack import REPO_ROOT, DevStack

README = REPO_ROOT / "README.md"


def _fake_stack(api: str, key: str, state: Path = DEFAULT_STATE) -> DevStack:
    endpoints = {"api": api, "functionKey": key, "graph": "https://127.0.0.1:1"}
    stack = SimpleNamespace(
        endpoints=lambda: endpoints,
        api_url=api,
        function_key=key,
        state_dir=state.resolve(),
        graph=object(),
        keys=KeyRing.generate(),  # the banner shows its master key; curl lines use function_key
    )
    return cast(DevStack, stack)


def _curl_block(text: str) -> list[str]:
    """The sh block of curl lines in the README's "Running the app locally"."""
    section = text.split("## Running the app locally", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    curls = [b for b in blocks if b.lstrip().startswith("curl")]
    assert len(curls) == 1
    return curls[0].rstrip("\n").splitlines()


def test_the_readme_curl_lines_are_what_make_serve_prints() -> None:
    printed = banner(_fake_stack("http://127.0.0.1:7071/api", "devkey")).splitlines()
    start = next(i for i, line in enumerate(printed) if line.strip().startswith("curl"))
    curls = printed[start : start + 4]
    assert [line[4:] for line in curls] == _curl_block(README.read_text(encoding="utf-8"))


def test_make_serve_passes_devkey_and_the_args() -> None:
    done = subprocess.run(
        ["make", "-n", "--always-make", "serve", "ARGS=--speed 1000 --port 7072"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if "-m devhost serve" in x)
    assert line.endswith(
        '-m devhost serve --function-key "${DEVHOST_FUNCTION_KEY:-devkey}" --speed 1000 --port 7072'
    )


def test_the_banner_starts_with_the_endpoints_and_quotes_the_key_for_the_shell() -> None:
    key = "a key with 'quotes'"
    text = banner(_fake_stack("http://127.0.0.1:9/api", key, Path("/tmp/elsewhere")))
    first, *rest = text.splitlines()
    assert first.startswith("DEVHOST READY ")
    assert json.loads(first.removeprefix("DEVHOST READY "))["functionKey"] == key
    post = " ".join(
        line.strip().rstrip("\\") for line in rest if "curl" in line or line.strip().startswith("-")
    )
    words = shlex.split(post)
    assert words[words.index("-H") + 1] == f"x-functions-key: {key}"
    assert any("queue send FILE --state /tmp/elsewhere" in line for line in rest)
    assert "Ctrl-C" in rest[-1]


def test_serve_keeps_the_per_request_loggers_at_warning_unless_verbose() -> None:
    probe = (
        "import json, logging, sys\n"
        "from devhost.__main__ import QUIET_LOGGERS, _configure_logging\n"
        "_configure_logging('serve', verbose=sys.argv[1] == 'v')\n"
        "names = [*QUIET_LOGGERS, 'devhost']\n"
        "print(json.dumps({n: logging.getLogger(n).getEffectiveLevel() for n in names}))\n"
    )

    def levels(mode: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-c", probe, mode],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return dict(json.loads(out))

    quiet = levels("q")
    assert quiet["azure.core.pipeline.policies.http_logging_policy"] == 30
    assert quiet["azure.identity"] == 30
    assert quiet["devhost"] == 20
    verbose = levels("v")
    assert verbose["devhost"] == 10
    assert verbose["azure.identity"] == 20
