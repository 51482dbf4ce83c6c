"""tests/core runs without ComfyUI: only torch, w2sd_core and the helpers next to this file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# importlib import mode puts neither the checkout nor this folder on sys.path.
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture(autouse=True, scope="module")
def toy_tensors_on_one_thread(one_thread: None) -> None:
    """The toy tensors are tiny: on a busy 2-core machine intra-op threads only add waiting."""
