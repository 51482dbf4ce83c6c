"""Fixtures shared by every test layer. Nothing here imports ComfyUI: tests/core runs without it.

`tests/` and `tools/` go on sys.path so tests can `from fixtures.checkpoints import ...` and
`from comfy_server import ComfyError`. The server fixtures start ComfyUI as a child process only when
a test asks for them (tests/e2e, tests/browser); tests/nodes/conftest.py imports ComfyUI in-process.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Before anything imports torch: OpenMP threads that spin while waiting make torch 7-10x slower on a
# busy machine (measured here: 22-29 s instead of 2-3 s per tiny KSampler run at load 7 on 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TESTS = Path(__file__).resolve().parent
for path in (TESTS, TESTS.parent / "tools"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from comfy_server import ComfyServer, comfyui_dir  # noqa: E402
from fixtures.checkpoints import install_fixtures  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]  # fmt: skip


class _CheckoutAsPlainDirectory:
    """Collect the checkout as a plain directory, never as a package.

    The checkout's __init__.py is the pack, which imports ComfyUI; pytest would import it to set up
    every test below (even with importlib mode). A conftest hook cannot see the checkout's own
    directory node, so this is registered as a plugin.
    """

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        if path == TESTS.parent:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("w2sd-checkout-as-dir"):
        config.pluginmanager.register(_CheckoutAsPlainDirectory(), "w2sd-checkout-as-dir")


def _start(base: Path, **kwargs: Any) -> ComfyServer:
    install_fixtures(base, comfyui_dir())
    return ComfyServer(base, comfyui_dir(), **kwargs).start()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    """One real ComfyUI for the whole session: pack linked, tiny models installed, stopped at the end."""
    srv = _start(tmp_path_factory.mktemp("comfy_base"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ComfyServer]]:
    """Start extra servers (e.g. for restart tests): `server_factory(base_dir=None, **ComfyServer kwargs)`.

    Each call starts a new process (same base dir again = a restart); all are stopped after the module.
    """
    started: list[ComfyServer] = []

    def start(base_dir: Path | None = None, **kwargs: Any) -> ComfyServer:
        srv = _start(Path(base_dir) if base_dir else tmp_path_factory.mktemp("comfy_extra"), **kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    """Debian's Chromium driven by playwright (never playwright's own browser download).

    Module scope: playwright's sync API keeps an event loop running in the main thread while it is
    open, which would break asyncio.run() in every later test of the session."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `python3 tools/dev.py setup` installs it (apt-get install chromium)"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster, and far faster on a busy 2-core runner."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def source_module() -> Callable[[str, Path], ModuleType]:
    """`load(name, path)`: a Python file imported on its own as module `name` (kept in sys.modules)."""

    def load(name: str, path: Path) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load
