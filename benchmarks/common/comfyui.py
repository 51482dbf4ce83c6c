"""ComfyUI in this process for a benchmark: tools/comfy_inprocess.py's start, this pack loaded through
ComfyUI's custom-node loader, progress bars off (the same for every sampler: no tqdm in the timings);
other packs (the guiders W2SD is compared with) loaded beside it."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from comfy_inprocess import InProcessComfy, run_async, start_inprocess
from comfy_server import comfyui_dir
from fixtures.checkpoints import install_fixtures


def start(
    base: Path, models: dict[str, Path] | None = None, device: str = "cpu", fp32_text_enc: bool = True
) -> InProcessComfy:
    """Start ComfyUI on `base` (models already installed there) with the pack loaded; once per process."""
    c = start_inprocess(base, models, device=device, fp32_text_enc=fp32_text_enc)
    c.load_pack()
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    if device == "cuda":
        import comfy.model_management as mm

        if mm.get_torch_device().type != "cuda":
            raise RuntimeError(f"--device cuda, but ComfyUI runs on {mm.get_torch_device()}")
    return c


@contextlib.contextmanager
def with_fixtures(prefix: str, device: str = "cpu", fp32_text_enc: bool = True) -> Iterator[InProcessComfy]:
    """`start` on a fresh temporary base with the test fixtures installed (tests/fixtures/checkpoints.py),
    the base removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield start(base, install_fixtures(base, comfyui_dir()), device, fp32_text_enc)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def load_peer(c: Any, path: Path, node: str) -> str:
    """Load another pack from its checkout through ComfyUI's custom-node loader; returns what identifies
    its code: the git commit, else (a snapshot without .git) its version and a hash of its Python files."""
    path = Path(path).resolve()
    if not run_async(c.nodes.load_custom_node(str(path))) or node not in c.nodes.NODE_CLASS_MAPPINGS:
        raise RuntimeError(f"{path}: ComfyUI did not load {node} from it (see the log above)")
    git = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    if git.returncode == 0 and git.stdout.strip():
        return f"{path.name} commit {git.stdout.strip()[:12]}"
    h = hashlib.sha256()
    for f in sorted(path.rglob("*.py")):
        h.update(f.read_bytes())
    version = next(
        (ln.split("=", 1)[1].strip().strip('"') for ln in (path / "pyproject.toml").read_text().splitlines()
         if ln.startswith("version")),
        "unknown",
    ) if (path / "pyproject.toml").is_file() else "unknown"  # fmt: skip
    return f"{path.name} (no git metadata) version {version}, *.py sha256 {h.hexdigest()[:12]}"
