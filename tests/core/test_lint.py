"""The codebase stays ruff-clean, ruff-formatted and mypy-strict on w2sd_core (pyproject holds the rules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The 0.3.52 overlay venv shares .venv's packages but not its bin/ scripts.
BINS = [Path(sys.executable).parent, ROOT / ".venv" / "bin"]


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
