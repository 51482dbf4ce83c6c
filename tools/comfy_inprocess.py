"""ComfyUI imported into this process: `import comfy.sd, nodes` work here, no server is started.

Used by the `comfyui` fixture of tests/nodes and by the benchmarks (benchmarks/common/comfy.py).
`start_inprocess` puts the ComfyUI source first on sys.path, forces the CPU unless asked for CUDA (text
encoders in fp32, as the test server runs them, unless asked otherwise),
points `folder_paths` at a base directory (models/, input/, output/, custom_nodes/ with this checkout
linked) and loads ComfyUI's extra nodes, so every stock node is in `nodes.NODE_CLASS_MAPPINGS`.
ComfyUI's modules are process-wide: call it once per process.
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from comfy_server import PACK_LINK_NAME, REPO_ROOT, comfyui_dir, prepare_base


def run_async(coro: Any) -> Any:
    """Run one of ComfyUI's coroutines to completion, also when an event loop is running here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class InProcessComfy:
    comfyui: Path
    """The ComfyUI source folder in use."""
    base_dir: Path
    """folder_paths' base directory (models/, input/, output/, custom_nodes/)."""
    models: dict[str, Path]
    """Installed model files by name (see fixtures.checkpoints)."""
    nodes: ModuleType
    """ComfyUI's `nodes` module (stock nodes + comfy_extras registered)."""
    pack_node_ids: list[str] = field(default_factory=list)
    """The W2SD node ids once `load_pack` ran."""

    def node_class(self, class_type: str) -> Any:
        return self.nodes.NODE_CLASS_MAPPINGS[class_type]

    def execute(self, class_type: str, **inputs: Any) -> tuple[Any, ...]:
        """Run one node's function like the executor does (V1 or V3 node); returns its output tuple."""
        cls = self.node_class(class_type)
        if hasattr(cls, "execute") and hasattr(cls, "GET_SCHEMA"):  # V3 io.ComfyNode
            return tuple(cls.execute(**inputs).result)
        return tuple(getattr(cls(), cls.FUNCTION)(**inputs))

    def load_pack(self) -> list[str]:
        """Load this checkout through ComfyUI's own custom-node loader (once); returns the W2SD node ids."""
        if not self.pack_node_ids:
            link = self.base_dir / "custom_nodes" / PACK_LINK_NAME
            before = set(self.nodes.NODE_CLASS_MAPPINGS)
            if not run_async(self.nodes.load_custom_node(str(link))):
                raise RuntimeError(f"ComfyUI could not load the pack from {link} (see the log above)")
            self.pack_node_ids = sorted(set(self.nodes.NODE_CLASS_MAPPINGS) - before)
        return self.pack_node_ids


MODEL_KINDS = ("checkpoints", "loras", "controlnet", "vae", "diffusion_models", "text_encoders")


def start_inprocess(
    base: Path,
    models: dict[str, Path] | None = None,
    source: Path | None = None,
    device: str = "cpu",
    fp32_text_enc: bool = True,
) -> InProcessComfy:
    """Import ComfyUI ($COMFYUI_PATH or the dev checkout) with `base` as its base directory.

    `models`: files already installed under base/models (only recorded on the result). `device` "cuda"
    lets ComfyUI pick its device; `fp32_text_enc` False keeps ComfyUI's own text-encoder dtype."""
    source = source or comfyui_dir()
    base = prepare_base(base, pack_dir=REPO_ROOT)
    if str(source) not in sys.path:
        sys.path.insert(0, str(source))
    import comfy.cli_args

    # Read by comfy.model_management and folder_paths when they are first imported.
    comfy.cli_args.args.cpu = device == "cpu"
    comfy.cli_args.args.fp32_text_enc = fp32_text_enc  # the test server's True: see comfy_server.CPU_ARGS
    comfy.cli_args.args.base_directory = str(base)
    import folder_paths

    # As main.py does: import ComfyUI's `utils` package before nodes.py puts comfy/ first on sys.path,
    # where comfy/utils.py would shadow it (then comfy_extras' nodes_images fails to import).
    import utils.extra_config  # noqa: F401

    import nodes

    if Path(nodes.__file__).resolve().parent != source.resolve():
        raise RuntimeError(f"`import nodes` found {nodes.__file__}, not ComfyUI's nodes.py in {source}")
    if Path(folder_paths.base_path).resolve() != base.resolve():
        # Something imported folder_paths first: register this base's folders as the defaults.
        for kind in MODEL_KINDS:
            folder_paths.add_model_folder_path(kind, str(base / "models" / kind), is_default=True)
        for kind in ("output", "input", "temp"):
            getattr(folder_paths, f"set_{kind}_directory")(str(base / kind))
    if not getattr(sys.modules["utils"], "__path__", None):
        raise RuntimeError(
            f"`utils` resolved to {sys.modules['utils'].__file__}, not ComfyUI's utils package"
        )
    if not getattr(nodes, "_w2sd_extra_nodes_loaded", False):
        import server

        if getattr(server.PromptServer, "instance", None) is None:
            # As main.py's start_comfyui: the PromptServer exists before the extra nodes load (0.29.0's
            # comfy_extras/nodes_replacements registers with PromptServer.instance). Its routes are not
            # added and its loop never runs: nothing listens, messages it is sent stay queued.
            server.PromptServer(asyncio.new_event_loop())
        failed = run_async(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        if failed:
            raise RuntimeError(f"ComfyUI's extra nodes failed to import in-process: {failed} (see the log)")
        nodes._w2sd_extra_nodes_loaded = True
    return InProcessComfy(source, base, dict(models or {}), nodes)
