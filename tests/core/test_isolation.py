"""w2sd_core is pure torch: no ComfyUI import, no host sync inside its sampling loops."""

import ast
from pathlib import Path

import w2sd_core

CORE = Path(w2sd_core.__file__).parent
FORBIDDEN = ("comfy", "folder_paths", "nodes", "latent_preview", "server", "execution")


def test_core_imports_only_torch_and_the_standard_library() -> None:
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_no_dynamic_imports_either() -> None:
    for path in CORE.glob("*.py"):
        text = path.read_text()
        assert "importlib" not in text and "__import__" not in text, path.name


def test_no_host_sync_calls_in_the_core() -> None:
    # Python numbers come from one sigmas.tolist() before a loop; per-step .item()/float(tensor) would
    # stall the GPU every step.
    for path in CORE.glob("*.py"):
        text = path.read_text()
        assert ".item()" not in text, path.name
        assert ".cpu()" not in text or path.name == "diagnostics.py", path.name
