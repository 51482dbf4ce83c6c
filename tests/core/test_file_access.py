"""Every file the pack opens from a user's choice goes through ComfyUI's folder lookup and safe loading
(issue #25). Read from the source: nothing here imports the pack or ComfyUI."""

from __future__ import annotations

import ast
from pathlib import Path

PACK = Path(__file__).resolve().parents[2]
# Calls that open or read a file, by the last part of their name.
FILE_READERS = {
    "open", "load", "load_file", "safe_open", "load_torch_file", "read_bytes", "read_text",
    "load_state_dict", "fromfile", "loadtxt",
}  # fmt: skip
# The one place that reads a file a prompt names, and the one that reads ComfyUI's own server.py.
ALLOWED = {("nodes/pair_nodes.py", "load_torch_file"), ("nodes/compat.py", "read_text")}


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in FILE_READERS:
                yield name, node


def pack_sources():
    for path in [
        PACK / "__init__.py",
        *sorted((PACK / "nodes").glob("*.py")),
        *sorted((PACK / "w2sd_core").glob("*.py")),
    ]:
        yield path.relative_to(PACK).as_posix(), ast.parse(path.read_text())


def test_the_pack_reads_files_in_two_known_places_only():
    found = {(name, call) for name, tree in pack_sources() for call, _ in calls(tree)}
    assert found == ALLOWED


def test_a_lora_file_is_loaded_safely_from_the_path_comfyui_resolves():
    tree = dict(pack_sources())["nodes/pair_nodes.py"]
    ((_, load),) = [(n, c) for n, c in calls(tree) if n == "load_torch_file"]
    assert any(k.arg == "safe_load" and getattr(k.value, "value", None) is True for k in load.keywords)
    # The path handed to the reader is the one folder_paths.get_full_path("loras", lora_name) returned.
    split = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "split")
    assignments = {
        t.id: ast.unparse(n.value)
        for n in ast.walk(split)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert assignments["path"] == "folder_paths.get_full_path('loras', lora_name)"
    reader = next(
        n
        for n in ast.walk(split)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "read_lora_file"
    )
    assert ast.unparse(reader.args[0]) == "path"
