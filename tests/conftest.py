"""What every tier shares: the app's functions (listed once per process), the replay driver's way
to them, the one seam of the composition root (``swap``) and the e2e option
``--graph-api-version`` (pytest registers options from the root conftest only).

The offline host's building blocks (TLS, Azurite, identity, Graph) are fixtures in
``tests/fixtures/``, imported by the conftest of each tier that uses them: collecting the unit
tests starts and imports no emulator (tests/unit/test_tiers.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dsr_export import composition
from tests import replay
from testsupport.replay import user_functions


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--graph-api-version",
        choices=("beta", "v1.0"),
        default="beta",
        help="GRAPH_API_VERSION of every end-to-end host (default beta, the app's default); "
        "tests/e2e/test_pipeline.py runs its Graph-facing tests under the other one as well",
    )


@pytest.fixture(scope="session")
def app_functions() -> tuple[Any, ...]:
    """Every function ``function_app`` registers, as the worker lists them.

    ``app.get_functions()`` may run once per process (a second call raises in azure-functions
    1.26): this fixture is that one call, and every test takes the app's functions from it.
    """
    from function_app import app

    return tuple(app.get_functions())


@pytest.fixture(scope="session")
def user_function(app_functions: tuple[Any, ...]) -> Callable[[str], Any]:
    """The worker's entry point of the app's function called ``name``:
    ``user_function("get_dsr").client_function(req=..., client=...)``."""
    entries = user_functions(app_functions)

    def lookup(name: str) -> Any:
        if name not in entries:
            raise LookupError(f"function_app registers no {name!r}; it has {sorted(entries)}")
        return entries[name]

    return lookup


@pytest.fixture(autouse=True)
def _drivers_find_the_app(request: pytest.FixtureRequest) -> Iterator[None]:
    """``tests.replay.Driver(name, input)`` takes its orchestrator from ``user_function``,
    requested only when the test builds a Driver (a test that builds none imports no app)."""
    with replay.entry_points(lambda: request.getfixturevalue("user_function")):
        yield


@pytest.fixture
def swap() -> Iterator[Callable[..., None]]:
    """Swap parts of the composition root for one test: ``swap(clock=lambda: T0)``.

    The one seam tests use to replace the clock, the credential or a client (see
    :func:`dsr_export.composition.override`); everything is restored afterwards.
    """
    with contextlib.ExitStack() as stack:

        def use(**parts: Any) -> None:
            stack.enter_context(composition.override(**parts))

        yield use
