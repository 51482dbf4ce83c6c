"""tests/core runs without ComfyUI: only torch, w2sd_core and the helpers next to this file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# importlib import mode puts neither the checkout nor this folder on sys.path.
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The toy tensors are tiny: on a busy 2-core machine intra-op threads only add waiting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
