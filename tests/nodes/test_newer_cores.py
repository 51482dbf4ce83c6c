"""What newer cores changed around W2SD, run for real in-process (docs/COMPATIBILITY.md, 0.29.0 column).

- The custom-sampler nodes (V3 `io.ComfyNode` classes from 0.3.75 on) feeding the W2SD guider.
- KSAMPLER's first-step callback logs `sampler_function.__name__` unguarded on 0.29.0.
- Core bypass-mode LoRA (`LoraLoaderBypass`, ComfyUI >= 0.11) next to the W2SD LoRA-scale splitter.
- Dynamic VRAM (`ModelPatcherDynamic`, >= 0.12): on a CPU the core itself hands out plain ModelPatchers.

Each test that needs a newer-core feature is skipped, with the reason, on a core that lacks it
(feature-detected through the pack's nodes/compat.py, as the pack itself decides).
"""

from __future__ import annotations

import functools
import sys

import pytest
import torch
from fixtures.checkpoints import SD15_MINI, SD15_MINI_FINETUNE, SD15_MINI_LORA

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS, CFG, SEED = 6, 5.5, 3
REFLECTION = {
    "mode": "W2SD", "window": "steps", "start_percent": 0.0, "end_percent": 0.5, "reflect_steps": -1,
    "inversion": "explicit", "inversion_iters": 3, "equal_budget": False,
}  # fmt: skip
NO_REFLECTION = {**REFLECTION, "reflect_steps": 0}
SPLIT = {"main_scale": 0.8, "strong_scale": 1.5, "weak_scale": -1.5}


class Setup:
    def __init__(self, comfyui):
        self.c = comfyui
        comfyui.load_pack()
        self.compat = next(m for n, m in sys.modules.items() if n.endswith(".nodes.compat"))
        self.model, self.clip, _ = comfyui.execute("CheckpointLoaderSimple", ckpt_name=SD15_MINI)
        self.positive = comfyui.execute("CLIPTextEncode", clip=self.clip, text="a red fox in the snow")[0]
        self.negative = comfyui.execute("CLIPTextEncode", clip=self.clip, text="blurry")[0]
        self.latent = comfyui.execute("EmptyLatentImage", width=64, height=64, batch_size=1)[0]

    def cfg_gap(self):
        return self.c.execute("W2SDCFGGap", strong_cfg=CFG, weak_cfg=0.0, pair=None)[0]

    def lora_split(self, model=None):
        model, pair = self.c.execute(
            "W2SDLoraSplit", model=model or self.model, lora_name=SD15_MINI_LORA, clip=None, **SPLIT
        )[:2]
        return model, pair

    def w2sd_ksampler(self, pair, model=None, sampler="euler", scheduler="karras", **reflection):
        latent, _ = self.c.execute(
            "W2SDKSampler", model=model or self.model, seed=SEED, steps=STEPS, cfg=CFG, sampler_name=sampler,
            scheduler=scheduler, positive=self.positive, negative=self.negative, latent_image=self.latent,
            denoise=1.0, pair=pair, **{**REFLECTION, **reflection},
        )  # fmt: skip
        return latent["samples"]

    def stock_ksampler(self, model=None, sampler="euler", scheduler="karras"):
        out = self.c.nodes.common_ksampler(
            model or self.model,
            SEED,
            STEPS,
            CFG,
            sampler,
            scheduler,
            self.positive,
            self.negative,
            self.latent,
        )
        return out[0]["samples"]

    def custom_advanced(self, guider, sampler, sigmas, noise=None):
        """SamplerCustomAdvanced, as the executor runs it (V3 class method or V1 instance method)."""
        noise = noise or self.c.execute("RandomNoise", noise_seed=SEED)[0]
        out, denoised = self.c.execute(
            "SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
            latent_image=self.latent,
        )  # fmt: skip
        return out["samples"], denoised["samples"]

    def w2sd_guider(self, pair, model=None, **reflection):
        return self.c.execute(
            "W2SDGuider", model=model or self.model, positive=self.positive, negative=self.negative, cfg=CFG,
            pair=pair, **{**REFLECTION, **reflection},
        )[0]  # fmt: skip

    def stock_guider(self, model=None):
        return self.c.execute(
            "CFGGuider", model=model or self.model, positive=self.positive, negative=self.negative, cfg=CFG
        )[0]


@pytest.fixture(scope="module")
def s(comfyui):
    return Setup(comfyui)


def is_v3(comfyui, class_type):
    cls = comfyui.node_class(class_type)
    return hasattr(cls, "execute") and hasattr(cls, "GET_SCHEMA")


def rel_diff(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# --- the custom-sampler nodes feeding the W2SD guider ----------------------------------------------


def test_custom_sampler_nodes_feed_the_guider_like_the_w2sd_ksampler(s):
    """KSamplerSelect + BasicScheduler + RandomNoise + SamplerCustomAdvanced with the W2SD guider: the same
    latent, bit for bit, as the W2SD KSampler with the same settings (it runs the same guider)."""
    v3 = [
        n
        for n in ("KSamplerSelect", "BasicScheduler", "RandomNoise", "SamplerCustomAdvanced")
        if is_v3(s.c, n)
    ]
    print(f"V3 io.ComfyNode among the custom-sampler nodes used: {v3}")
    sampler = s.c.execute("KSamplerSelect", sampler_name="dpmpp_2m")[0]
    sigmas = s.c.execute("BasicScheduler", model=s.model, scheduler="karras", steps=STEPS, denoise=1.0)[0]
    split_model, split_pair = s.lora_split()
    for model, pair in ((s.model, s.cfg_gap()), (split_model, split_pair)):
        guided, denoised = s.custom_advanced(s.w2sd_guider(pair, model=model), sampler, sigmas)
        direct = s.w2sd_ksampler(pair, model=model, sampler="dpmpp_2m", scheduler="karras")
        assert torch.equal(guided, direct), pair.describe()
        assert torch.isfinite(denoised).all()
    assert rel_diff(guided, s.stock_ksampler(sampler="dpmpp_2m")) > 1e-3


@pytest.mark.parametrize(
    "scheduler_node,inputs",
    [
        ("KarrasScheduler", {"steps": STEPS, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 7.0}),
        ("ExponentialScheduler", {"steps": STEPS, "sigma_max": 14.614642, "sigma_min": 0.0291675}),
    ],
)
def test_sampler_and_scheduler_nodes_with_options_through_the_guider(s, scheduler_node, inputs):
    """A sampler node with its own options (SamplerDPMPP_2M_SDE: eta, s_noise, noise device) and a
    scheduler node: an empty window is the stock CFGGuider bit for bit; a reflected run differs, finite."""
    sampler = s.c.execute(
        "SamplerDPMPP_2M_SDE", solver_type="midpoint", eta=1.0, s_noise=1.0, noise_device="cpu"
    )[0]
    sigmas = s.c.execute(scheduler_node, **inputs)[0]
    stock, _ = s.custom_advanced(s.stock_guider(), sampler, sigmas)
    empty, _ = s.custom_advanced(s.w2sd_guider(s.cfg_gap(), **NO_REFLECTION), sampler, sigmas)
    assert torch.equal(empty, stock)
    reflected, _ = s.custom_advanced(s.w2sd_guider(s.cfg_gap()), sampler, sigmas)
    assert torch.isfinite(reflected).all() and rel_diff(reflected, stock) > 1e-3


def test_split_sigmas_two_stage_with_disable_noise(s):
    """SplitSigmas: W2SD guider on the high-noise half, then the stock guider with DisableNoise. With an
    empty window it is the same two-stage graph with the stock guider first, bit for bit (and within
    float rounding of the one-stage run: the latent is scaled out and back in between the stages)."""
    sampler = s.c.execute("KSamplerSelect", sampler_name="euler")[0]
    sigmas = s.c.execute("BasicScheduler", model=s.model, scheduler="normal", steps=STEPS, denoise=1.0)[0]
    high, low = s.c.execute("SplitSigmas", sigmas=sigmas, step=STEPS // 2)
    no_noise = s.c.execute("DisableNoise")[0]

    def two_stage(guider):
        first, _ = s.custom_advanced(guider, sampler, high)
        latent = {**s.latent, "samples": first}
        out, _ = s.c.execute(
            "SamplerCustomAdvanced", noise=no_noise, guider=s.stock_guider(), sampler=sampler, sigmas=low,
            latent_image=latent,
        )  # fmt: skip
        return out["samples"]

    stock = two_stage(s.stock_guider())
    assert rel_diff(stock, s.custom_advanced(s.stock_guider(), sampler, sigmas)[0]) < 1e-5
    assert torch.equal(two_stage(s.w2sd_guider(s.cfg_gap(), **NO_REFLECTION)), stock)
    assert rel_diff(two_stage(s.w2sd_guider(s.cfg_gap())), stock) > 1e-3


# --- KSAMPLER's callback and the sampler function's __name__ ---------------------------------------


def test_ksampler_callback_reads_the_sampler_function_name(s, caplog):
    """0.29.0's KSAMPLER logs `sampler_function.__name__` at the first step (DETAIL level); the W2SD
    sampler function is a functools.partial, which has no __name__: the pack names it."""
    if not s.compat.KSAMPLER_READS_FUNCTION_NAME:
        pytest.skip(
            f"ComfyUI {s.compat.COMFYUI_VERSION}: KSAMPLER.sample does not read sampler_function.__name__"
        )
    import comfy.samplers

    # The hazard is real on this core: a bare partial fails at the first callback.
    euler = comfy.samplers.sampler_object("euler").sampler_function
    bare = comfy.samplers.KSAMPLER(functools.partial(euler))
    sigmas = s.c.execute("BasicScheduler", model=s.model, scheduler="karras", steps=STEPS, denoise=1.0)[0]
    guider = s.stock_guider()
    noise = s.c.execute("RandomNoise", noise_seed=SEED)[0].generate_noise(s.latent)
    with pytest.raises(AttributeError, match="__name__"):
        guider.sample(
            noise, s.latent["samples"], bare, sigmas, callback=lambda *a: None, disable_pbar=True, seed=SEED
        )

    with caplog.at_level(15):  # comfy.logging.DETAIL
        latent = s.custom_advanced(
            s.w2sd_guider(s.cfg_gap()), s.c.execute("KSamplerSelect", sampler_name="euler")[0], sigmas
        )[0]
    assert torch.isfinite(latent).all()
    first = [r.getMessage() for r in caplog.records if r.getMessage().startswith("First sampler step")]
    assert len(first) == 1 and "sampler=w2sd_sampler_function " in first[0], first


# --- core bypass LoRA next to the LoRA-scale splitter ----------------------------------------------


def one_call(model, cond, role=None, sigma=3.0):
    """One model call through apply_model with the patcher's wrappers and injections, as samplers make it."""
    import comfy.model_management
    import comfy.patcher_extension

    comfy.model_management.load_models_gpu([model])
    x = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(2))
    options = {"wrappers": comfy.patcher_extension.copy_nested_dicts(model.wrappers)}
    if role is not None:
        options["w2sd_role"] = role
    with torch.inference_mode():
        return model.model.apply_model(
            x, torch.tensor([sigma]), c_crossattn=cond, transformer_options=options
        )


@pytest.fixture(scope="module")
def bypass(s):
    if not s.compat.HAS_BYPASS_LORA:
        pytest.skip(f"ComfyUI {s.compat.COMFYUI_VERSION} has no bypass-mode LoRA (LoraLoaderBypass, >= 0.11)")

    def load(model, strength):
        return s.c.execute(
            "LoraLoaderBypassModelOnly", model=model, lora_name=SD15_MINI_LORA, strength_model=strength
        )[0]

    return load


def forwards_left(model):
    """Layers of the shared diffusion model that still carry an instance `forward` with LoRA terms in it."""
    return [
        name
        for name, module in model.model.named_modules()
        if getattr(module.__dict__.get("forward"), "layers", None)
        or "_bypass_forward" in str(module.__dict__.get("forward"))
    ]


@pytest.mark.parametrize("order", ["split then bypass", "bypass then split"])
def test_bypass_lora_next_to_the_splitter_adds_up(s, bypass, order):
    """Split (main 0.8 / strong 1.5 / weak -1.5) and a bypass LoRA at 0.5 on the same model, in either
    order: each role's output is the stock weight-patched LoRA at the sum of the two strengths."""
    import comfy.sd
    import comfy.utils

    lora_sd = comfy.utils.load_torch_file(str(s.c.models[SD15_MINI_LORA]))
    if order == "split then bypass":
        model = bypass(s.lora_split()[0], 0.5)
    else:
        model = s.lora_split(bypass(s.model, 0.5))[0]
    assert s.compat.has_bypass_lora(model)
    cond = s.positive[0][0]
    for role, scale in (("main", 0.8), ("strong", 1.5), ("weak", -1.5)):
        stock = comfy.sd.load_lora_for_models(s.model, None, lora_sd, scale + 0.5, 0)[0]
        expected = one_call(stock, cond)
        got = one_call(model, cond, role=None if role == "main" else role)
        assert rel_diff(got, expected) < 2e-4, role
    base = one_call(s.model, cond)
    assert not forwards_left(s.model)
    assert torch.equal(base, one_call(s.model, cond))


def test_w2sd_run_with_bypass_lora_leaves_the_base_model_clean(s, bypass):
    """A full W2SD KSampler run on split + bypass LoRA: reflected and finite, and afterwards the shared
    base model computes stock again (no LoRA term left wired into its layers)."""
    stock_before = s.stock_ksampler()
    split_model, pair = s.lora_split()
    model = bypass(split_model, 0.5)
    latent = s.w2sd_ksampler(pair, model=model)
    assert torch.isfinite(latent).all()
    no_reflection = s.w2sd_ksampler(pair, model=model, reflect_steps=0)
    assert rel_diff(latent, no_reflection) > 1e-3
    s.stock_ksampler(model=s.model)  # loads the base model alone, ejecting the LoRA injections
    assert not forwards_left(s.model)
    assert torch.equal(s.stock_ksampler(), stock_before)


# --- dynamic VRAM ----------------------------------------------------------------------------------


def test_dynamic_vram_patcher_with_lora_split_and_two_checkpoints(s, comfyui):
    """With the core's dynamic-VRAM patcher selected as main.py does when comfy-aimdo initialises
    (CoreModelPatcher = ModelPatcherDynamic), W2SD with the LoRA split and a second checkpoint gives the
    same latent as with the plain patcher. On a CPU load device the core returns plain ModelPatchers
    (ModelPatcherDynamic.__new__); the dynamic weight streaming itself needs an NVIDIA GPU (comfy-aimdo)."""
    if not s.compat.HAS_DYNAMIC_VRAM:
        pytest.skip(f"ComfyUI {s.compat.COMFYUI_VERSION} has no ModelPatcherDynamic (dynamic VRAM, >= 0.12)")
    import comfy.model_patcher
    import comfy.sd

    def run():
        model, _, _, _ = comfy.sd.load_checkpoint_guess_config(
            str(comfyui.models[SD15_MINI]), output_vae=False, output_clip=False
        )
        finetune, _, _, _ = comfy.sd.load_checkpoint_guess_config(
            str(comfyui.models[SD15_MINI_FINETUNE]), output_vae=False, output_clip=False
        )
        split_model, pair = s.lora_split(model)
        pair = s.c.execute("W2SDModelPair", strong_model=finetune, weak_model=None, pair=pair)[0]
        return s.w2sd_ksampler(pair, model=split_model), (model, finetune)

    plain, _ = run()
    saved = comfy.model_patcher.CoreModelPatcher
    comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
    try:
        dynamic, patchers = run()
    finally:
        comfy.model_patcher.CoreModelPatcher = saved
    print(
        "patchers with dynamic VRAM selected:",
        [type(p).__name__ for p in patchers],
        "on",
        patchers[0].load_device,
    )
    # The in-process fixture runs ComfyUI with --cpu: the core's reroute, not a dynamic patcher.
    assert all(p.load_device.type == "cpu" and not s.compat.is_dynamic(p) for p in patchers)
    assert torch.equal(dynamic, plain)
