"""One base model and one LoRA at several strengths, switched per model call (the W2SD LoRA-scale splitter).

Weak-to-Strong Diffusion with Reflection (W2SD), arXiv 2502.00473: the paper's LoRA setting samples with
the LoRA at 0.8 and reflects between strength +1.5 (strong) and -1.5 (weak). ComfyUI's LoRA path patches
the weights, and alternating two clones of one base re-patches the whole model on every switch, so here
the LoRA is applied at forward time instead: each targeted Linear/Conv layer computes
`base(x) + scale * (alpha / rank) * up(down(x))` with `scale` read from a holder that an `APPLY_MODEL`
wrapper sets from `transformer_options["w2sd_role"]` for each model call. The base weights are never
touched and exist once; the extra memory is the LoRA's own tensors.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import comfy.lora
import comfy.lora_convert
import comfy.model_patcher
import comfy.patcher_extension
import comfy.sd
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

ROLE_KEY = "w2sd_role"
ROLES = ("main", "strong", "weak")
INJECTION_KEY = "w2sd_lora_scales"
PAPER_SCALES = {"main": 0.8, "strong": 1.5, "weak": -1.5}
"""Strengths of the paper's LoRA experiments (regular steps, strong side, weak side)."""

SUPPORTED = "plain LoRA / LoCon (lora_up + lora_down, or lora_A + lora_B, with an optional alpha)"
REQUIREMENT = "ComfyUI with ModelPatcher injections and wrappers (tested on 0.3.52, 0.3.75 and 0.29.0)"

_CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
# Any of these in a key name marks a file as some kind of LoRA / LyCORIS adapter.
_ADAPTER_KEY = re.compile(
    r"lora[._](up|down|mid|A|B)\b|lora_(up|down|mid|A|B)|_lora\.|lora_linear_layer|hada_|lokr_|oft_blocks"
    r"|\.alpha$|\.dora_scale$|\.diff(_b)?$|\.[ab][12]\.weight$"
)
_TEXT_ENCODER_KEY = re.compile(r"^(lora_te\d?_|lora_prior_te_|text_encoders?[._]|te\d?\.|lora_te_text_model)")
_KIND_NAMES = {
    "loha": "LoHa",
    "lokr": "LoKr",
    "glora": "GLoRA",
    "oft": "OFT",
    "boft": "BOFT",
    "diff": "full weight difference (.diff)",
    "set": "weight replacement (.set_weight)",
}

_missing_api_logged = False


@dataclass(frozen=True)
class LoraScaleReport:
    """What the LoRA changed in the model: matched modules and the LoRA keys left unused."""

    name: str
    modules: tuple[str, ...]
    keys_total: int
    keys_not_matched: tuple[str, ...]
    text_encoder_keys: int
    lora_bytes: int
    scales: dict[str, float]

    def summary(self) -> str:
        other = len(self.keys_not_matched) - self.text_encoder_keys
        return (
            f"LoRA '{self.name}': {len(self.modules)} layers, {self.lora_bytes / 2**20:.1f} MiB, scales "
            + ", ".join(f"{r} {s:+g}" for r, s in self.scales.items())
            + f"; {self.text_encoder_keys} text-encoder keys left for the CLIP, {other} other keys unused"
        )


class _ScaleHolder:
    """The strength in effect for the current model call; shared by every layer of one LoRA."""

    def __init__(self, scale: float) -> None:
        self.scale = scale


class _LoraLayer:
    """One LoRA on one layer (or on a slice of its output channels)."""

    def __init__(
        self,
        module: torch.nn.Module,
        down: torch.Tensor,
        up: torch.Tensor,
        factor: float,
        out_slice: tuple[int, int] | None,
        holder: _ScaleHolder,
    ) -> None:
        self.down, self.up = down, up
        self.factor = factor
        self.out_slice = out_slice
        self.holder = holder
        self.conv: Callable[..., torch.Tensor] | None = None
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            self.conv = _CONVS[down.ndim - 2]
            self.stride, self.dilation = module.stride, module.dilation
            # Non-zero padding modes pad explicitly, as the base conv does in _conv_forward.
            self.pad_mode = module.padding_mode
            self.pad = module._reversed_padding_repeated_twice if self.pad_mode != "zeros" else None
            self.padding = 0 if self.pad is not None else module.padding
        self._cast: tuple[torch.Tensor, torch.Tensor] | None = None

    def to_device(self, device: torch.device, dtype: torch.dtype) -> None:
        self._cast = (self.down.to(device, dtype), self.up.to(device, dtype))

    def release(self) -> None:
        self._cast = None

    def weights_for(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cast = self._cast
        if cast is None or cast[0].dtype != x.dtype or cast[0].device != x.device:
            # One slot only: a cast replaces the previous one, so a single copy is ever held.
            cast = self._cast = (self.down.to(x.device, x.dtype), self.up.to(x.device, x.dtype))
        return cast

    def add_to(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        scale = self.holder.scale * self.factor
        if scale == 0.0:
            return out
        down, up = self.weights_for(x)
        if self.conv is None:
            h = F.linear(F.linear(x, down), up)
            dim = -1
        else:
            if self.pad is not None:
                x = F.pad(x, self.pad, mode=self.pad_mode)
            h = self.conv(x, down, None, self.stride, self.padding, self.dilation)
            h = self.conv(h, up)
            dim = 1
        target = out if self.out_slice is None else out.narrow(dim, *self.out_slice)
        target.add_(h, alpha=scale)
        return out


class _LoraForward:
    """Instance `forward` of a layer with LoRAs: the base forward plus each LoRA's term."""

    def __init__(self, module: torch.nn.Module, previous: Any) -> None:
        self.previous = previous  # an instance forward some other code had set, restored on eject
        self.base = previous if previous is not None else type(module).forward.__get__(module)
        self.layers: list[_LoraLayer] = []

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.base(*args, **kwargs)
        x = args[0] if args else next(iter(kwargs.values()))
        for layer in self.layers:
            out = layer.add_to(out, x)
        return out


class _Injection:
    """inject/eject for ModelPatcher.set_injections: wrap and unwrap the targeted layers' forward."""

    def __init__(self, layers: dict[str, list[_LoraLayer]], dtype: torch.dtype) -> None:
        self.layers = layers
        self.dtype = dtype
        self._forwards: dict[str, _LoraForward] = {}

    def inject(self, patcher: Any) -> None:
        for path, layers in self.layers.items():
            module = patcher.model.get_submodule(path)
            forward = module.__dict__.get("forward")
            if not isinstance(forward, _LoraForward):
                forward = _LoraForward(module, forward)
                module.forward = forward
            for layer in layers:
                layer.to_device(patcher.load_device, self.dtype)
                forward.layers.append(layer)
            self._forwards[path] = forward

    def eject(self, patcher: Any) -> None:
        # Work on the wrapper this injection used, wherever it now sits: another injection (e.g. core
        # bypass LoRA, ComfyUI >= 0.11) may have wrapped it and ejects after us.
        for path, layers in self.layers.items():
            module = patcher.model.get_submodule(path)
            forward = self._forwards.pop(path, None)
            if forward is not None:
                forward.layers = [lr for lr in forward.layers if all(lr is not x for x in layers)]
                if not forward.layers and module.__dict__.get("forward") is forward:
                    if forward.previous is None:
                        del module.forward
                    else:
                        module.forward = forward.previous
            for layer in layers:
                layer.release()


class _RoleScaleWrapper:
    """APPLY_MODEL wrapper: the LoRA strength of this call comes from its `w2sd_role`."""

    def __init__(self, holder: _ScaleHolder, scales: dict[str, float]) -> None:
        self.holder = holder
        self.scales = scales

    def __call__(self, executor: Any, *args: Any, **kwargs: Any) -> Any:
        # apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        options = args[5] if len(args) > 5 else kwargs.get("transformer_options") or {}
        main = self.scales["main"]
        self.holder.scale = self.scales.get(options.get(ROLE_KEY, "main"), main)
        try:
            return executor(*args, **kwargs)
        finally:
            self.holder.scale = main


def _role_wrappers(model: Any) -> list[_RoleScaleWrapper]:
    found = getattr(model, "wrappers", {}).get(comfy.patcher_extension.WrappersMP.APPLY_MODEL, {})
    return [w for ws in found.values() for w in ws if isinstance(w, _RoleScaleWrapper)]


def role_scales(model: Any) -> list[dict[str, float]]:
    """The per-role LoRA scales of every LoRA split applied to `model` (empty: none)."""
    return [w.scales for w in _role_wrappers(model)]


@contextmanager
def scales_of(model: Any, role: str) -> Iterator[None]:
    """Every LoRA split on `model` at `role`'s scale, for work outside model calls: encoding the conds,
    which some families do with the model's own layers (LTX-2's text connectors)."""
    wrappers = _role_wrappers(model)
    for w in wrappers:
        w.holder.scale = w.scales.get(role, w.scales["main"])
    try:
        yield
    finally:
        for w in wrappers:
            w.holder.scale = w.scales["main"]


def make_lora_scale_model(
    model: Any, lora_sd: Mapping[str, torch.Tensor], scales: Mapping[str, float], name: str = "LoRA"
) -> tuple[Any, LoraScaleReport]:
    """A clone of `model` with the LoRA applied at forward time, its strength picked per call by role.

    `scales` maps "main" (required), "strong" and "weak" (default: the main scale) to strengths. Calls
    without a `w2sd_role` in transformer_options (a stock KSampler) see the main strength.
    """
    _require_injection_api()
    scales = _check_scales(scales)
    holder = _ScaleHolder(scales["main"])
    layers, report = _plan(model, dict(lora_sd), scales, name, holder)
    diffusion = model.model
    dtype = diffusion.manual_cast_dtype or diffusion.get_dtype()

    out = model.clone()
    key = INJECTION_KEY
    n = 1
    # A split of a split gets its own key; both LoRAs' terms then share one wrapped forward per layer.
    while out.get_injections(key) is not None:
        n += 1
        key = f"{INJECTION_KEY}.{n}"
    injection = _Injection(layers, dtype)
    out.set_injections(key, [comfy.patcher_extension.PatcherInjection(injection.inject, injection.eject)])
    wrapper = _RoleScaleWrapper(holder, scales)
    out.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, key, wrapper)
    log.info("[W2SD] %s", report.summary())
    return out, report


def lora_clip(clip: Any, lora_sd: Mapping[str, torch.Tensor], strength: float) -> Any:
    """The CLIP with the LoRA at a fixed strength (stock path: text is encoded once, before sampling)."""
    if clip is None or strength == 0:
        return clip
    return comfy.sd.load_lora_for_models(None, clip, dict(lora_sd), 0, strength)[1]


def _require_injection_api() -> None:
    global _missing_api_logged
    patcher, ext = comfy.model_patcher.ModelPatcher, comfy.patcher_extension
    needed = {
        "ModelPatcher.set_injections": hasattr(patcher, "set_injections"),
        "ModelPatcher.add_wrapper_with_key": hasattr(patcher, "add_wrapper_with_key"),
        "patcher_extension.PatcherInjection": hasattr(ext, "PatcherInjection"),
        "WrappersMP.APPLY_MODEL": hasattr(getattr(ext, "WrappersMP", None), "APPLY_MODEL"),
    }
    missing = [what for what, ok in needed.items() if not ok]
    if missing:
        message = (
            f"the W2SD LoRA-scale splitter needs {REQUIREMENT}; this ComfyUI lacks {', '.join(missing)}. "
            "Update ComfyUI."
        )
        if not _missing_api_logged:
            log.error("[W2SD] %s", message)
            _missing_api_logged = True
        raise RuntimeError(message)


def _check_scales(scales: Mapping[str, float]) -> dict[str, float]:
    unknown = [r for r in scales if r not in ROLES]
    if unknown or "main" not in scales:
        raise ValueError(f"scales={dict(scales)!r}: roles must be {', '.join(ROLES)} (main required)")
    out = {}
    for role in ROLES:
        value = scales.get(role, scales["main"])
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{role}_scale={value!r} is not a finite number")
        out[role] = float(value)
    return out


def _plan(
    model: Any, lora_sd: dict[str, torch.Tensor], scales: dict[str, float], name: str, holder: _ScaleHolder
) -> tuple[dict[str, list[_LoraLayer]], LoraScaleReport]:
    """Map the LoRA to the model's layers with ComfyUI's own key maps; reject what is not plain LoRA."""
    n_keys = len(lora_sd)
    if not any(_ADAPTER_KEY.search(k) for k in lora_sd):
        example = next(iter(lora_sd), "(none)")
        raise ValueError(
            f"'{name}' is not a LoRA: none of its {n_keys} keys is a LoRA weight "
            f"(e.g. '<layer>.lora_down.weight' / '.lora_up.weight'); first key: '{example}'. "
            f"Supported: {SUPPORTED}."
        )
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    lora = comfy.lora_convert.convert_lora(lora_sd)
    patches = comfy.lora.load_lora(lora, key_map, log_missing=False)

    layers: dict[str, list[_LoraLayer]] = {}
    lora_bytes = 0
    for target, patch in patches.items():
        key, offset, function = (target, None, None) if isinstance(target, str) else (*target, None)[:3]
        kind = patch[0] if isinstance(patch, tuple) else getattr(patch, "name", type(patch).__name__)
        if kind != "lora":
            _unsupported(name, _KIND_NAMES.get(kind, kind), key)
        up, down, alpha, mid, dora_scale, reshape = patch.weights[:6]
        if mid is not None:
            _unsupported(name, "tucker LoCon (lora_mid)", key)
        if dora_scale is not None:
            _unsupported(name, "DoRA (dora_scale)", key)
        if reshape is not None:
            _unsupported(name, "reshaped LoRA (reshape_weight)", key)
        if offset is not None and offset[0] != 0:
            _unsupported(name, "LoRA on a slice of a weight's input dimension", key)
        if function is not None:
            up = _function_on_up(name, key, function, up, down)
        path = key[: -len(".weight")] if key.endswith(".weight") else key
        try:
            module = model.model.get_submodule(path)
        except AttributeError:
            raise ValueError(f"LoRA '{name}' targets {key}, which is not a layer's weight") from None
        layer = _layer(name, path, module, up, down, alpha, offset, holder)
        layers.setdefault(path, []).append(layer)
        lora_bytes += (layer.up.numel() + layer.down.numel()) * up.element_size()

    matched = {prefix for prefix, target in key_map.items() if target in patches}
    not_matched = tuple(sorted(k for k in lora if not _has_prefix(k, matched)))
    te_keys = sum(1 for k in not_matched if _TEXT_ENCODER_KEY.match(k))
    if not layers:
        hint = " All its keys are text-encoder keys: apply it to the CLIP only." if te_keys == n_keys else ""
        raise ValueError(
            f"LoRA '{name}' matches no layer of this model (0 of {n_keys} keys); "
            f"is it for another model family?{hint}"
        )
    other = len(not_matched) - te_keys
    if other:
        log.warning(
            "[W2SD] LoRA '%s': %d keys match no layer of this model, e.g. %s",
            name,
            other,
            next(k for k in not_matched if not _TEXT_ENCODER_KEY.match(k)),
        )
    report = LoraScaleReport(name, tuple(layers), n_keys, not_matched, te_keys, lora_bytes, dict(scales))
    return layers, report


def _function_on_up(
    name: str, key: str, function: Callable[..., Any], up: torch.Tensor, down: torch.Tensor
) -> torch.Tensor:
    """`up` with the key map's weight function applied, when that function acts on output rows only.

    ComfyUI maps a few diffusers keys with a function on the weight difference (Flux's `norm_out.linear`:
    `swap_scale_shift`, the output halves swapped). A function that only reorders or rescales output rows
    gives f(up @ down) == f(up) @ down, so the forward-time LoRA applies it to `up` once; checked here on
    the LoRA's own tensors, anything else is refused."""
    up2, down2 = up.reshape(up.shape[0], -1).float(), down.reshape(down.shape[0], -1).float()
    try:
        moved = function(up2)
        expected = function(up2 @ down2)
        fits = moved.shape == up2.shape and torch.allclose(moved @ down2, expected, rtol=1e-4, atol=1e-6)
    except Exception:  # a function written for the weight's shape only
        fits = False
    if not fits:
        raise ValueError(
            f"LoRA '{name}': ComfyUI maps its key for {key} with a weight function that changes more than the "
            "output rows, which the W2SD LoRA-scale splitter cannot apply at forward time. Use the stock "
            "LoraLoader without the splitter."
        )
    return moved.to(up.dtype).reshape(up.shape)


def _layer(
    name: str,
    path: str,
    module: torch.nn.Module,
    up: torch.Tensor,
    down: torch.Tensor,
    alpha: float | None,
    offset: tuple[int, int, int] | None,
    holder: _ScaleHolder,
) -> _LoraLayer:
    if isinstance(module, torch.nn.Linear):
        kernel: tuple[int, ...] = ()
    elif isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        if module.groups != 1:
            _unsupported(name, f"grouped-convolution LoRA (groups={module.groups})", path)
        kernel = tuple(module.weight.shape[2:])
    else:
        raise ValueError(
            f"LoRA '{name}' targets {path}, a {type(module).__name__}; the W2SD LoRA-scale splitter applies "
            "LoRA to Linear and Conv1d/2d/3d layers only."
        )
    out_features, in_features = module.weight.shape[0], module.weight.shape[1]
    out_slice = None
    if offset is not None:
        if offset[1] + offset[2] > out_features:
            # ComfyUI's diffusers q/k/v map for Lumina 2 assumes as many key/value heads as query heads.
            raise ValueError(
                f"LoRA '{name}': ComfyUI maps its key for {path} onto rows {offset[1]}..{offset[1] + offset[2]} "
                f"of a weight with {out_features}; the key map does not fit this model (is it for another "
                "variant, e.g. diffusers to_k/to_v keys on a model with fewer key/value heads?)"
            )
        out_slice = (offset[1], offset[2])
        out_features = offset[2]
    rank = down.shape[0]
    if down.numel() != rank * in_features * math.prod(kernel) or up.numel() != out_features * rank:
        raise ValueError(
            f"LoRA '{name}': shapes up {tuple(up.shape)} / down {tuple(down.shape)} do not fit {path} "
            f"(weight {tuple(module.weight.shape)}); is it for another model variant?"
        )
    # Reshapes are views: the layer holds the LoRA's own tensors, no copies.
    down = down.reshape(rank, in_features, *kernel)
    up = up.reshape(out_features, rank, *([1] * len(kernel)))
    factor = alpha / rank if alpha is not None else 1.0
    return _LoraLayer(module, down, up, factor, out_slice, holder)


def _unsupported(name: str, kind: str, key: str) -> None:
    raise ValueError(
        f"LoRA '{name}' holds {kind} weights (e.g. for {key}); the W2SD LoRA-scale splitter supports "
        f"{SUPPORTED} only. Convert it to a plain LoRA, or use the stock LoraLoader without the splitter."
    )


def _has_prefix(key: str, prefixes: set[str]) -> bool:
    # LoRA keys are "<prefix>.<suffix>" or diffusers' "<prefix>_lora.<suffix>".
    i = key.find(".")
    while i != -1:
        if key[:i] in prefixes:
            return True
        i = key.find(".", i + 1)
    j = key.find("_lora.")
    return j != -1 and key[:j] in prefixes
