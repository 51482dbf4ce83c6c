"""The codebase stays ruff-clean, ruff-formatted and mypy-strict on w2sd_core (pyproject holds the rules)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The 0.3.52 overlay venv shares .venv's packages but not its bin/ scripts.
BINS = [Path(sys.executable).parent, ROOT / ".venv" / "bin"]
TEXT_SUFFIXES = {".md", ".py", ".js", ".mjs", ".json", ".toml", ".txt", ".yaml", ".yml", ".sh", ".cfg", ""}
SHARED_IN_DOCS = re.compile(
    r"\.\./shared\b[^\s)`'\"]*|\bshared/(?:ALGORITHM|TESTING|COMFYUI_NOTES|STYLE)\.md"
)
SHARED_IN_CODE = re.compile(
    r"\.\./shared/(?!comfyui/)[^\s)`'\"]*|\bshared/(?:ALGORITHM|TESTING|COMFYUI_NOTES|STYLE)\.md"
)


def tool(name: str) -> str:
    return str(next((b / name for b in BINS if (b / name).exists()), name))


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_is_clean(command):
    done = subprocess.run([tool(command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_tracked_file_points_at_the_development_notes_outside_the_repository():
    """People who clone the repository have only the repository: docs/ALGORITHM.md and docs/TESTING.md
    hold what they need. Code may name the ComfyUI source tree CI keeps beside the checkout
    (`../shared/comfyui/<version>`, with COMFYUI_PATH as the way out); documents may not point there."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    found = []
    for name in files.stdout.splitlines():
        path = ROOT / name
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        pattern = SHARED_IN_DOCS if path.suffix == ".md" else SHARED_IN_CODE
        found += [
            f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}" for m in pattern.finditer(text)
        ]
    assert not found, "references to files users do not have:\n" + "\n".join(found)
