"""Convert a UI-format ComfyUI workflow (what the editor saves) into the API format /prompt accepts.

    info = server.object_info()
    api = ui_to_api(json.load(open("workflows/x.json")), info)

The node definitions from /object_info say which inputs are widgets: `widgets_values` holds their values
in definition order (required, then optional), plus one extra "control_after_generate" value after
seed-like INT widgets, which is skipped. Links become `[node_id, output_slot]`; Reroute nodes and
bypassed nodes are followed through, PrimitiveNode values are copied into the widgets they feed, muted
nodes and notes are left out. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
SEED_NAMES = {"seed", "noise_seed"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASSED = 2, 4


class WorkflowError(ValueError):
    """A workflow that cannot be converted; the message names the node and the problem."""


def widget_inputs(definition: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """(name, spec) of a node's widget inputs, in the order the frontend lays out widgets_values."""
    inputs = definition.get("input", {})
    order = definition.get("input_order", {})
    widgets = []
    for section in ("required", "optional"):
        specs = inputs.get(section, {})
        for name in order.get(section, list(specs)):
            spec = specs[name]
            kind, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
            if (isinstance(kind, list) or kind in WIDGET_TYPES) and not opts.get("forceInput"):
                widgets.append((name, spec))
    return widgets


def has_control_widget(name: str, spec: list[Any]) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(opts.get("control_after_generate")) or (spec[0] == "INT" and name in SEED_NAMES)


def widget_values(node: dict[str, Any], definition: dict[str, Any]) -> dict[str, Any]:
    """Map a UI node's widgets_values onto its widget input names."""
    values = node.get("widgets_values", [])
    if isinstance(values, dict):  # some nodes save widgets by name
        return {name: values[name] for name, _ in widget_inputs(definition) if name in values}
    out: dict[str, Any] = {}
    i = 0
    for name, spec in widget_inputs(definition):
        if i >= len(values):
            break
        out[name] = values[i]
        i += 1
        if has_control_widget(name, spec) and i < len(values) and values[i] in CONTROL_VALUES:
            i += 1
    return out


def _links(workflow: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """link id -> (origin node id, origin slot); accepts list and object link formats."""
    links = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            links[link["id"]] = (link["origin_id"], link["origin_slot"])
        else:
            links[link[0]] = (link[1], link[2])
    return links


def ui_to_api(workflow: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """The API-format prompt of a UI-format workflow (see the module docstring)."""
    if workflow.get("definitions", {}).get("subgraphs"):
        raise WorkflowError("workflows with subgraphs are not supported by this converter")
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links(workflow)

    def source(link_id: int, seen: frozenset[int] = frozenset()) -> tuple[str, Any]:
        """("link", [id, slot]) or ("value", v) for what feeds a link, through reroutes and bypasses."""
        if link_id in seen:
            raise WorkflowError(f"link {link_id} loops through reroutes/bypassed nodes")
        origin_id, slot = links[link_id]
        origin = nodes[origin_id]
        if origin["type"] == "Reroute" or origin.get("mode") == MODE_BYPASSED:
            out_type = origin["outputs"][slot].get("type")
            for inp in origin.get("inputs", []):
                if inp.get("link") is not None and (
                    origin["type"] == "Reroute" or inp.get("type") == out_type
                ):
                    return source(inp["link"], seen | {link_id})
            raise WorkflowError(
                f"node {origin_id} ({origin['type']}) passes nothing through to output {slot}"
            )
        if origin["type"] == "PrimitiveNode":
            return "value", origin["widgets_values"][0]
        if origin.get("mode") == MODE_MUTED:
            return "muted", None
        return "link", [str(origin_id), slot]

    api: dict[str, Any] = {}
    for node_id, node in sorted(nodes.items()):
        class_type = node["type"]
        if class_type in FRONTEND_ONLY or node.get("mode") in (MODE_MUTED, MODE_BYPASSED):
            continue
        definition = object_info.get(class_type)
        if definition is None:
            raise WorkflowError(f"node {node_id}: unknown node type {class_type!r} (is its pack installed?)")
        inputs = widget_values(node, definition)
        for inp in node.get("inputs", []):
            if inp.get("link") is None:
                continue
            kind, value = source(inp["link"])
            if kind != "muted":
                inputs[inp["name"]] = value
        api[str(node_id)] = {
            "class_type": class_type,
            "inputs": inputs,
            "_meta": {"title": node.get("title", class_type)},
        }
    return api


def combo_options(object_info: dict[str, Any], class_type: str, name: str) -> list[Any] | None:
    inputs = object_info[class_type].get("input", {})
    for section in ("required", "optional"):
        spec = inputs.get(section, {}).get(name)
        if spec is None:
            continue
        if isinstance(spec[0], list):
            return spec[0]
        if spec[0] == "COMBO" and len(spec) > 1:
            return spec[1].get("options")
    return None


def replace_missing_choices(
    api: dict[str, Any], object_info: dict[str, Any], choose: Callable[[str, str, Any, list[Any]], Any]
) -> list[str]:
    """Replace combo values the server does not offer (e.g. model files) with `choose(class_type, input,
    value, options)`; returns one line per replacement."""
    changes = []
    for node_id, node in api.items():
        for name, value in list(node["inputs"].items()):
            if isinstance(value, list):
                continue
            options = combo_options(object_info, node["class_type"], name)
            if options is not None and value not in options:
                new = choose(node["class_type"], name, value, options)
                node["inputs"][name] = new
                changes.append(f"node {node_id} ({node['class_type']}).{name}: {value!r} -> {new!r}")
    return changes


def invalid_values(
    api: dict[str, Any], object_info: dict[str, Any], files: Collection[str] = ()
) -> list[str]:
    """What the server's validation would refuse, one line each: a required input not given, a combo value
    not offered (except inputs named in `files`: model files a server may lack), a number of the wrong type
    or out of range, a boolean or string of the wrong type."""
    problems = []
    for node_id, node in api.items():
        where = f"node {node_id} ({node['class_type']})"
        for section in ("required", "optional"):
            for name, spec in object_info[node["class_type"]]["input"].get(section, {}).items():
                if name not in node["inputs"]:
                    if section == "required":
                        problems.append(f"{where}: required input {name} not given")
                    continue
                value = node["inputs"][name]
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    continue  # a link
                options = combo_options(object_info, node["class_type"], name)
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if options is not None:
                    if value not in options and name not in files:
                        problems.append(f"{where}.{name}: {value!r} not offered")
                elif spec[0] in ("INT", "FLOAT"):
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        problems.append(f"{where}.{name}: {value!r} is not a number")
                    elif spec[0] == "INT" and value != int(value):
                        problems.append(f"{where}.{name}: {value!r} is not an integer")
                    elif not opts.get("min", -float("inf")) <= value <= opts.get("max", float("inf")):
                        problems.append(
                            f"{where}.{name}: {value} outside [{opts.get('min')}, {opts.get('max')}]"
                        )
                elif spec[0] == "BOOLEAN" and not isinstance(value, bool):
                    problems.append(f"{where}.{name}: {value!r} is not a boolean")
                elif spec[0] == "STRING" and not isinstance(value, str):
                    problems.append(f"{where}.{name}: {value!r} is not a string")
    return problems
