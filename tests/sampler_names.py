"""Every sampler_name of the ComfyUI under test, read from its source (no ComfyUI import at collection)."""

from __future__ import annotations

import re

from comfy_server import comfyui_dir


def every_sampler_name() -> list[str]:
    """ComfyUI's sampler list (KSAMPLER_NAMES + the extra ones), in the core's order."""
    source = (comfyui_dir() / "comfy" / "samplers.py").read_text()
    k_diffusion = re.search(r"KSAMPLER_NAMES = \[(.*?)\]", source, re.S)
    extra = re.search(r"SAMPLER_NAMES = KSAMPLER_NAMES \+ \[(.*?)\]", source, re.S)
    names: list[str] = []
    for block in (k_diffusion, extra):
        names += re.findall(r'"([^"]+)"', block.group(1)) if block else []
    return names
