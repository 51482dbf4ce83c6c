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


def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Keep pytest from importing the pack's root `__init__.py`, which imports ComfyUI.

    The checkout root is a package (ComfyUI loads it as one), so pytest sets up a Package node for it
    and imports its `__init__` looking for `setup_module`. It has none; skipping that import leaves the
    run unchanged and lets tests/core run with no ComfyUI installed.
    """
    for item in items:
        for node in item.listchain():
            if isinstance(node, pytest.Package) and node.path == ROOT:
                node.setup = lambda: None  # type: ignore[method-assign]
