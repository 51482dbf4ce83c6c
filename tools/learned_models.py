"""Trained miniature models for the learned benchmark: class-conditional digit models, LoRAs, exact VAEs.

Families (FAMILIES), each a strong and a weak checkpoint and a LoRA with the same class-ratio gap: `flow`,
SD3 MMDiTs trained by `benchmarks/learned_train.py`; `eps` (and `v`), SD1.5 UNets (ComfyUI's UNetModel)
trained by `benchmarks/learned_train_eps.py` at 64 channels and widened exactly to SD1.5's 320 when
assembled (`widen_unet`); `eps_distilled`, the EPS UNets progressively distilled into 4-step students for
euler / sgm_uniform at cfg 1 by `benchmarks/learned_distill.py` (with the EPS LoRA). All learn
scikit-learn's 8x8 digits on the CPU; the weights are shipped in `benchmarks/learned_weights/` (fp16, ~4 MB
/ ~1.6 MB each) together with the hash of the training script and data they came from (MANIFESTS; tests/core
checks it still matches). What is not shipped is rebuilt deterministically: the CLIP-L text encoder (random
but fixed weights, from tests/fixtures/checkpoints.py) and the VAE, whose weights are set by hand so that
VAEEncode/VAEDecode are exact inverses on the data. `ensure_learned_models` assembles ComfyUI files from
them once per content key (`~/.cache/w2sd-comfyui/learned/<key>/`, override with W2SD_LEARNED_CACHE), in a
child process:

    from learned_models import install_learned_models, DIGITS_STRONG, prompt
    paths = install_learned_models(base_dir, comfyui_dir)   # {file name: base_dir/models/<kind>/<file>}

Images are 64 x 64 px (a digit upsampled 8x, gray as RGB); latents 16 x 8 x 8 (flow) or 4 x 8 x 8 (EPS),
the digit in channel 0.
This module imports only the standard library at top level; torch and ComfyUI are imported by `build()`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = REPO_ROOT / "benchmarks" / "learned_weights"
TRAIN_SCRIPT = REPO_ROOT / "benchmarks" / "learned_train.py"
TRAIN_SCRIPT_EPS = REPO_ROOT / "benchmarks" / "learned_train_eps.py"
DISTILL_SCRIPT = REPO_ROOT / "benchmarks" / "learned_distill.py"
JUDGES_SCRIPT = REPO_ROOT / "benchmarks" / "judges.py"
FIXTURES_SCRIPT = REPO_ROOT / "tests" / "fixtures" / "checkpoints.py"
CACHE_ROOT = Path(
    os.environ.get(
        "W2SD_LEARNED_CACHE",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "w2sd-comfyui" / "learned",
    )
)

# -- files ------------------------------------------------------------------------------------------

DIGITS_STRONG = "w2sd_digits_strong.safetensors"
"""Class-conditional digit MMDiT (SD3 family) trained with the minority digits at STRONG_SHARE of its data;
also the model of the CFG-gap and prompt pairs (DIGITS_COND is the same file)."""
DIGITS_COND = DIGITS_STRONG
DIGITS_WEAK = "w2sd_digits_weak.safetensors"
"""DIGITS_STRONG fine-tuned on data with the minority digits at WEAK_SHARE: the weak side of the class-ratio pair."""
DIGITS_LORA = "w2sd_digits_lora.safetensors"
"""Kohya-format LoRA (`lora_unet_joint_blocks_*`) trained on top of DIGITS_WEAK on the data's class ratio."""
DIGITS_VAE = "w2sd_digits_vae.safetensors"
"""The exact digit VAE on its own (TAESD-shaped, hand-set weights) for VAELoader; the checkpoints hold it too."""

EPS_STRONG = "w2sd_digits_eps_strong.safetensors"
"""The SD1.5-family (EPS) counterpart of DIGITS_STRONG: ComfyUI's UNet, trained with the same recipe
(benchmarks/learned_train_eps.py); loads as SD15 with CheckpointLoaderSimple."""
EPS_WEAK = "w2sd_digits_eps_weak.safetensors"
"""EPS_STRONG fine-tuned at WEAK_SHARE, as DIGITS_WEAK."""
EPS_LORA = "w2sd_digits_eps_lora.safetensors"
"""Kohya-format LoRA (`lora_unet_*_transformer_blocks_*`) trained on top of EPS_WEAK on the data's ratio."""

V_STRONG = "w2sd_digits_v_strong.safetensors"
"""EPS_STRONG's recipe with v-prediction. An SD1.5 file does not say v (ComfyUI reads that for SDXL-class
models only): load it with CheckpointLoaderSimple, then ModelSamplingDiscrete(sampling="v_prediction")."""
V_WEAK = "w2sd_digits_v_weak.safetensors"
V_LORA = "w2sd_digits_v_lora.safetensors"

EPS_DISTILLED_STRONG = "w2sd_digits_eps_distilled_strong.safetensors"
"""EPS_STRONG progressively distilled (benchmarks/learned_distill.py) into a 4-step model for euler with the
sgm_uniform schedule at cfg 1, as SDXL Lightning / DMD2 / Hyper-SD are run; loads as SD15 like EPS_STRONG."""
EPS_DISTILLED_WEAK = "w2sd_digits_eps_distilled_weak.safetensors"
"""EPS_WEAK distilled the same way (its own class ratio kept)."""

FAMILIES: dict[str, dict[str, str]] = {
    "flow": {"strong": DIGITS_STRONG, "weak": DIGITS_WEAK, "lora": DIGITS_LORA},
    "eps": {"strong": EPS_STRONG, "weak": EPS_WEAK, "lora": EPS_LORA},
    "v": {"strong": V_STRONG, "weak": V_WEAK, "lora": V_LORA},
    "eps_distilled": {"strong": EPS_DISTILLED_STRONG, "weak": EPS_DISTILLED_WEAK, "lora": EPS_LORA},
}
"""Each model family's strong and weak checkpoints and LoRA (the flow MMDiTs, the SD1.5 EPS and v UNets, the
4-step distilled EPS UNets with the EPS LoRA)."""
MANIFESTS = {
    "flow": "manifest.json",
    "eps": "manifest_eps.json",
    "v": "manifest_v.json",
    "eps_distilled": "manifest_eps_distilled.json",
}
"""Each family's training record in WEIGHTS_DIR (its source hash and the models' figures alone)."""

LEARNED: dict[str, str] = {
    DIGITS_STRONG: "checkpoints",
    DIGITS_WEAK: "checkpoints",
    DIGITS_LORA: "loras",
    DIGITS_VAE: "vae",
    EPS_STRONG: "checkpoints",
    EPS_WEAK: "checkpoints",
    EPS_LORA: "loras",
    V_STRONG: "checkpoints",
    V_WEAK: "checkpoints",
    V_LORA: "loras",
    EPS_DISTILLED_STRONG: "checkpoints",
    EPS_DISTILLED_WEAK: "checkpoints",
}
"""Every learned file and the `models/` subfolder it belongs in."""

WEIGHT_FILES = {
    DIGITS_STRONG: "digits_strong.safetensors",
    DIGITS_WEAK: "digits_weak.safetensors",
    DIGITS_LORA: "digits_lora.safetensors",
    EPS_STRONG: "digits_eps_strong.safetensors",
    EPS_WEAK: "digits_eps_weak.safetensors",
    EPS_LORA: "digits_eps_lora.safetensors",
    V_STRONG: "digits_v_strong.safetensors",
    V_WEAK: "digits_v_weak.safetensors",
    V_LORA: "digits_v_lora.safetensors",
    EPS_DISTILLED_STRONG: "digits_eps_distilled_strong.safetensors",
    EPS_DISTILLED_WEAK: "digits_eps_distilled_weak.safetensors",
}
"""Shipped trained weights (in WEIGHTS_DIR) behind each file."""

# -- prompts and data set-up --------------------------------------------------------------------------

RAW_PROMPT = "a handwritten digit"
"""The raw prompt (no class); trained as the unconditional prompt, like the empty one."""
NEGATIVE_PROMPT = ""


def prompt(k: int) -> str:
    """The refined (class) prompt for digit k: "a handwritten digit 3"."""
    if not (isinstance(k, int) and 0 <= k <= 9):
        raise ValueError(f"k: {k!r}, expected a digit 0..9")
    return f"{RAW_PROMPT} {k}"


MINORITY = (0, 1, 2, 3, 4)
"""The under-represented digits of the class-ratio set-up (half of the data, each digit about 1/10)."""
STRONG_SHARE = 0.3
"""Share of the minority digits in DIGITS_STRONG's training data (each digit of a side shares its side's part
equally)."""
WEAK_SHARE = 0.1
"""Share of the minority digits in DIGITS_WEAK's fine-tuning data."""
LORA_SHARE = 0.5
"""Share of the minority digits in the LoRA's training data: the data's own ratio (10 balanced classes)."""
# The data's share is measured by the judges on the held-out digits (judges.class_shares): about 0.5.

PIXEL_MEAN = 0.3
PIXEL_STD = 0.4
"""A digit pixel p in [0, 1] is the model-space latent z = (p - PIXEL_MEAN) / PIXEL_STD in channel 0 (others 0)."""
SD3_SCALE, SD3_SHIFT = 1.5305, 0.0609
"""ComfyUI's SD3 latent format: model-space z = (raw - SHIFT) * SCALE; a LATENT holds raw."""
VAE_SCALE = PIXEL_STD * SD3_SCALE
VAE_SHIFT = SD3_SHIFT - PIXEL_MEAN / VAE_SCALE
"""TAESD's vae_scale / vae_shift: raw = encoder(p) / VAE_SCALE + VAE_SHIFT, so the encoder outputs p itself."""


SD15_SCALE = 0.18215
"""ComfyUI's SD1.5 latent format: model-space z = raw * SCALE."""
EPS_VAE_SCALE = PIXEL_STD * SD15_SCALE
EPS_VAE_SHIFT = -PIXEL_MEAN / EPS_VAE_SCALE
"""The EPS checkpoints' TAESD vae_scale / vae_shift: raw = p / EPS_VAE_SCALE + EPS_VAE_SHIFT in channel 0."""


def latent_to_digit(samples: Any) -> Any:
    """Raw LATENT samples (B, C, 8, 8) -> unclamped digits (B, 8, 8): what the VAE decodes, before the clamp.
    The channel count tells the family: 16 (SD3, the flow models) or 4 (SD1.5, the EPS models)."""
    if samples.shape[1] == 4:
        return (samples[:, 0] - EPS_VAE_SHIFT) * EPS_VAE_SCALE
    return (samples[:, 0] - VAE_SHIFT) * VAE_SCALE


EPS_CHANNELS = 64
"""Width the EPS UNet is trained and shipped at."""
EPS_WIDEN = 5
"""SD1.5's model_channels (320, what ComfyUI detects SD15 by) over EPS_CHANNELS."""
EPS_UNET_CONFIG: dict[str, Any] = {
    "use_checkpoint": False,
    "image_size": 32,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": EPS_CHANNELS,
    "num_res_blocks": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [0, 1],
    "channel_mult": [1],
    "transformer_depth_middle": -2,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
"""ComfyUI's UNetModel as trained: one level (8 x 8), a ResBlock and a cross-attention transformer in, no
middle block, two ResBlocks out (the first with a transformer). Keys as comfy.model_detection reports them."""


def wide_unet_config() -> dict[str, Any]:
    """EPS_UNET_CONFIG at SD1.5's 320 channels: what the checkpoints hold and ComfyUI detects as SD15."""
    return {**EPS_UNET_CONFIG, "model_channels": EPS_CHANNELS * EPS_WIDEN}


def widen_unet(sd: dict[str, Any], factor: int) -> dict[str, Any]:
    """The same function at `factor` x the channels: every hidden channel repeated `factor` times.

    A UNet state dict (or a Kohya LoRA for it) of ComfyUI's UNetModel at C channels -> at factor * C, exact:
    layers reading repeated channels divide by `factor`; GroupNorm's 32 groups and LayerNorm see each
    channel `factor` times (same statistics); attention heads keep their channels, so queries scale by
    1 / sqrt(factor) for the wider head's softmax scale; GEGLU repeats its value and gate halves apart;
    the sinusoidal time embedding at factor * C holds C's frequencies at every factor-th index. The latent
    (conv in, out.2) and the text context (cross-attention to_k / to_v) keep their width.
    """
    import torch

    out = {}
    for key, t in sd.items():
        name = key.replace("_", ".")  # one spelling for UNet keys and Kohya keys
        t = t.float()
        if name.endswith(".alpha"):
            out[key] = t
            continue
        down, up = name.endswith("lora.down.weight"), name.endswith("lora.up.weight")
        if not down and not name.startswith("out.2."):
            if "ff.net.0.proj" in name:
                t = t.reshape(2, -1, *t.shape[1:]).repeat_interleave(factor, 1).flatten(0, 1)
            else:
                t = t.repeat_interleave(factor, 0)
            if "to.q" in name:
                t = t / factor**0.5
        reads_hidden = not any(k in name for k in ("attn2.to.k", "attn2.to.v")) and not name.startswith(
            "input.blocks.0.0."
        )
        if (down or (t.ndim >= 2 and not up)) and reads_hidden:
            if name.startswith("time.embed.0."):
                half = t.shape[1] // 2
                wide = t.new_zeros(t.shape[0], 2 * half * factor)
                wide[:, : half * factor : factor] = t[:, :half]
                wide[:, half * factor :: factor] = t[:, half:]
                t = wide
            else:
                t = t.repeat_interleave(factor, 1) / factor
        out[key] = t.to(torch.float16).contiguous()
    return out


PAIRS: dict[str, dict[str, Any]] = {
    "checkpoints": {
        "what": "two checkpoints whose training data have different class ratios (paper Sec. 3.2)",
        "strong": DIGITS_STRONG,
        "weak": DIGITS_WEAK,
        "positive": RAW_PROMPT,
        "negative": NEGATIVE_PROMPT,
        "cfg": 1.0,
        "metric": "minority_share",
        "minority": MINORITY,
        "shares": {"strong": STRONG_SHARE, "weak": WEAK_SHARE, "data": LORA_SHARE},
        "goal": "share of MINORITY among samples moves from the strong model's toward the data's",
    },
    "lora": {
        "what": "one LoRA at +s (strong) and -w (weak) on its base, through W2SDLoraSplit",
        "checkpoint": DIGITS_WEAK,
        "lora": DIGITS_LORA,
        "scales": {"main": 0.8, "strong": 1.5, "weak": -1.5},
        "positive": RAW_PROMPT,
        "negative": NEGATIVE_PROMPT,
        "cfg": 1.0,
        "metric": "minority_share",
        "minority": MINORITY,
        "goal": "share of MINORITY moves from the LoRA-at-main-scale model's toward the data's",
    },
    "cfg": {
        "what": "CFG gap (Z-Sampling) on the class-conditional model, through W2SDCFGGap",
        "checkpoint": DIGITS_COND,
        "positive": "prompt(k) for k in 0..9",
        "negative": NEGATIVE_PROMPT,
        "cfg": 1.0,
        "strong_cfg": 3.0,
        "weak_cfg": 0.0,
        "metric": "prompt_accuracy",
        "goal": "share of samples the classifier calls the prompt's digit rises",
    },
    "prompt": {
        "what": "refined vs raw prompt on one model, through W2SDModelPair (per-side positive)",
        "checkpoint": DIGITS_COND,
        "strong_positive": "prompt(k)",
        "weak_positive": RAW_PROMPT,
        "negative": NEGATIVE_PROMPT,
        "cfg": 1.0,
        "metric": "prompt_accuracy",
        "goal": "share of samples the classifier calls the refined prompt's digit rises",
    },
    "lora_cfg": {
        "what": "LoRA split and CFG gap stacked (the paper's best setting): W2SDLoraSplit -> W2SDCFGGap",
        "checkpoint": DIGITS_WEAK,
        "lora": DIGITS_LORA,
        "scales": {"main": 0.8, "strong": 1.5, "weak": -1.5},
        "positive": "prompt(k) for k in 0..9",
        "negative": NEGATIVE_PROMPT,
        "cfg": 1.0,
        "strong_cfg": 3.0,
        "weak_cfg": 0.0,
        "metric": "prompt_accuracy",
        "goal": "prompt accuracy rises (and the minority digits' prompt accuracy with it)",
    },
}
"""The paper's pairs on these models: files, prompts, scales and the metric each should move."""


def pairs(family: str = "flow") -> dict[str, dict[str, Any]]:
    """PAIRS on a family's models (FAMILIES): the same prompts, scales and metrics, that family's files."""
    import copy

    files = FAMILIES[family]
    swap = {DIGITS_STRONG: files["strong"], DIGITS_WEAK: files["weak"], DIGITS_LORA: files["lora"]}
    return {
        key: {k: swap.get(v, v) if isinstance(v, str) else copy.deepcopy(v) for k, v in pair.items()}
        for key, pair in PAIRS.items()
    }


# -- cache ----------------------------------------------------------------------------------------------


TRAINING_FIXTURE_FUNCTIONS = (
    "_seed",
    "deterministic_fill",
    "_unet_config_sd3_mini",
    "_diffusion_model_sd",
    "_clip_l_sd",
    "_taesd_sd",
    "_checkpoint_sd",
)
"""The parts of tests/fixtures/checkpoints.py training depends on (init, CLIP weights, layout)."""


def source_hash(family: str = "flow") -> str:
    """Hash of what a family's shipped weights are a function of: the training script(s), the train split,
    the set-up constants and the fixture code that makes the CLIP and the initial weights (the EPS family:
    also its own script and UNet config; the distilled one: the EPS family's hash, the EPS teachers' shipped
    weights and the distillation script). Imports numpy/scikit-learn."""
    import inspect

    if family not in MANIFESTS:
        raise ValueError(f"family: {family!r}, expected one of {', '.join(MANIFESTS)}")
    if family == "eps_distilled":
        h = hashlib.sha256(source_hash("eps").encode())
        for side in ("strong", "weak"):
            h.update((WEIGHTS_DIR / WEIGHT_FILES[FAMILIES["eps"][side]]).read_bytes())
        h.update(DISTILL_SCRIPT.read_bytes())
        return h.hexdigest()[:16]
    for folder in (JUDGES_SCRIPT.parent, FIXTURES_SCRIPT.parents[1]):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    import judges
    from fixtures import checkpoints

    digits = judges.load_digits()
    h = hashlib.sha256(TRAIN_SCRIPT.read_bytes())
    h.update(digits.train_x.tobytes())
    h.update(digits.train_y.tobytes())
    setup = (MINORITY, STRONG_SHARE, WEAK_SHARE, LORA_SHARE, PIXEL_MEAN, PIXEL_STD, NEGATIVE_PROMPT)
    h.update(repr((setup, [prompt(k) for k in range(10)], RAW_PROMPT)).encode())
    for name in TRAINING_FIXTURE_FUNCTIONS:
        h.update(inspect.getsource(getattr(checkpoints, name)).encode())
    if family != "flow":
        h.update(TRAIN_SCRIPT_EPS.read_bytes())
        h.update(repr((family, sorted(EPS_UNET_CONFIG.items()), EPS_WIDEN)).encode())
    return h.hexdigest()[:16]


def comfyui_version(comfyui_dir: str | os.PathLike[str]) -> str:
    import re

    text = (Path(comfyui_dir) / "comfyui_version.py").read_text()
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    if match is None:
        raise ValueError(f"no __version__ in {comfyui_dir}/comfyui_version.py")
    return match.group(1)


def cache_key(comfyui_dir: str | os.PathLike[str]) -> str:
    """Hash of the shipped weights, this builder, the CLIP builder, ComfyUI version and torch version."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(FIXTURES_SCRIPT.read_bytes())
    for name in sorted(WEIGHT_FILES.values()):
        h.update((WEIGHTS_DIR / name).read_bytes())
    h.update(comfyui_version(comfyui_dir).encode())
    h.update(importlib.metadata.version("torch").encode())
    return h.hexdigest()[:16]


def ensure_learned_models(comfyui_dir: str | os.PathLike[str], python: str | None = None) -> Path:
    """Return the cache folder holding every learned file, assembling and verifying it first if needed."""
    key = cache_key(Path(comfyui_dir).resolve())
    return _fixtures().build_cached(
        CACHE_ROOT, key, LEARNED, __file__, comfyui_dir, python, "the learned models"
    )


def install_learned_models(
    base_dir: str | os.PathLike[str], comfyui_dir: str | os.PathLike[str], python: str | None = None
) -> dict[str, Path]:
    """Link every learned file into `<base_dir>/models/<subfolder>/`; returns {file name: installed path}."""
    return _fixtures().link_into_models(ensure_learned_models(comfyui_dir, python), LEARNED, base_dir)


# ---------------------------------------------------------------------------------------------------
# Building (child process: torch and ComfyUI imported here only)
# ---------------------------------------------------------------------------------------------------


def _fixtures() -> Any:
    sys.path.insert(0, str(FIXTURES_SCRIPT.parent.parent))
    from fixtures import checkpoints

    return checkpoints


def digit_vae_sd(
    latent_channels: int = 16, scale: float = VAE_SCALE, shift: float = VAE_SHIFT
) -> dict[str, Any]:
    """TAESD-shaped VAE whose encode/decode are exact inverses on 8x-upsampled digits (16 latent channels
    and SD3's scaling for the flow models; 4 and SD1.5's, EPS_VAE_SCALE / EPS_VAE_SHIFT, for the EPS ones).

    Encoder: gray -> channel 0, identity blocks (ReLU of a non-negative signal), stride-2 convs that pick
    one pixel of each 2x2: the 64 x 64 image's pixel (8i, 8j) is latent (i, j); other channels hold the
    mean so their model-space latent is 0. Decoder: undoes TAESD's tanh clamp with a 64-knot
    piecewise-linear inverse (ReLU(y - t_i) per channel), carried through identity blocks and nearest
    upsampling, summed back to gray.
    """
    import comfy.taesd.taesd
    import torch

    sd = {
        k: torch.zeros_like(v, dtype=torch.float32)
        for k, v in comfy.taesd.taesd.TAESD(latent_channels=latent_channels).state_dict().items()
    }
    sd["vae_scale"] = torch.tensor(scale)
    sd["vae_shift"] = torch.tensor(shift)

    def identity(key: str, channels: int = 64) -> None:
        for c in range(channels):
            sd[key][c, c, 1, 1] = 1.0

    enc, dec = "taesd_encoder", "taesd_decoder"
    sd[f"{enc}.0.weight"][0, :, 1, 1] = 1.0 / 3.0
    for i in (2, 6, 10):
        identity(f"{enc}.{i}.weight")
    sd[f"{enc}.14.weight"][0, 0, 1, 1] = 1.0
    sd[f"{enc}.14.bias"][1:] = PIXEL_MEAN
    # Blocks keep their zero convs: Block(x) = ReLU(x + 0) = x for the non-negative signals here.

    knots = torch.linspace(0.0, 1.2, 64, dtype=torch.float64)
    inverse_clamp = 3 * torch.atanh(knots / 3)  # tanh(p / 3) * 3 = y  <=>  p = 3 atanh(y / 3)
    slopes = torch.diff(inverse_clamp) / torch.diff(knots)
    coeffs = torch.cat([slopes[:1], torch.diff(slopes), torch.zeros(1, dtype=torch.float64)])
    sd[f"{dec}.1.weight"][:, 0, 1, 1] = 1.0
    sd[f"{dec}.1.bias"][:] = -knots.float()
    for i in (7, 12, 17):
        identity(f"{dec}.{i}.weight")
    for rgb in range(3):
        sd[f"{dec}.19.weight"][rgb, :, 1, 1] = coeffs.float()
    # decode() returns 2 * out - 1 and the VAE wrapper maps it back by (x + 1) / 2: out is the pixel.
    return sd


def build(comfyui_dir: Path, out_dir: Path) -> None:
    """Assemble every learned file into out_dir from the shipped weights and verify it (CPU only)."""
    sys.path.insert(0, str(comfyui_dir))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.utils
    import safetensors.torch

    fx = _fixtures()
    clip_sd = fx._clip_l_sd()
    sd15 = (fx._diffusion_model_sd(wide_unet_config())[0], digit_vae_sd(4, EPS_VAE_SCALE, EPS_VAE_SHIFT))
    shells = {
        "flow": (fx._diffusion_model_sd(fx._unet_config_sd3_mini())[0], digit_vae_sd()),
        "eps": sd15,
        "v": sd15,
        "eps_distilled": sd15,
    }
    for family, (model, vae_sd) in shells.items():
        files = FAMILIES[family]
        for name in (files["strong"], files["weak"]):
            unet_sd = comfy.utils.load_torch_file(str(WEIGHTS_DIR / WEIGHT_FILES[name]))
            if family != "flow":
                unet_sd = widen_unet(unet_sd, EPS_WIDEN)
            sd = fx._checkpoint_sd(model, unet_sd, clip_sd, vae_sd)
            safetensors.torch.save_file(sd, str(out_dir / name), metadata={"w2sd_learned": name})
        if (out_dir / files["lora"]).exists():  # the distilled family shares the EPS LoRA
            continue
        lora_sd = comfy.utils.load_torch_file(str(WEIGHTS_DIR / WEIGHT_FILES[files["lora"]]))
        if family != "flow":
            lora_sd = widen_unet(lora_sd, EPS_WIDEN)
        safetensors.torch.save_file(lora_sd, str(out_dir / files["lora"]))
    vae_sd = shells["flow"][1]
    safetensors.torch.save_file({k: v.contiguous() for k, v in vae_sd.items()}, str(out_dir / DIGITS_VAE))
    verify(out_dir)


def verify(out_dir: Path) -> dict[str, float]:
    """Load every file through the stock loaders; check the VAE round trip, that every LoRA module maps and
    that each widened EPS UNet computes what was trained."""
    import comfy.lora
    import comfy.model_base
    import comfy.sd
    import comfy.utils
    import torch

    sys.path.insert(0, str(JUDGES_SCRIPT.parent))
    import judges

    figures = {}
    digits = torch.from_numpy(judges.load_digits().test_x[:100])  # 100: the VAE's activations stay small
    image = torch.from_numpy(judges.digit_to_image(digits))
    # An SD1.5 file does not say v-prediction: the v family loads as EPS until ModelSamplingDiscrete sets it.
    eps = comfy.model_base.ModelType.EPS
    expected_models = {
        "flow": ("SD3", comfy.model_base.ModelType.FLOW),
        "eps": ("SD15", eps),
        "v": ("SD15", eps),
        "eps_distilled": ("SD15", eps),
    }
    for family, (config_name, model_type) in expected_models.items():
        files = FAMILIES[family]
        for name in (files["strong"], files["weak"]):
            model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(out_dir / name))
            detected = type(model.model.model_config).__name__
            if detected != config_name or model.model.model_type != model_type or clip is None or vae is None:
                raise RuntimeError(
                    f"{name}: loaded as {detected} {model.model.model_type} (clip {clip}, vae {vae}), "
                    f"expected {config_name} {model_type}"
                )
            raw = vae.encode(image).detach()
            z = model.model.latent_format.process_in(raw)
            expected = (digits - PIXEL_MEAN) / PIXEL_STD
            figures["encode_error"] = float((z[:, 0] - expected).abs().max())
            figures["encode_other_channels"] = float(z[:, 1:].abs().max())
            back = judges.image_to_digit(vae.decode(raw))
            figures["round_trip_error"] = float((torch.from_numpy(back) - digits).abs().max())
            if (
                figures["encode_error"] > 1e-3
                or figures["encode_other_channels"] > 1e-3
                or figures["round_trip_error"] > 2e-3
            ):
                raise RuntimeError(f"{name}: VAE is not exact on the digits: {figures}")
            if family != "flow":
                figures["widen_error"] = _widen_error(model.model, WEIGHTS_DIR / WEIGHT_FILES[name])
                if figures["widen_error"] > 1e-2:
                    raise RuntimeError(f"{name}: the widened UNet differs from the trained one: {figures}")
            if name == files["weak"]:
                lora_sd = comfy.utils.load_torch_file(str(out_dir / files["lora"]))
                key_map = comfy.lora.model_lora_keys_unet(model.model, {})
                patches = comfy.lora.load_lora(lora_sd, key_map)
                modules = len([k for k in lora_sd if k.endswith(".alpha")])
                if modules == 0 or len(patches) != modules:
                    raise RuntimeError(f"{files['lora']}: {len(patches)} of {modules} modules mapped")
                figures[f"lora_modules_{family}"] = modules
            del model, clip, vae  # one checkpoint in memory at a time
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(out_dir / DIGITS_VAE)))
    if vae.latent_channels != 16:
        raise RuntimeError(f"{DIGITS_VAE}: {vae.latent_channels} latent channels, expected 16")
    return figures


def _widen_error(wide: Any, shipped: Path) -> float:
    """Max difference between the loaded (widened) UNet's denoised output and the shipped EPS_CHANNELS-wide
    UNet's on fixed random latents, relative to the output's scale."""
    import comfy.model_base
    import comfy.supported_models
    import comfy.utils
    import torch

    small = comfy.model_base.BaseModel(
        comfy.supported_models.SD15(EPS_UNET_CONFIG), model_type=wide.model_type
    )
    small.diffusion_model.load_state_dict(comfy.utils.load_torch_file(str(shipped)))
    small = small.float()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 4, 8, 8, generator=gen) * 3
    context = torch.randn(4, 77, 768, generator=gen)
    sigma = torch.tensor([0.1, 1.0, 3.0, 14.0])
    with torch.no_grad():
        a = small.apply_model(x, sigma, c_crossattn=context)
        b = wide.apply_model(x, sigma, c_crossattn=context).float()
    return float((a - b).abs().max() / a.abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI source folder")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the learned files into")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    build(args.comfyui.resolve(), args.out)
    for name in LEARNED:
        print(f"built {name} ({(args.out / name).stat().st_size / 2**20:.1f} MiB)")


def manifest(family: str = "flow") -> dict[str, Any]:
    """A family's shipped weights' manifest (written by benchmarks/learned_train.py / learned_train_eps.py /
    learned_distill.py)."""
    return json.loads((WEIGHTS_DIR / MANIFESTS[family]).read_text())


if __name__ == "__main__":
    main()
