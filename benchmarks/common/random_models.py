"""Full-size random-weight models: a UNet of ComfyUI's own classes (deterministic fill, no download) and a
rank-r LoRA on its attention/ff/proj layers, built in a child process (`perf.py --build`) once per key into
.cache/perf/<model>-<key>/ and loaded through the stock UNETLoader. Timing does not depend on the weights."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from comfy_server import comfyui_dir
from fixtures.checkpoints import comfyui_version, deterministic_fill

from common import ROOT

CACHE = ROOT / ".cache" / "perf"
BUILD_VERSION = "1"  # bump when the builder below changes what it writes
BUILDER = ROOT / "benchmarks" / "perf.py"  # its hidden --build flag runs build_full_size

# Full-size UNet configs exactly as comfy.model_detection.detect_unet_config returns them (checked when built).
UNET_CONFIGS: dict[str, dict[str, Any]] = {
    "sd15": {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "channel_mult": [1, 2, 4, 4],
        "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768,
        "use_temporal_resblock": False, "use_temporal_attention": False,
    },
    "sdxl": {
        "num_classes": "sequential", "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True,
        "legacy": False, "adm_in_channels": 2816, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "channel_mult": [1, 2, 4],
        "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048,
        "use_temporal_resblock": False, "use_temporal_attention": False,
    },
}  # fmt: skip
FAMILY = {"sd15": "SD15", "sdxl": "SDXL"}
LORA_TARGETS = re.compile(
    r"lora_unet_(down|mid|up)_blocks?_.*_(attn[12]_to_(q|k|v|out_0)|ff_net_0_proj|ff_net_2|proj_in|proj_out)$"
)


def model_files(model: str, lora_rank: int) -> tuple[str, str]:
    return f"{model}_random_unet.safetensors", f"{model}_random_lora_r{lora_rank}.safetensors"


def ensure_full_size(model: str, lora_rank: int, comfyui: Path) -> Path:
    """The cache folder with the random UNet and LoRA of `model`, built once per key."""
    key = hashlib.sha256(
        json.dumps(
            [BUILD_VERSION, model, UNET_CONFIGS[model], lora_rank, comfyui_version(comfyui)], sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    folder = CACHE / f"{model}-{key}"
    names = model_files(model, lora_rank)
    if all((folder / n).is_file() for n in names):
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{model}.building.", dir=CACHE))
    try:
        print(
            f"building the random-weight {model} UNet and rank-{lora_rank} LoRA into {folder} ...", flush=True
        )
        cmd = [
            sys.executable,
            str(BUILDER),
            "--build",
            model,
            "--build-out",
            str(tmp),
            "--lora-rank",
            str(lora_rank),
        ]
        subprocess.run(cmd, check=True)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.chmod(0o755)
        shutil.move(str(tmp), folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def build_full_size(model: str, out: Path, lora_rank: int) -> None:
    """Child process: random UNet (fp16) + a rank-r LoRA, checked through ComfyUI's detection."""
    sys.path.insert(0, str(comfyui_dir()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.lora
    import comfy.model_detection
    import safetensors.torch
    import torch

    config = UNET_CONFIGS[model]
    model_config = comfy.model_detection.model_config_from_unet_config(dict(config))
    base = model_config.get_model({})
    unet_sd = deterministic_fill(base.diffusion_model.state_dict(), salt=f"perf:{model}:")
    detected = comfy.model_detection.model_config_from_unet(unet_sd, "")
    if type(detected).__name__ != FAMILY[model] or detected.unet_config != model_config.unet_config:
        raise RuntimeError(f"the random {model} UNet is detected as {type(detected).__name__}")
    unet_name, lora_name = model_files(model, lora_rank)
    safetensors.torch.save_file({k: v.contiguous() for k, v in unet_sd.items()}, str(out / unet_name))
    shapes = {k: v.shape for k, v in unet_sd.items()}
    del unet_sd

    key_map = comfy.lora.model_lora_keys_unet(base, {})
    lora = {}
    for lora_key, weight_key in sorted(key_map.items()):
        if not LORA_TARGETS.match(lora_key):
            continue
        shape = shapes[weight_key.removeprefix("diffusion_model.")]
        kernel = tuple(shape[2:])
        lora[f"{lora_key}.lora_down.weight"] = torch.empty((lora_rank, shape[1], *kernel))
        lora[f"{lora_key}.lora_up.weight"] = torch.empty((shape[0], lora_rank, *([1] * len(kernel))))
    lora = deterministic_fill(lora, salt=f"perf-lora:{model}:")
    for k in [k for k in lora if k.endswith(".lora_down.weight")]:
        lora[k.replace(".lora_down.weight", ".alpha")] = torch.tensor(float(lora_rank), dtype=torch.float16)
    safetensors.torch.save_file(lora, str(out / lora_name))
    n_params = sum(math.prod(shape) for shape in shapes.values())
    print(f"built {unet_name} ({n_params / 1e6:.0f}M params) and {lora_name} ({len(lora) // 3} modules)")
