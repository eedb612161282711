"""Every structured log call of the app, read from the source: the events it can name and
the fields it passes (wrappers such as the orchestrator's ``_log`` included). One scanner for
the tests that hold the code, the declared events and the queries together.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from dataclasses import dataclass

from tests.ops.kql_sources import ROOT

SOURCE_DIRS = ("activities", "orchestrations", "intake", "dsr_export")


@dataclass(frozen=True)
class Call:
    where: str
    events: tuple[str, ...]
    fields: frozenset[str]


def _names(node: ast.expr) -> tuple[str, ...] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, ast.IfExp):
        body, orelse = _names(node.body), _names(node.orelse)
        return None if body is None or orelse is None else body + orelse
    return None


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


@functools.cache
def calls() -> tuple[Call, ...]:
    """Every structured log call of the app: its possible event names and its keyword fields.

    A function that passes one of its parameters on to ``log_event`` as the event is a wrapper;
    its calls count, with the fields the wrapper adds. An event name that is neither a literal
    nor a wrapper's parameter fails: it could not be checked.
    """
    files = [ROOT / "function_app.py"]
    for folder in SOURCE_DIRS:
        files.extend(sorted((ROOT / folder).rglob("*.py")))
    trees = [(path, ast.parse(path.read_text(), str(path))) for path in files]
    wrappers, forwarding = _wrappers(tree for _, tree in trees)
    found = []
    for path, tree in trees:
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or _callee(call) not in wrappers:
                continue
            if call in forwarding:
                continue
            position, added = wrappers[str(_callee(call))]
            found.append(_checked(call, f"{path.relative_to(ROOT)}:{call.lineno}", position, added))
    return tuple(found)


_NOT_FIELDS = frozenset({"level", "logger"})


def _wrappers(
    trees: Iterable[ast.AST],
) -> tuple[dict[str, tuple[int, frozenset[str]]], set[ast.Call]]:
    """The functions that pass a parameter on as ``log_event``'s event (each with the position
    of that parameter and the fields it adds), and those forwarding calls themselves."""
    wrappers: dict[str, tuple[int, frozenset[str]]] = {"log_event": (0, frozenset())}
    forwarding: set[ast.Call] = set()
    for tree in trees:
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
            for call in ast.walk(fn):
                if not (isinstance(call, ast.Call) and _callee(call) == "log_event" and call.args):
                    continue
                first = call.args[0]
                if isinstance(first, ast.Name) and first.id in params:
                    added = frozenset(k.arg for k in call.keywords if k.arg) - _NOT_FIELDS
                    wrappers[fn.name] = (params.index(first.id), added)
                    forwarding.add(call)
    return wrappers, forwarding


def _checked(call: ast.Call, where: str, position: int, added: frozenset[str]) -> Call:
    """One log call, with its possible event names and fields; a call that cannot be checked
    fails here."""
    assert len(call.args) > position, f"{where}: no event name"
    names = _names(call.args[position])
    assert names is not None, f"{where}: the event name is not a literal"
    fields = frozenset(k.arg for k in call.keywords if k.arg) - _NOT_FIELDS
    assert all(k.arg for k in call.keywords), f"{where}: **fields cannot be checked"
    return Call(where, names, fields | added)
