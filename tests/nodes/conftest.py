"""In-process ComfyUI for tests/nodes: `import comfy.sd, nodes` work here, no server is started.

The `comfyui` fixture (session) puts the ComfyUI source first on sys.path ($COMFYUI_PATH or
`.comfyui/<$W2SD_COMFYUI_VERSION>`), forces the CPU, points `folder_paths` at a temporary base directory
holding the tiny checkpoints, and loads ComfyUI's extra nodes, so every stock node is in
`nodes.NODE_CLASS_MAPPINGS`. See tests/README.md.
"""

from __future__ import annotations

import pytest
from comfy_inprocess import InProcessComfy, run_async, start_inprocess
from comfy_server import comfyui_dir
from fixtures.checkpoints import install_fixtures

__all__ = ["InProcessComfy", "run_async"]


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory: pytest.TempPathFactory) -> InProcessComfy:
    base = tmp_path_factory.mktemp("comfy_inprocess")
    models = install_fixtures(base, comfyui_dir())
    return start_inprocess(base, models)
