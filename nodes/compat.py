"""Feature detection for the ComfyUI core APIs that W2SD uses and that differ between core versions.

Tested cores: 0.3.52, 0.3.75 and 0.29.0 (the newest reachable; upstream is at 0.35); see
docs/COMPATIBILITY.md for the table. Every probe is guarded: importing this module never raises, whatever
ComfyUI (or none) is on sys.path; a probe that cannot run reports the feature as absent. Each absent
feature is logged once, at import, as one `[W2SD]` line saying what the pack does instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LATENT_HINT_KEYS = ("downscale_ratio_spacial", "downscale_ratio_temporal")
"""Keys newer empty-latent nodes put in a LATENT dict; the stock KSampler consumes and drops them."""

BYPASS_INJECTION_KEY = "bypass_lora"
"""Injection key of core bypass-mode LoRA (comfy.sd.load_bypass_lora_for_models, ComfyUI >= 0.11)."""


# --- guarded probes ------------------------------------------------------------------------------
def _module(name: str) -> Any:
    """The imported module, or None if it is missing or fails to import."""
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def _has_spec(name: str) -> bool:
    """Whether a (sub)module exists, without importing it (its parent package is imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:
        return False


def _get(obj: Any, dotted: str) -> Any:
    """obj.a.b.c, or None if any step is missing."""
    for part in dotted.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part, None)
    return obj


def _params(fn: Any) -> frozenset[str]:
    """Parameter names of a callable; empty if it is missing or has no inspectable signature."""
    if fn is None:
        return frozenset()
    try:
        return frozenset(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return frozenset()


def _source(fn: Any) -> str:
    try:
        return inspect.getsource(fn) if fn is not None else ""
    except (OSError, TypeError):
        return ""


_samplers = _module("comfy.samplers")
_patcher = _module("comfy.model_patcher")
_ext = _module("comfy.patcher_extension")
_sample = _module("comfy.sample")
_lora = _module("comfy.lora")
_lora_convert = _module("comfy.lora_convert")
_adapters = _module("comfy.weight_adapter")
_sd = _module("comfy.sd")
_hooks = _module("comfy.hooks")
_preview = _module("latent_preview")
_v3 = _module("comfy_api.latest")

_MP = _get(_patcher, "ModelPatcher")
_GUIDER = _get(_samplers, "CFGGuider")

COMFYUI_VERSION: str | None = _get(_module("comfyui_version"), "__version__")
"""ComfyUI's version string (comfyui_version.py), None if unknown."""

# --- sampling ------------------------------------------------------------------------------------
HAS_GUIDER_API = all(
    x is not None
    for x in (
        _get(_GUIDER, "inner_sample"),
        _get(_GUIDER, "predict_noise"),
        _get(_GUIDER, "inner_set_conds"),
        _get(_samplers, "KSAMPLER"),
        _get(_samplers, "sampling_function"),
        _get(_samplers, "sampler_object"),
        _get(_samplers, "KSampler"),
        _get(_sample, "prepare_noise"),
        _get(_sample, "fix_empty_latent_channels"),
        _get(_preview, "prepare_callback"),
    )
)
"""CFGGuider (inner_sample, predict_noise, inner_set_conds), KSAMPLER, sampling_function, sampler_object,
KSampler, comfy.sample.prepare_noise / fix_empty_latent_channels, latent_preview.prepare_callback."""

INNER_SAMPLE_TAKES_LATENT_SHAPES = "latent_shapes" in _params(_get(_GUIDER, "inner_sample"))
"""CFGGuider.outer_sample/inner_sample get `latent_shapes=` (ComfyUI >= 0.3.67): overrides must accept it."""

HAS_NESTED_LATENTS = INNER_SAMPLE_TAKES_LATENT_SHAPES and _has_spec("comfy.nested_tensor")
"""Multi-latent sampling: a NestedTensor LATENT is packed into one flat tensor by CFGGuider.sample."""

PREDICT_NOISE_PARAMS = _params(_get(_GUIDER, "predict_noise"))
"""CFGGuider.predict_noise parameters (x, timestep, model_options, seed on every version read)."""

_KSAMPLER_SOURCE = _source(_get(_samplers, "KSAMPLER.sample"))
KSAMPLER_READS_FUNCTION_NAME = (
    "sampler_function.__name__" in _KSAMPLER_SOURCE
    and "getattr(self.sampler_function" not in _KSAMPLER_SOURCE
)
"""KSAMPLER.sample reads `sampler_function.__name__` unguarded (upstream master 2026-07-28 .. PR #15179): a
functools.partial sampler function then fails on the first callback. Use `named_sampler_function`."""

SA_SOLVER_RETURNS_LAST_STEP = "return x_pred" in _source(
    _get(_module("comfy.k_diffusion.sampling"), "sample_sa_solver")
)
"""sample_sa_solver returns its last predicted state (0.29.0). On 0.3.52 and 0.3.75 it returns the state
before it, so a one-step schedule that does not end at sigma 0 takes no step."""

NO_LONE_STEP_SAMPLERS = frozenset(
    {"sample_unipc", "sample_unipc_bh2"}
    | (set() if SA_SOLVER_RETURNS_LAST_STEP else {"sample_sa_solver", "sample_sa_solver_pece"})
)
"""Sampler functions (by `__name__`) that take no step on a one-step schedule: UniPC picks
`order = min(3, len(sigmas) - 2)`, order 0 on 2 sigmas, and only rescales its input (0.3.52 .. 0.29.0);
SA-Solver, see SA_SOLVER_RETURNS_LAST_STEP."""

ONE_EVALUATION_PER_STEP_SAMPLERS = frozenset(
    (
        "sample_euler sample_euler_ancestral sample_euler_cfg_pp sample_euler_ancestral_cfg_pp sample_lms "
        "sample_ipndm sample_ipndm_v sample_deis sample_dpmpp_2m sample_dpmpp_2m_cfg_pp sample_dpmpp_2m_sde "
        "sample_dpmpp_2m_sde_gpu sample_dpmpp_3m_sde sample_dpmpp_3m_sde_gpu sample_res_multistep "
        "sample_res_multistep_cfg_pp sample_gradient_estimation sample_gradient_estimation_cfg_pp sample_lcm"
    ).split()
)
"""Sampler functions (by `__name__`) that call the model exactly once per step, with the latent they then
step from (read in comfy/k_diffusion/sampling.py of 0.3.52, 0.3.75 and 0.29.0): the ones whose window
steps can be reflected inside their own loop (`keep_sampler_history`)."""

# comfy.sample.sample casts the sampled latent to `intermediate_dtype()` (fp16 with --fp16-intermediates);
# older cores only move it to the intermediate device.
SAMPLE_CASTS_TO_INTERMEDIATE_DTYPE = "intermediate_dtype" in _source(_get(_sample, "sample"))

_FIX_EMPTY_PARAMS = _params(_get(_sample, "fix_empty_latent_channels"))
FIX_EMPTY_LATENT_HINTS = tuple(k for k in LATENT_HINT_KEYS if k in _FIX_EMPTY_PARAMS)
"""LATENT hint keys fix_empty_latent_channels accepts (spacial >= 0.11, temporal >= 0.22)."""

# --- model patcher -------------------------------------------------------------------------------
HAS_INJECTIONS = all(
    x is not None
    for x in (
        _get(_MP, "set_injections"),
        _get(_MP, "get_injections"),
        _get(_ext, "PatcherInjection"),
    )
)
"""ModelPatcher.set_injections / get_injections and patcher_extension.PatcherInjection."""

HAS_KEYED_WRAPPERS = (
    _get(_MP, "add_wrapper_with_key") is not None and _get(_ext, "WrappersMP.APPLY_MODEL") is not None
)
"""ModelPatcher.add_wrapper_with_key and WrappersMP.APPLY_MODEL."""

HAS_CLONE_HAS_SAME_WEIGHTS = (
    _get(_MP, "clone_has_same_weights") is not None and _get(_MP, "is_clone") is not None
)

HAS_ADDITIONAL_MODELS = _get(_MP, "set_additional_models") is not None
"""ModelPatcher.set_additional_models: extra checkpoints loaded in the same load_models_gpu call."""

HAS_MODEL_OPTIONS_CLONE = _get(_patcher, "create_model_options_clone") is not None and (
    _get(_ext, "merge_nested_dicts") is not None
)

PREPARE_STATE_TAKES_MODEL_OPTIONS = "model_options" in _params(_get(_MP, "prepare_state"))
"""ModelPatcher.prepare_state(timestep, model_options) and ON_PREPARE_STATE callbacks with model_options
(ComfyUI >= 0.23); before: prepare_state(timestep)."""

HAS_DYNAMIC_VRAM = _get(_patcher, "ModelPatcherDynamic") is not None
"""ModelPatcherDynamic exists (>= 0.12; the default patcher on CUDA from 0.16 unless --disable-dynamic-vram).
Weight hooks raise on a dynamic patcher; CFGGuider.inner_set_conds swaps to a non-dynamic delegate."""

HAS_MULTIGPU = _has_spec("comfy.multigpu")
"""Multi-GPU work units (comfy.multigpu, MultiGPU_WorkUnits node; >= 0.23)."""


def _merge_keeps_order() -> bool:
    merge = _get(_ext, "merge_nested_dicts")
    if merge is None:
        return False
    try:
        return bool(merge({"w": {"k": [1]}}, {"w": {"k": [2]}}) == {"w": {"k": [1, 2]}})
    except Exception:
        return False


MERGE_NESTED_DICTS_KEEPS_ORDER = _merge_keeps_order()
"""merge_nested_dicts appends dict2's nested lists after dict1's (>= 0.3.66; 0.3.52 put them first)."""

# --- LoRA ----------------------------------------------------------------------------------------
HAS_LORA_KEY_API = all(
    x is not None
    for x in (
        _get(_lora, "load_lora"),
        _get(_lora, "model_lora_keys_unet"),
        _get(_lora_convert, "convert_lora"),
        _get(_adapters, "LoRAAdapter"),
        _get(_sd, "load_lora_for_models"),
    )
)
"""comfy.lora.load_lora / model_lora_keys_unet, lora_convert.convert_lora, weight_adapter.LoRAAdapter
(`.weights` = up, down, alpha, mid, dora_scale, reshape), comfy.sd.load_lora_for_models."""

HAS_BYPASS_LORA = _get(_sd, "load_bypass_lora_for_models") is not None and _has_spec(
    "comfy.weight_adapter.bypass"
)
"""Core bypass-mode LoRA (forward injection under key "bypass_lora", ComfyUI >= 0.11)."""

HAS_HOOKS = all(
    _get(_hooks, n) is not None for n in ("HookGroup", "create_hook_lora", "set_hooks_for_conditioning")
)

# --- node API ------------------------------------------------------------------------------------
HAS_V3_SCHEMA = all(
    _get(_v3, n) is not None for n in ("io.ComfyNode", "io.Custom", "io.Schema", "ComfyExtension")
)
"""comfy_api.latest: io.ComfyNode, io.Custom, io.Schema, ComfyExtension (a pack's comfy_entrypoint)."""

HAS_NODE_REPLACE = _get(_v3, "io.NodeReplace") is not None
"""comfy_api.latest io.NodeReplace: register a replacement for a renamed node id (>= 0.14)."""


def _server_reads_search_aliases() -> bool:
    try:
        server = Path(_samplers.__file__).resolve().parent.parent / "server.py"
        return "SEARCH_ALIASES" in server.read_text(encoding="utf-8", errors="replace")
    except Exception:
        return False


HAS_SEARCH_ALIASES = _server_reads_search_aliases()
"""The server's /object_info sends a node's SEARCH_ALIASES (>= 0.11)."""


# --- adapters ------------------------------------------------------------------------------------
def named_sampler_function(function: Callable[..., Any], name: str | None = None) -> Callable[..., Any]:
    """`function` given a `__name__` if it has none (a functools.partial: its func's name). Returns it."""
    if not hasattr(function, "__name__"):
        try:
            function.__name__ = name or getattr(getattr(function, "func", None), "__name__", "w2sd_sampler")  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass
    return function


def fix_empty_latent(model: Any, latent: Mapping[str, Any], samples: Any = None) -> Any:
    """comfy.sample.fix_empty_latent_channels with the LATENT's hint keys where this core takes them."""
    samples = latent["samples"] if samples is None else samples
    hints = {k: latent[k] for k in FIX_EMPTY_LATENT_HINTS if k in latent}
    return _sample.fix_empty_latent_channels(model, samples, **hints)


def sampled_output(samples: Any) -> Any:
    """A sampled latent where comfy.sample.sample leaves it: the intermediate device (and dtype, where cast)."""
    import comfy.model_management as mm

    if SAMPLE_CASTS_TO_INTERMEDIATE_DTYPE:
        return samples.to(device=mm.intermediate_device(), dtype=mm.intermediate_dtype())
    return samples.to(mm.intermediate_device())


def output_latent(latent: Mapping[str, Any], samples: Any) -> dict[str, Any]:
    """The output LATENT as the stock KSampler builds it: a copy, hint keys dropped, new samples."""
    out = {k: v for k, v in latent.items() if k not in LATENT_HINT_KEYS}
    out["samples"] = samples
    return out


def is_dynamic(patcher: Any) -> bool:
    """Whether a ModelPatcher is a ModelPatcherDynamic (always False on cores without it)."""
    probe = getattr(patcher, "is_dynamic", None)
    try:
        return bool(probe()) if callable(probe) else False
    except Exception:
        return False


def uses_multigpu(patcher: Any) -> bool:
    """Whether a ModelPatcher carries multi-GPU clones (MultiGPU_WorkUnits applied)."""
    models = getattr(patcher, "additional_models", None)
    return bool(models.get("multigpu")) if isinstance(models, dict) else False


def has_bypass_lora(patcher: Any) -> bool:
    """Whether a ModelPatcher has a core bypass-mode LoRA injection (LoraLoaderBypass)."""
    injections = getattr(patcher, "injections", None)
    return isinstance(injections, dict) and BYPASS_INJECTION_KEY in injections


def same_weights(a: Any, b: Any) -> bool:
    """a.clone_has_same_weights(b), False where that is missing or fails (treat as different weights)."""
    try:
        return bool(a.clone_has_same_weights(b))
    except Exception:
        return False


def injected_on_top(model: Any, base: Any) -> bool:
    """Whether `model` is `base` plus forward injections only (e.g. a core LoraLoaderBypass applied after a
    W2SD LoRA split): same weights once the injections `base` lacks are removed from a clone of it."""
    try:
        extra = set(model.injections) - set(base.injections)
        if not extra or not set(base.injections) <= set(model.injections):
            return False
        probe = model.clone()
        for key in extra:
            probe.remove_injections(key)
        return same_weights(probe, base)
    except Exception:
        return False


def features() -> dict[str, bool]:
    """Every detected feature by name (for diagnostics and tests)."""
    return {
        "guider_api": HAS_GUIDER_API,
        "inner_sample_latent_shapes": INNER_SAMPLE_TAKES_LATENT_SHAPES,
        "nested_latents": HAS_NESTED_LATENTS,
        "ksampler_reads_function_name": KSAMPLER_READS_FUNCTION_NAME,
        "sa_solver_returns_last_step": SA_SOLVER_RETURNS_LAST_STEP,
        "sample_casts_to_intermediate_dtype": SAMPLE_CASTS_TO_INTERMEDIATE_DTYPE,
        "fix_empty_latent_spacial": "downscale_ratio_spacial" in FIX_EMPTY_LATENT_HINTS,
        "fix_empty_latent_temporal": "downscale_ratio_temporal" in FIX_EMPTY_LATENT_HINTS,
        "injections": HAS_INJECTIONS,
        "keyed_wrappers": HAS_KEYED_WRAPPERS,
        "clone_has_same_weights": HAS_CLONE_HAS_SAME_WEIGHTS,
        "additional_models": HAS_ADDITIONAL_MODELS,
        "model_options_clone": HAS_MODEL_OPTIONS_CLONE,
        "prepare_state_model_options": PREPARE_STATE_TAKES_MODEL_OPTIONS,
        "merge_nested_dicts_keeps_order": MERGE_NESTED_DICTS_KEEPS_ORDER,
        "dynamic_vram": HAS_DYNAMIC_VRAM,
        "multigpu": HAS_MULTIGPU,
        "lora_key_api": HAS_LORA_KEY_API,
        "bypass_lora": HAS_BYPASS_LORA,
        "hooks": HAS_HOOKS,
        "v3_schema": HAS_V3_SCHEMA,
        "node_replace": HAS_NODE_REPLACE,
        "search_aliases": HAS_SEARCH_ALIASES,
    }


# (present?, level, feature, what the pack does instead). Newer-core-only features the pack merely
# guards against (dynamic VRAM, multi-GPU, prepare_state signature, merge order) are not logged.
_MISSING = (
    (HAS_GUIDER_API, logging.WARNING, "comfy.samplers CFGGuider/KSAMPLER sampling API",
     "the W2SD KSampler and W2SD Guider raise when run; update ComfyUI (tested 0.3.52, 0.3.75, 0.29.0)"),
    (HAS_INJECTIONS, logging.WARNING, "ModelPatcher.set_injections / PatcherInjection",
     "the LoRA-scale splitter raises when run; the other nodes work"),
    (HAS_KEYED_WRAPPERS, logging.WARNING, "ModelPatcher.add_wrapper_with_key / WrappersMP.APPLY_MODEL",
     "the LoRA-scale splitter raises when run; the other nodes work"),
    (HAS_LORA_KEY_API, logging.WARNING, "comfy.lora key maps / weight_adapter.LoRAAdapter",
     "the LoRA-scale splitter raises when run; the other nodes work"),
    (HAS_ADDITIONAL_MODELS, logging.WARNING, "ModelPatcher.set_additional_models",
     "two-checkpoint pairs may reload a model on every switch"),
    (HAS_CLONE_HAS_SAME_WEIGHTS, logging.WARNING, "ModelPatcher.clone_has_same_weights",
     "a side model that is a clone is treated as a different checkpoint"),
    (HAS_MODEL_OPTIONS_CLONE, logging.WARNING, "create_model_options_clone / merge_nested_dicts",
     "a side checkpoint's own patches and wrappers are not applied"),
    (HAS_NESTED_LATENTS, logging.INFO, "multi-latent sampling (CFGGuider latent_shapes, NestedTensor; >= 0.3.67)",
     "single latents only, as in this core; the guider forwards whatever keywords the core passes"),
    ("downscale_ratio_spacial" in FIX_EMPTY_LATENT_HINTS, logging.INFO,
     "LATENT downscale_ratio_spacial in fix_empty_latent_channels (>= 0.11)",
     "empty latents are used at their size, as this core's KSampler does"),
    (HAS_HOOKS, logging.INFO, "comfy.hooks", "not needed, W2SD does not use hooks"),
    (HAS_BYPASS_LORA, logging.INFO, "core bypass-mode LoRA (comfy/weight_adapter/bypass.py; >= 0.11)",
     "the LoRA-scale splitter uses its own forward injection (it always does)"),
    (HAS_V3_SCHEMA, logging.INFO, "V3 node schema (comfy_api.latest)",
     "nodes are registered with NODE_CLASS_MAPPINGS (they always are)"),
    (HAS_NODE_REPLACE, logging.INFO, "node replacement registry (io.NodeReplace; >= 0.14)",
     "not needed, W2SD node ids are never renamed"),
    (HAS_SEARCH_ALIASES, logging.INFO, "node SEARCH_ALIASES in /object_info (>= 0.11)",
     "nodes are found by their display names"),
)  # fmt: skip

for _present, _level, _feature, _instead in _MISSING:
    if not _present:
        log.log(
            _level,
            "[W2SD] ComfyUI %s lacks %s: %s.",
            COMFYUI_VERSION or "(unknown version)",
            _feature,
            _instead,
        )
