"""schemathesis against the OpenAPI document the app serves, on an offline host of its own.

The document is read from ``GET /api/openapi.json`` (with the function key, as a ticketing
system would) and every operation in it is exercised: the documented examples, coverage of
each constraint's edges, generated data valid and invalid, and stateful sequences along the
links schemathesis infers (submit, then read). Every check runs, but for the exceptions named in
``CONFIG`` and ``EXCLUDED_CHECKS``, each with its reason.

Generated submissions start real DSRs, so the run gets a host with its own Azurite, Graph
simulator, identity endpoint and task hub: nothing it starts can reach another test's state.
It is bounded by examples per operation (not by time: schemathesis' ``--max-time`` repeats
fuzzing until the budget is spent), seeded, single-worker, and capped in wall-clock time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import Azurite
from devhost.durable import FastClock
from devhost.graph import GraphSimulator
from devhost.tls import TlsFiles
from intake.http_api import OPENAPI_PATH
from tests.e2e.host import (
    EXPORT_DURATION,
    FUNCTION_KEY,
    GRAPH_ROLES,
    SPEED,
    HostProcess,
    host_env,
    identity_with_roles,
    note_personal,
)

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

#: Test cases per operation and phase: about 500 in all, half a minute.
MAX_EXAMPLES = 25
SEED = 20261201
#: The whole run's ceiling; it takes a fraction of it.
RUN_TIMEOUT_SECONDS = 240
#: Every operation but the document itself (schemathesis does not test the schema's own URL).
OPERATIONS = (
    sum(
        method in {"get", "put", "post", "delete", "patch"}
        for item in json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))["paths"].values()
        for method in item
    )
    - 1
)
PHASES = {"examples", "coverage", "fuzzing", "stateful"}
EXCLUDED_CHECKS = {
    # It expects 405 for a method an operation does not declare. The Functions host answers
    # 404 (each function's route carries an HttpMethodRouteConstraint, so a wrong method is no
    # route: azure-functions-host#10098) before the app runs; the offline host answers the same.
    "unsupported_method",
}
#: Per-operation settings (schemathesis.toml).
CONFIG = """\
# positive_data_acceptance: a request valid under the schema must not get a 4xx other than
# 401/403/404/409. Two operations also answer 400 to schema-valid data, by rules no JSON
# Schema can state, which the document describes in prose:
#  - submitDsr: callbackUrl must be on this deployment's CALLBACK_ALLOWED_HOSTS, and receivedAt
#    within RECEIVED_AT_MAX_AGE_DAYS before the service's clock and at most 5 minutes after it;
#  - listDsrs: continuationToken must be one the service issued (opaque, keyset paging).
[[operations]]
include-operation-id = ["submitDsr", "listDsrs"]
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "400", "401", "403", "404", "409",
]

# negative_data_rejection: schemathesis's own list of rejections, plus 413. A schema-violating
# review can be refused for its size (the 16 KiB body limit, documented as 413) before its
# content is read: that is a rejection too.
[[operations]]
include-operation-id = ["reviewPackage"]
checks.negative_data_rejection.expected-statuses = [
  "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx",
]
"""


@pytest.fixture(scope="module")
def fuzz_host(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[HostProcess]:
    """A fresh host and fresh services: the DSRs the run starts stay in its own task hub,
    storage and Graph."""
    clock = FastClock(SPEED)
    with (
        Azurite(tls_files) as azurite,
        GraphSimulator(
            tls_files, clock=clock.now, export_duration=EXPORT_DURATION, seed=13, tick_interval=0.2
        ) as graph,
        identity_with_roles(graph, GRAPH_ROLES) as identity,
    ):
        process = HostProcess(
            tmp_path_factory.mktemp("fuzz-host"), host_env(azurite, identity, graph, tls_files)
        )
        process.start()
        try:
            yield process
        finally:
            process.stop()


def _documented_upns() -> list[str]:
    spec = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    media = spec["paths"]["/exports"]["post"]["requestBody"]["content"]["application/json"]
    users = [str(example["value"]["user"]) for example in media["examples"].values()]
    return [user for user in users if "@" in user]


def test_schemathesis_finds_no_fault_in_the_served_document(
    fuzz_host: HostProcess, tmp_path: Path
) -> None:
    # The examples phase sends the documented UPNs: the session's scan then checks that this
    # host's custom statuses, outputs and log never give them back.
    note_personal(*_documented_upns())
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    report = tmp_path / "schemathesis.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{fuzz_host.api}/openapi.json",
        "--header",
        f"x-functions-key: {FUNCTION_KEY}",
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(sorted(EXCLUDED_CHECKS)),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        # The key comes from --header; generated keys or bearer tokens would only test the
        # host's 401, which the ignored_auth check probes on its own.
        "--generation-with-security-parameters",
        "false",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "120"}
    run = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12_000:]
    result: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    cases = result["test_cases"]
    print(
        f"schemathesis {result['schemathesis_version']}: {result['running_time']:.1f}s, "
        f"{result['operations']['tested']} operations, {cases['generated']} test cases, "
        f"{cases['with_failures']} failing, seed {result['seed']}"
    )
    # Not a vacuous pass: every operation and every phase ran, and found nothing.
    assert result["complete"], output[-4_000:]
    assert result["stop_reason"] == "completed", output[-4_000:]
    assert result["operations"]["tested"] == OPERATIONS, result["operations"]
    assert result["operations"]["errored"] == 0, output[-4_000:]
    ran = {name for name, phase in result["phases"].items() if phase["status"] == "success"}
    assert ran == PHASES, result["phases"]
    assert cases["generated"] > 20 * OPERATIONS, cases
    assert result["failures"] == [], output[-12_000:]
    assert result["errors"] == [], output[-12_000:]
