"""Every input of a prompt checked against what the node declares, before the prompt runs.

ComfyUI converts widget values and checks their min/max/choices itself, except for the inputs a node's
VALIDATE_INPUTS takes; it lets NaN through its range checks and never checks a link input that was
given a plain value (`"pair": null`). The W2SD nodes take every input in VALIDATE_INPUTS (`**values`,
with `input_types` for the types of the linked ones) and check each here, so a bad value is refused
before running with a message that names the input, the value and what is allowed, instead of a raw
error from deep inside the node.
"""

from __future__ import annotations

import math
from typing import Any

from comfy_execution.validation import validate_node_input

WIDGET_KINDS = ("INT", "FLOAT", "BOOLEAN", "STRING")
LISTED_CHOICES = 20  # longer choice lists (file names) are counted, not listed, as ComfyUI does


def declared_inputs(spec: dict[str, Any]) -> dict[str, tuple]:
    return {**spec.get("required", {}), **spec.get("optional", {})}


def allowed_range(options: dict[str, Any]) -> str:
    low, high = options.get("min"), options.get("max")
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"{low} or more"
    return f"{high} or less" if high is not None else "any finite number"


def describe_choices(choices: list[Any]) -> str:
    if len(choices) > LISTED_CHOICES:
        return f"the {len(choices)} listed choices"
    return ", ".join(map(str, choices)) if choices else "(no choices: the list is empty)"


def check_value(name: str, declared: tuple, value: Any) -> str | None:
    """Why `value` is not allowed for the input `name` declared as `declared` (None: it is)."""
    kind, *rest = declared
    options = rest[0] if rest else {}
    if isinstance(kind, list):
        if not isinstance(value, (str, int, float)) or value not in kind:
            return f"{name}={value!r} is not one of {describe_choices(kind)}"
        return None
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name}={value!r} is not a number (allowed: {allowed_range(options)})"
        if not math.isfinite(value):
            return f"{name}={value} is not a finite number (allowed: {allowed_range(options)})"
        if "min" in options and value < options["min"]:
            return f"{name}={value} is below the minimum {options['min']}"
        if "max" in options and value > options["max"]:
            return f"{name}={value} is above the maximum {options['max']}"
        return None
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}={value!r} is not true or false"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{name}={value!r} is not text"
    # A link type (MODEL, CONDITIONING, LATENT, W2SD_PAIR, ...): a value reached validation instead of a link.
    return f"{name} must be connected to a {kind} output; it was given the value {value!r}"


def check_declared(
    spec: dict[str, Any], input_types: dict[str, Any] | None = None, **values: Any
) -> str | None:
    """The first input of `values` whose value (or linked type) is not allowed.

    `values` holds every input of the prompt's node; a linked one is None here (its value is known only
    when running) and listed in `input_types` with the type of the output it is connected to. A node
    whose VALIDATE_INPUTS takes `input_types` gets no type check of its links from ComfyUI, so they are
    checked here by ComfyUI's own rule. Without `input_types`, None values are taken as links.
    """
    declared = declared_inputs(spec)
    linked = input_types or {}
    for name, value in values.items():
        if name not in declared:
            continue  # ComfyUI passes only declared inputs; an extra one is ignored, as by stock nodes
        kind = declared[name][0]
        if name in linked:
            if not validate_node_input(linked[name], kind):
                return f"{name} is connected to a {linked[name]} output, but it takes {type_name(kind)}"
            continue
        if value is None and (input_types is None or kind in WIDGET_KINDS):
            continue  # a linked input (no input_types given), or a widget ComfyUI already refused
        problem = check_value(name, declared[name], value)
        if problem:
            return problem
    return None


def type_name(kind: Any) -> str:
    return "a choice (COMBO)" if isinstance(kind, list) else str(kind)


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, for quoting it inside one of the pack's own."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]
