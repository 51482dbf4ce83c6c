"""Which shipped example workflows (workflows/*.json) a ComfyUI core takes, and which run on tiny models.

The family workflows (Z-Image, Qwen-Image, Flux.1, Wan 2.2) follow ComfyUI 0.29.0's own templates and are
built and checked against it. They are converted and validated against a real server's /object_info but
not executed here: each family's text encoder is a fixed multi-billion-parameter model in the core's
loaders (CLIPLoader / DualCLIPLoader build it from a fixed config whatever the file holds), so no tiny
fixture stands in for it. Standard library only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

WORKFLOW_DIR = Path(__file__).resolve().parents[1] / "workflows"


@dataclass(frozen=True)
class Family:
    name: str
    text_encoder: str
    core: tuple[int, ...]
    """The oldest core the workflow is checked on (the one whose templates it follows)."""

    @property
    def not_run(self) -> str:
        return f"not run here: {self.name}'s text encoder ({self.text_encoder}) has no tiny form in the core's loaders"


CORE_0_29 = (0, 29, 0)
FAMILY_WORKFLOWS = {
    "W2SD_Z-Image_CFG_gap": Family("Z-Image", "Qwen3-4B", CORE_0_29),
    "W2SD_Qwen-Image_prompt_pair": Family("Qwen-Image", "Qwen2.5-VL-7B", CORE_0_29),
    "W2SD_Qwen-Image_edit": Family("Qwen-Image-Edit", "Qwen2.5-VL-7B", CORE_0_29),
    "W2SD_Flux_guidance_gap": Family("Flux.1", "T5-XXL", CORE_0_29),
    "W2SD_Wan2.2_two_stage": Family("Wan 2.2", "UMT5-XXL", CORE_0_29),
}
"""Validated but not executed (see the module docstring), each with the core it is checked on. They are
saved from 0.29.0's nodes: older cores lack widgets they carry (CreateVideo's bit_depth, CFGNorm's
pre_cfg: 0.3.75 and 0.3.52), nodes (TextEncodeQwenImageEditPlus: 0.3.52) and model classes (Z-Image:
0.3.52; Qwen-Image-Edit 2511's index_timestep_zero: 0.3.75)."""


MODEL_FILE_INPUTS = frozenset({"unet_name", "clip_name", "clip_name1", "clip_name2", "vae_name", "image"})
"""The family workflows' inputs that name a file users have and a test server lacks (LoadImage's too)."""


def core_version(comfyui: str | os.PathLike[str]) -> tuple[int, ...]:
    """The version of the ComfyUI source at `comfyui`, from its comfyui_version.py."""
    text = (Path(comfyui) / "comfyui_version.py").read_text()
    match = re.search(r"__version__\s*=\s*['\"](\d+(?:\.\d+)*)", text)
    if match is None:
        raise ValueError(f"no __version__ in {comfyui}/comfyui_version.py")
    return tuple(int(x) for x in match.group(1).split("."))


def family(path: Path) -> Family | None:
    return FAMILY_WORKFLOWS.get(path.stem)


def shipped() -> list[Path]:
    return sorted(WORKFLOW_DIR.glob("*.json"))


def for_core(core: tuple[int, ...], paths: list[Path] | None = None) -> list[Path]:
    """The workflows whose nodes this core has: every one but the family workflows it is older than."""
    return [p for p in (shipped() if paths is None else paths) if (f := family(p)) is None or core >= f.core]


def runnable(paths: list[Path]) -> list[Path]:
    """The workflows that run on the tiny fixtures (all but the family workflows)."""
    return [p for p in paths if family(p) is None]
