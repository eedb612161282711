"""HTTP trigger routes: ASP.NET-style route templates, their constraints and precedence.

Split from ``devhost/triggers/http.py`` along its seams (issue 18): what a route template matches
is independent of how a request reaches it. Behaviour follows the Functions host: literal
segments before constrained parameters before plain, optional and catch-all ones; the values
handed to the function are percent-decoded; constraints the host does not know are accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

from devhost.triggers.common import FunctionSpec


@dataclass(frozen=True)
class _Param:
    name: str
    group: str
    constraints: tuple[str, ...]
    optional: bool
    default: str | None
    catch_all: bool


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled route template such as `exports/{requestId:guid}/{part?}`."""

    template: str
    regex: re.Pattern[str]
    params: tuple[_Param, ...]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for `path` (the part after the prefix, still percent-encoded)."""
        found = self.regex.fullmatch("/" + path.strip("/") if path.strip("/") else "")
        if found is None:
            return None
        values: dict[str, str] = {}
        for param in self.params:
            raw = found.group(param.group)
            if raw is None or raw == "":
                if param.default is not None:
                    values[param.name] = param.default
                elif param.catch_all:
                    values[param.name] = ""
                continue
            value = unquote(raw)
            if not all(_constraint_ok(c, value) for c in param.constraints):
                return None
            values[param.name] = value
        return values


def compile_route(template: str) -> RouteTemplate:
    """Compiles an ASP.NET route template; unknown constraints are accepted, not enforced."""
    segments = [s for s in template.strip("/").split("/") if s != ""]
    pattern: list[str] = []
    params: list[_Param] = []
    precedence: list[int] = []
    for index, segment in enumerate(segments):
        parts = _split_segment(segment)
        if len(parts) == 1 and isinstance(parts[0], tuple):
            param = _parse_param(parts[0][0], f"g{len(params)}")
            if param.catch_all and index != len(segments) - 1:
                raise ValueError(f"catch-all parameter must be last in route {template!r}")
            params.append(param)
            if param.catch_all:
                pattern.append(f"(?:/(?P<{param.group}>.*))?")
                precedence.append(4)
            elif param.optional or param.default is not None:
                pattern.append(f"(?:/(?P<{param.group}>[^/]+))?")
                precedence.append(3)
            else:
                pattern.append(f"/(?P<{param.group}>[^/]+)")
                precedence.append(1 if param.constraints else 2)
            continue
        piece = ["/"]
        has_param = False
        for part in parts:
            if isinstance(part, str):
                piece.append(re.escape(part))
            else:
                param = _parse_param(part[0], f"g{len(params)}")
                if param.catch_all or param.optional:
                    raise ValueError(f"optional or catch-all parameter inside {segment!r}")
                params.append(param)
                piece.append(f"(?P<{param.group}>[^/]+?)")
                has_param = True
        pattern.append("".join(piece))
        precedence.append(1 if has_param else 0)
    regex = re.compile("".join(pattern), re.IGNORECASE)
    return RouteTemplate(template, regex, tuple(params), tuple(precedence))


def _split_segment(segment: str) -> list[str | tuple[str]]:
    """Splits a segment into literals and `{...}` parameter bodies (tuples), honouring `{{`."""
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "{" and segment[i : i + 2] == "{{":
            literal.append("{")
            i += 2
        elif char == "}" and segment[i : i + 2] == "}}":
            literal.append("}")
            i += 2
        elif char == "{":
            j = _closing_brace(segment, i + 1)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((segment[i + 1 : j].replace("{{", "{").replace("}}", "}"),))
            i = j + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts


def _closing_brace(segment: str, start: int) -> int:
    """The index of the ``}`` that closes the parameter opened before ``start``: braces inside
    a constraint's parentheses, and an escaped ``}}`` in a regex, do not close it."""
    depth, j = 0, start
    while j < len(segment):
        if segment[j] == "(":
            depth += 1
        elif segment[j] == ")":
            depth -= 1
        elif segment[j] == "}" and depth == 0:
            if segment[j : j + 2] != "}}":
                return j
            j += 1  # escaped brace inside a regex constraint
        j += 1
    raise ValueError(f"unbalanced '{{' in route segment {segment!r}")


def _parse_param(body: str, group: str) -> _Param:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    pieces: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(body):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == ":" and depth == 0:
            pieces.append(body[start:i])
            start = i + 1
    pieces.append(body[start:])
    optional = pieces[-1].endswith("?")
    if optional:
        pieces[-1] = pieces[-1][:-1]
    name, default = pieces[0], None
    if "=" in name:
        name, default = name.split("=", 1)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
        raise ValueError(f"bad route parameter name {name!r}")
    return _Param(name, group, tuple(pieces[1:]), optional, default, catch_all)


_GUID = re.compile(r"[{(]?[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}[})]?")


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_integer(value: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", value) is not None


def _is_number(value: str) -> bool:
    return _number(value) is not None


def _in_range(kind: str, args: list[str], value: str) -> bool:
    number = _number(value)
    if number is None:
        return False
    floor = float(args[0]) if kind in ("min", "range") else -math.inf
    ceiling = float(args[-1]) if kind in ("max", "range") else math.inf
    return floor <= number <= ceiling


#: Constraints on the value alone.
_PLAIN: dict[str, Callable[[str], bool]] = {
    "int": _is_integer,
    "long": _is_integer,
    "float": _is_number,
    "double": _is_number,
    "decimal": _is_number,
    "bool": lambda v: v.lower() in ("true", "false"),
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "guid": lambda v: _GUID.fullmatch(v) is not None,
    "datetime": _is_datetime,
}

#: Constraints with arguments, ``minlength(3)``: each takes the arguments and the value.
_WITH_ARGS: dict[str, Callable[[list[str], str], bool]] = {
    "minlength": lambda a, v: len(v) >= int(a[0]),
    "maxlength": lambda a, v: len(v) <= int(a[0]),
    "length": lambda a, v: int(a[0]) <= len(v) <= int(a[-1]),
    "min": lambda a, v: _in_range("min", a, v),
    "max": lambda a, v: _in_range("max", a, v),
    "range": lambda a, v: _in_range("range", a, v),
}


def _constraint_ok(constraint: str, value: str) -> bool:
    """Whether ``value`` meets one route constraint, as ASP.NET's inline constraints read it:
    one table per shape (plain, with arguments, regex); an unknown constraint or ``required``
    holds, as this host does not enforce what it does not know."""
    found = re.fullmatch(r"(\w+)(?:\((.*)\))?", constraint, re.DOTALL)
    if found is None:
        return True
    kind, arg = found.group(1).lower(), found.group(2)
    if kind in _PLAIN:
        return _PLAIN[kind](value)
    if kind == "regex":
        return arg is None or re.search(arg, value, re.IGNORECASE) is not None
    args = [a.strip() for a in arg.split(",")] if arg is not None else []
    if kind in _WITH_ARGS and args:
        return _WITH_ARGS[kind](args, value)
    return True


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    template: RouteTemplate
    methods: frozenset[str] | None
    auth_level: str

    @classmethod
    def from_spec(cls, spec: FunctionSpec) -> HttpRoute:
        trigger = spec.trigger
        methods = trigger.get("methods")
        return cls(
            spec=spec,
            template=compile_route(str(trigger.get("route") or spec.name)),
            methods=frozenset(str(m).upper() for m in methods) if methods else None,
            auth_level=str(trigger.get("authLevel") or "function").lower(),
        )


def routes_for(specs: Iterable[FunctionSpec]) -> list[HttpRoute]:
    return [HttpRoute.from_spec(s) for s in specs if s.trigger_type == "httpTrigger"]


__all__ = ["HttpRoute", "RouteTemplate", "compile_route", "routes_for"]
