"""Every property path a resource declaration in infra/ can set, flattened for a check against
Azure's REST models (infra/scripts/rest_models.py, run by tests/infra/test_rest_models.py).

A declaration's body (pycep's parse tree, see :mod:`tests.infra.bicep_model`) becomes a map
from property paths (``("properties", "siteConfig", "minTlsVersion")``; ``"[]"`` stands for
any element of an array) to what is known of each:

* ``kinds``: object, array or value (more than one when branches disagree);
* ``literals``: the literal values it can take (both branches of every ``?:``, every
  ``@allowed`` value of a parameter, the JSON of ``loadJsonContent``);
* ``expression``: whether some value is only known at deploy time (a parameter without
  ``@allowed``, a resource property, a function call, an interpolated string);
* ``always``: whether it is set whenever its parent is (False when only a branch of a
  ``?:``, a ``union`` argument under a condition, or some elements of an array set it).

Every branch of every condition is explored at once, so the paths are what *any* parameter
combination can set: an unknown or read-only property under a condition is still seen.
Variables are resolved; parameters are not (their ``@allowed`` values stand for them). pycep
spells identifiers and string literals alike, so a string naming a variable, a parameter or a
loop variable is read as that name (see bicep_model).

The Bicep-level keys ``name``, ``parent``, ``scope`` and ``dependsOn`` are not part of the REST
body and are left out (``name`` is reported on its own: ``sites/config`` uses it to pick the
model).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra.bicep_model import INFRA, bicep_files, decorators, template

Path_ = tuple[str, ...]
BICEP_ONLY_KEYS = frozenset({"name", "parent", "scope", "dependsOn"})


@dataclass
class Info:
    """What one property path can hold."""

    kinds: set[str] = field(default_factory=set)
    literals: list[Any] = field(default_factory=list)
    expression: bool = False
    always: bool = True

    def add_literal(self, value: Any) -> None:
        if value not in self.literals:
            self.literals.append(value)

    def as_json(self) -> dict[str, Any]:
        return {
            "kinds": sorted(self.kinds),
            "literals": self.literals,
            "expression": self.expression,
            "always": self.always,
        }


Paths = dict[Path_, Info]


def _merge_into(target: Info, source: Info) -> None:
    target.kinds |= source.kinds
    for value in source.literals:
        target.add_literal(value)
    target.expression = target.expression or source.expression


def _alternatives(prefix: Path_, branches: list[Paths]) -> Paths:
    """One of several branches holds (``?:``, ``??``, the elements of an array): a path is
    ``always`` only if every branch where its parent exists sets it always."""
    present = [b for b in branches if prefix in b]
    merged: Paths = {}
    for branch in present:
        for path, info in branch.items():
            target = merged.setdefault(path, Info(always=True))
            _merge_into(target, info)
    for path, target in merged.items():
        if path == prefix:
            target.always = len(present) == len(branches) and all(b[prefix].always for b in present)
            continue
        parent = path[:-1]
        with_parent = [b for b in present if parent in b]
        target.always = all(path in b and b[path].always for b in with_parent)
    return merged


def _all_of(prefix: Path_, parts: list[Paths]) -> Paths:
    """Every part holds at once (``union``, ``concat``): a path is ``always`` if any part sets
    it always."""
    merged: Paths = {}
    for part in parts:
        for path, info in part.items():
            target = merged.setdefault(path, Info(always=False))
            _merge_into(target, info)
            target.always = target.always or info.always
    if prefix in merged:
        merged[prefix].always = all(prefix in p and p[prefix].always for p in parts)
    return merged


def _is_node(node: Mapping[str, Any], kind: str) -> bool:
    """Whether a dict is pycep's operator, function call or for-expression, not an object
    literal that has a property of that name (a scheduled query rule's `operator`)."""
    value = node.get(kind)
    if kind == "loop_type":
        return isinstance(value, dict) and "config" in node
    return len(node) == 1 and isinstance(value, dict) and "type" in value


class Flattener:
    """Flattens the bodies of one template (variables and parameters of that template)."""

    def __init__(self, doc: Mapping[str, Any], directory: Path) -> None:
        self.doc = doc
        self.directory = directory
        self.variables: Mapping[str, Any] = doc.get("variables", {})
        self.parameters: Mapping[str, Any] = doc.get("parameters", {})

    def _expression(self, prefix: Path_) -> Paths:
        return {prefix: Info(kinds={"value"}, expression=True)}

    def _literal(self, prefix: Path_, value: Any) -> Paths:
        """A JSON value (a literal, or loadJsonContent's file)."""
        if value is None:
            return {}
        if isinstance(value, dict):
            paths: Paths = {prefix: Info(kinds={"object"})}
            for key, item in value.items():
                paths.update(self._literal((*prefix, str(key)), item))
            return paths
        if isinstance(value, list):
            elements = [self._literal((*prefix, "[]"), item) for item in value]
            paths = _alternatives((*prefix, "[]"), elements) if elements else {}
            if (*prefix, "[]") in paths:
                paths[(*prefix, "[]")].always = True
            paths[prefix] = Info(kinds={"array"})
            return paths
        info = Info(kinds={"value"})
        info.add_literal(value)
        return {prefix: info}

    def _loop(
        self, detail: Mapping[str, Any], config: Any, prefix: Path_, scope: frozenset[str]
    ) -> Paths:
        """A ``[for ...]`` loop: an array whose elements may be none at all."""
        names = {detail.get("item_name"), detail.get("index_name")} - {None}
        inner = scope | {str(n) for n in names}
        paths = self.flatten(config, (*prefix, "[]"), inner)
        if (*prefix, "[]") in paths:
            paths[(*prefix, "[]")].always = False
        paths[prefix] = Info(kinds={"array"})
        return paths

    def flatten(self, node: Any, prefix: Path_ = (), scope: frozenset[str] = frozenset()) -> Paths:
        if node is None:
            return {}
        if isinstance(node, bool | int | float):
            return self._literal(prefix, node)
        if isinstance(node, str):
            return self._string(node, prefix, scope)
        if isinstance(node, list):
            elements = [self.flatten(item, (*prefix, "[]"), scope) for item in node]
            paths = _alternatives((*prefix, "[]"), elements) if elements else {}
            if (*prefix, "[]") in paths:
                paths[(*prefix, "[]")].always = True
            paths[prefix] = Info(kinds={"array"})
            return paths
        if _is_node(node, "loop_type"):
            return self._loop(node["loop_type"]["detail"], node["config"], prefix, scope)
        if _is_node(node, "operator"):
            op = node["operator"]
            operands = op.get("operands", {})
            if op["type"] == "conditional":
                branches = [
                    self.flatten(operands["true_value"], prefix, scope),
                    self.flatten(operands["false_value"], prefix, scope),
                ]
                return _alternatives(prefix, branches)
            if op["type"] == "coalesce":
                branches = [
                    self.flatten(operands["operand_1"], prefix, scope),
                    self.flatten(operands["operand_2"], prefix, scope),
                ]
                return _alternatives(prefix, branches)
            return self._expression(prefix)
        if _is_node(node, "function"):
            return self._function(node["function"], prefix, scope)
        paths = {prefix: Info(kinds={"object"})}
        for key, value in node.items():
            paths.update(self.flatten(value, (*prefix, key.strip("'")), scope))
        return paths

    def _string(self, node: str, prefix: Path_, scope: frozenset[str]) -> Paths:
        if node in scope or "${" in node:
            return self._expression(prefix)
        if node in self.variables:
            return self.flatten(self.variables[node]["value"], prefix, scope)
        if node in self.parameters:
            allowed = decorators(self.doc, node).get("allowed")
            if allowed:
                info = Info(kinds={"value"})
                for value in allowed:
                    info.add_literal(value)
                return {prefix: info}
            return self._expression(prefix)
        return self._literal(prefix, node)

    def _function(self, fn: Mapping[str, Any], prefix: Path_, scope: frozenset[str]) -> Paths:
        args = list(fn["parameters"].values())
        if fn["type"] == "union":
            return _all_of(prefix, [self.flatten(arg, prefix, scope) for arg in args])
        if fn["type"] == "concat":
            parts = [self.flatten(arg, prefix, scope) for arg in args]
            if all(prefix in p and p[prefix].kinds == {"array"} for p in parts):
                return _all_of(prefix, parts)
            return self._expression(prefix)
        if fn["type"] == "load_json_content" and isinstance(fn["parameters"]["file_path"], str):
            data = json.loads((self.directory / fn["parameters"]["file_path"]).read_text())
            return self._literal(prefix, data)
        return self._expression(prefix)


@dataclass(frozen=True)
class Declaration:
    """One ``resource`` declaration of a template, flattened."""

    file: str
    symbol: str
    type: str
    api_version: str
    existing: bool
    name: str | None
    paths: Paths

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "symbol": self.symbol,
            "type": self.type,
            "apiVersion": self.api_version,
            "existing": self.existing,
            "name": self.name,
            "paths": [
                {"path": list(path), **info.as_json()} for path, info in sorted(self.paths.items())
            ],
        }


def _unwrap(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The body inside pycep's ``if (...)`` and ``[for ...]`` wrappers."""
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def declarations(path: str | Path) -> list[Declaration]:
    """Every resource declaration of one template (a path under infra/, or absolute)."""
    doc = template(str(path))
    file = Path(INFRA / path)
    flattener = Flattener(doc, file.parent)
    found = []
    for symbol, resource in doc.get("resources", {}).items():
        config = resource["config"]
        loop_scope: frozenset[str] = frozenset()
        if "loop_type" in config:
            detail = config["loop_type"]["detail"]
            loop_scope = frozenset(
                str(n) for n in (detail.get("item_name"), detail.get("index_name")) if n
            )
        body = _unwrap(config)
        rest_body = {k: v for k, v in body.items() if k not in BICEP_ONLY_KEYS}
        name = body.get("name")
        name_paths = flattener.flatten(name, (), loop_scope) if name is not None else {}
        literal_name = None
        if () in name_paths and not name_paths[()].expression:
            literals = name_paths[()].literals
            literal_name = str(literals[0]) if len(literals) == 1 else None
        found.append(
            Declaration(
                file=str(path),
                symbol=symbol,
                type=resource["type"],
                api_version=resource["api_version"],
                existing=bool(resource.get("existing")),
                name=literal_name,
                paths=flattener.flatten(rest_body, (), loop_scope),
            )
        )
    return found


def all_declarations(files: Iterable[str] | None = None) -> list[Declaration]:
    return [
        d for path in (files if files is not None else bicep_files()) for d in declarations(path)
    ]
