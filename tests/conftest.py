"""Import paths shared by every test layer. No ComfyUI import here: tests/core runs without it.

`tests/` and `tools/` go on sys.path so tests can `from fixtures.checkpoints import ...` and
`import comfy_server`. ComfyUI itself is only imported by tests/nodes/conftest.py (in-process) and
started as a server by tests/e2e and tests/browser.
"""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
for path in (TESTS, TESTS.parent / "tools"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
