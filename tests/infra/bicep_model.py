"""The Bicep in infra/, read without a Bicep compiler: pycep's parse trees and a small evaluator.

There is no Bicep compiler or Azure here, so the templates are read with ``pycep-parser`` and a
small evaluator for the expressions the templates use (variables, parameters, ``==``, ``!``,
``&&``, ``||``, ``?:``, ``??``, ``union``, ``concat``, ``empty``, ``contains``, ``split``,
``replace``). The
evaluator resolves a name only when it is a variable or a parameter given a value by the caller;
anything else (``storage.id``, ``listKeys()``) stays as pycep's parse tree, so a check can still
ask *what* it refers to. pycep spells an identifier and a string literal the same way
(``allowSharedKeyAccess: isStoredPolicy`` parses to the string ``"isStoredPolicy"``), which is
why names are only resolved against the template's own variables and parameters.

pycep gets the precedence of ``?:`` wrong when the condition is a ``!`` or a comparison:
``!a ? b : c`` parses as ``!(a ? b : c)``, and ``a == 'x' ? b : c`` as
``a == ('x' ? b : c)``. Checkov reads Bicep with pycep too. So the templates write such a
condition in parentheses, or turn it around (``empty(a) ? c : b``): Bicep means the same, and
every reader agrees.

Shared by the infra tests (tests/infra/test_*.py); it holds no test itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"

#: Built-in Azure role definition ids, checked against Microsoft's built-in roles list.
ROLE_IDS: dict[str, str] = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Durable Task Data Contributor": "0ad04412-c4d5-4796-b79c-f76d14c8d402",
}
ROLE_NAMES = {guid: name for name, guid in ROLE_IDS.items()}

#: Microsoft Graph application permissions (app role ids), from Graph's permissions reference.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_APP_ROLES = {
    "405a51b5-8d8d-430b-9842-8be4b0e9f324": "User.Export.All",
    "df021288-bdef-4463-88db-98f22de89214": "User.Read.All",
}

MODES = ("stored-policy", "user-delegation")
#: Where the task hub lives (main.bicep ``durableBackend``); the first is the default.
BACKENDS = ("azureStorage", "durableTaskScheduler")
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"


@functools.cache
def _parser() -> BicepParser:
    return BicepParser(cache=False)


@functools.cache
def template(path: str) -> dict[str, Any]:
    """The pycep parse tree of one file (path relative to infra/)."""
    return dict(_parser().parse(file_path=INFRA / path))


def bicep_files() -> list[str]:
    return sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep"))


def resources(doc: Mapping[str, Any], type_: str | None = None) -> dict[str, dict[str, Any]]:
    """Resources of a template, by symbolic name, optionally of one type."""
    found = doc.get("resources", {})
    return {k: v for k, v in found.items() if type_ is None or v["type"] == type_}


def body(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A resource's or module's body, without the ``if (...)`` wrapper pycep adds."""
    config = resource["config"]
    return dict(config["config"]) if "condition" in config else dict(config)


def condition(resource: Mapping[str, Any]) -> Any:
    """The ``if (...)`` condition, or True when the resource is unconditional."""
    return resource["config"].get("condition", True)


class Unresolved(str):
    """A name the evaluator could not resolve (a parameter the test gave no value)."""


def evaluate(node: Any, doc: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Any:
    """Evaluate the subset of Bicep expressions these templates use.

    ``params`` gives values to parameters; a parameter without one evaluates to
    :class:`Unresolved` with its name. Functions and property accessors other than ``union``
    are returned as their parse tree.
    """
    params = params or {}
    if node is None or isinstance(node, bool | int | float):
        return node
    if isinstance(node, str):
        return _name(node, doc, params)
    if isinstance(node, list):
        return [evaluate(item, doc, params) for item in node]
    if "operator" in node:
        op = node["operator"]
        rule = _OPERATORS.get(op["type"])
        if rule is None:
            return node
        return rule(op["type"], op.get("operands", {}), lambda n: evaluate(n, doc, params))
    if "function" in node:
        return _function(node, doc, params)
    # pycep keeps the quotes of quoted keys ('azd-service-name'); Bicep does not.
    return {key.strip("'"): evaluate(value, doc, params) for key, value in node.items()}


def _name(node: str, doc: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """A parameter's given value, a variable's value, an unresolved parameter, or a literal."""
    if node in params:
        return params[node]
    variables = doc.get("variables", {})
    if node in variables:
        return evaluate(variables[node]["value"], doc, params)
    if node in doc.get("parameters", {}):
        return Unresolved(node)
    return node


Evaluate = Callable[[Any], Any]


def _equals(kind: str, operands: Mapping[str, Any], ev: Evaluate) -> Any:
    left, right = ev(operands["operand_1"]), ev(operands["operand_2"])
    return Unresolved(f"{left}=={right}") if _unresolved(left, right) else left == right


def _not(kind: str, operands: Mapping[str, Any], ev: Evaluate) -> Any:
    value = ev(operands["bool_value"])
    return value if isinstance(value, Unresolved) else not value


def _conditional(kind: str, operands: Mapping[str, Any], ev: Evaluate) -> Any:
    test = ev(operands["condition"])
    if isinstance(test, Unresolved):
        return test
    return ev(operands["true_value"] if test else operands["false_value"])


def _coalesce(kind: str, operands: Mapping[str, Any], ev: Evaluate) -> Any:
    first = ev(operands["operand_1"])
    return ev(operands["operand_2"]) if first is None else first


def _logical(kind: str, operands: Mapping[str, Any], ev: Evaluate) -> Any:
    left, right = ev(operands["operand_1"]), ev(operands["operand_2"])
    if _unresolved(left, right) or _parse_tree(left) or _parse_tree(right):
        return Unresolved(f"{left} {kind} {right}")
    return (left and right) if kind == "and" else (left or right)


#: The operators evaluated; any other is returned as its parse tree.
_OPERATORS: dict[str, Callable[[str, Mapping[str, Any], Evaluate], Any]] = {
    "equals": _equals,
    "not": _not,
    "conditional": _conditional,
    "coalesce": _coalesce,
    "and": _logical,
    "or": _logical,
}


def _unresolved(*values: Any) -> bool:
    return any(isinstance(v, Unresolved) for v in values)


def _parse_tree(value: Any) -> bool:
    """An expression the evaluator left as pycep's tree (a call, an accessor), not a value."""
    return isinstance(value, dict) and ("function" in value or "operator" in value)


def _function(node: dict[str, Any], doc: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    fn = node["function"]
    args = fn["parameters"]
    if fn["type"] == "union":
        merged: dict[str, Any] = {}
        for arg in args.values():
            value = evaluate(arg, doc, params)
            assert isinstance(value, dict), f"union of a non-object: {value!r}"
            merged.update(value)
        return merged
    if fn["type"] == "concat":
        items = [evaluate(arg, doc, params) for arg in args.values()]
        if all(isinstance(item, list) for item in items):
            return [element for item in items for element in item]
        return node
    values = {name: evaluate(arg, doc, params) for name, arg in args.items()}
    if any(_unresolved(v) or _parse_tree(v) for v in values.values()):
        return node if fn["type"] not in ("empty", "contains") else Unresolved(fn["type"])
    if fn["type"] == "empty":
        return len(values["item_to_test"]) == 0
    if fn["type"] == "contains":
        return values["item_to_find"] in values["container"]
    if fn["type"] == "split":
        return str(values["input_string"]).split(str(values["delimiter"]))
    if fn["type"] == "replace":
        original = str(values["original_string"])
        return original.replace(str(values["old_string"]), str(values["new_string"]))
    return node


def accessor_path(node: Any) -> list[str]:
    """``a.b.c`` (pycep's nested property accessors) as ``["a", "b", "c"]``; [] otherwise."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
        operands = node["operator"]["operands"]
        return accessor_path(operands["operand_1"]) + accessor_path(operands["operand_2"])
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "function_accessor":
        operands = node["operator"]["operands"]
        return [*accessor_path(operands["operand_1"]), f"{operands['func_name']}()"]
    return []


def contains_call(node: Any, name: str) -> bool:
    """Whether an expression calls ``name`` (a function or a resource method) anywhere."""
    if isinstance(node, dict):
        op = node.get("operator", {})
        if op.get("type") == "function_accessor" and op["operands"].get("func_name") == name:
            return True
        if node.get("function", {}).get("type") == name:
            return True
        return any(contains_call(v, name) for v in node.values())
    if isinstance(node, list):
        return any(contains_call(v, name) for v in node)
    return False


def param_default(doc: Mapping[str, Any], name: str) -> Any:
    return doc["parameters"][name].get("default")


def decorators(doc: Mapping[str, Any], name: str, section: str = "parameters") -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in doc[section][name]["decorators"]}


def module_file(doc: Mapping[str, Any], symbol: str) -> str:
    return str(doc["modules"][symbol]["detail"]["path"])


def module_params(doc: Mapping[str, Any], symbol: str) -> dict[str, Any]:
    return dict(body(doc["modules"][symbol])["params"])


def only(mapping: Mapping[str, Any]) -> Any:
    assert len(mapping) == 1, f"expected exactly one, got {sorted(mapping)}"
    return next(iter(mapping.values()))


def role_assignments(path: str, mode: str) -> list[tuple[str, str, str]]:
    """(role name, scope resource type, principal) of the grants a module makes in a SAS mode."""
    doc = template(path)
    grants = []
    for symbol, resource in resources(doc, ROLE_ASSIGNMENT).items():
        if evaluate(condition(resource), doc, {"sasMode": mode}) is not True:
            continue
        props = body(resource)["properties"]
        role_fn = props["roleDefinitionId"]["function"]
        assert role_fn["type"] == "subscription_resource_id", symbol
        assert role_fn["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        guid = evaluate(role_fn["parameters"]["resource_name_1"], doc)
        assert guid in ROLE_NAMES, f"{path}:{symbol}: unknown role definition {guid}"
        scope = body(resource).get("scope")
        assert isinstance(scope, str), f"{path}:{symbol} has no resource scope"
        assert scope in resources(doc), f"{path}:{symbol}: scope {scope} is not a resource here"
        grants.append((ROLE_NAMES[guid], resources(doc)[scope]["type"], props["principalId"]))
    return sorted(grants)


def app_settings(mode: str, backend: str = BACKENDS[0]) -> dict[str, Any]:
    """The function app's app settings in one SAS mode and task hub backend (values partly
    unresolved)."""
    doc = template("modules/function-app.bicep")
    configs = resources(doc, "Microsoft.Web/sites/config")
    config = only({k: v for k, v in configs.items() if body(v)["name"] == "appsettings"})
    params = {"sasMode": mode, "durableBackend": backend}
    settings = evaluate(body(config)["properties"], doc, params)
    assert isinstance(settings, dict)
    return settings
