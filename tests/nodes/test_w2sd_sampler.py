"""The W2SD KSampler in-process against stock ComfyUI: exactness, NFE and pass counts, progress,
model loading, interrupts, errors and no mutation. Latents are compared as tensors, not images."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from fixtures.checkpoints import SD3_MINI, SD15_MINI, SD15_MINI_FINETUNE, SD15_MINI_LORA
from fixtures.passes import observed, sigma_logging_model
from sampler_names import every_sampler_name

REFLECTION = {
    "mode": "W2SD", "window": "steps", "start_percent": 0.0, "end_percent": 0.5, "reflect_steps": -1,
    "inversion": "explicit", "inversion_iters": 3, "equal_budget": False,
}  # fmt: skip
STEPS = 6


class Setup:
    def __init__(self, comfyui):
        self.c = comfyui
        comfyui.load_pack()
        self.model, self.clip, self.vae = comfyui.execute("CheckpointLoaderSimple", ckpt_name=SD15_MINI)
        self.positive = comfyui.execute("CLIPTextEncode", clip=self.clip, text="a red fox in the snow")[0]
        self.negative = comfyui.execute("CLIPTextEncode", clip=self.clip, text="blurry")[0]
        self.latent = comfyui.execute("EmptyLatentImage", width=64, height=64, batch_size=1)[0]

    def stock(self, model=None, sampler="euler", scheduler="karras", cfg=5.5, seed=1, steps=STEPS):
        out = self.c.nodes.common_ksampler(
            model or self.model,
            seed,
            steps,
            cfg,
            sampler,
            scheduler,
            self.positive,
            self.negative,
            self.latent,
        )
        return out[0]["samples"]

    def w2sd(
        self,
        pair,
        model=None,
        sampler="euler",
        scheduler="karras",
        cfg=5.5,
        seed=1,
        steps=STEPS,
        **reflection,
    ):
        latent, plot = self.c.execute(
            "W2SDKSampler", model=model or self.model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
            scheduler=scheduler, positive=self.positive, negative=self.negative, latent_image=self.latent,
            denoise=1.0, pair=pair, **{**REFLECTION, **reflection},
        )  # fmt: skip
        return latent["samples"], plot

    def cfg_gap(self, strong=5.5, weak=0.0, pair=None):
        return self.c.execute("W2SDCFGGap", strong_cfg=strong, weak_cfg=weak, pair=pair)[0]


@pytest.fixture(scope="module")
def s(comfyui):
    return Setup(comfyui)


def counting_model(model, log):
    """A clone whose every network pass is logged as (role, batch size)."""
    return observed(model, lambda role, args: log.append((role, args["input"].shape[0])))


@pytest.mark.parametrize(
    "sampler,scheduler",
    [
        ("euler", "karras"),
        ("dpmpp_2m", "normal"),
        ("euler_ancestral", "simple"),
        ("heun", "exponential"),
        ("dpmpp_2m_sde", "karras"),
        ("uni_pc", "sgm_uniform"),
    ],
)
def test_empty_window_is_stock_bit_for_bit(s, sampler, scheduler):
    latent, _ = s.w2sd(s.cfg_gap(), sampler=sampler, scheduler=scheduler, reflect_steps=0)
    assert torch.equal(latent, s.stock(sampler=sampler, scheduler=scheduler))


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_sde"])
def test_strong_equals_weak_with_fixed_point_inversion_matches_stock(s, sampler):
    """dpmpp_sde (one-step, SDE): its noise inside the window is stock's (the schedule's Brownian tree)."""
    same = s.c.execute("W2SDModelPair", strong_cfg=5.5, weak_cfg=5.5)[0]
    stock = s.stock(sampler=sampler)
    scale = stock.abs().max().item()
    explicit, _ = s.w2sd(same, sampler=sampler, inversion="explicit")
    fixed, _ = s.w2sd(same, sampler=sampler, inversion="fixed_point", inversion_iters=10)
    err_explicit = (explicit - stock).abs().max().item() / scale
    err_fixed = (fixed - stock).abs().max().item() / scale
    print(
        f"{sampler}, strong == weak, relative max error vs stock: "
        f"explicit {err_explicit:.2e}, fixed-point x10 {err_fixed:.2e}"
    )
    assert err_fixed < 0.05 * max(err_explicit, 1e-12) or err_fixed < 1e-3


def test_nfe_and_passes(s):
    """T + 2*lambda evaluations; the cfg 0 weak side makes one pass, the cfg 5.5 sides two (one batch of 2)."""
    log = []
    model = counting_model(s.model, log)
    s.w2sd(s.cfg_gap(5.5, 0.0), model=model)
    by_role = Counter(role for role, _ in log)
    assert by_role == {"main": STEPS, "strong": STEPS - 1, "weak": STEPS - 1}
    batch = {role: {b for r, b in log if r == role} for role in by_role}
    assert batch == {"main": {2}, "strong": {2}, "weak": {1}}


def test_cfg_one_side_skips_uncond(s):
    log = []
    s.w2sd(s.cfg_gap(1.0, 0.0), model=counting_model(s.model, log))
    assert {b for r, b in log if r == "strong"} == {1}


def test_progress_counts_every_evaluation(s, monkeypatch):
    import comfy.utils

    # Newer cores (0.29.0) drop progress updates closer than a time/percent threshold before the hook;
    # with it at zero the hook sees every update the pack makes, whatever the machine's speed.
    for name in ("PROGRESS_THROTTLE_MIN_INTERVAL", "PROGRESS_THROTTLE_MIN_PERCENT"):
        if hasattr(comfy.utils, name):
            monkeypatch.setattr(comfy.utils, name, 0)
    seen = []
    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(
        lambda value, total, preview, *a, **k: seen.append((value, total))
    )
    try:
        s.w2sd(s.cfg_gap(), seed=2)
    finally:
        comfy.utils.set_progress_bar_global_hook(old)
    nfe = STEPS + 2 * (STEPS - 1)
    assert [v for v, _ in seen] == list(range(1, nfe + 1))
    assert {t for _, t in seen} == {nfe}


def test_previews_update_with_every_evaluation(s, monkeypatch):
    """With previews on (Latent2RGB), every progress update carries a preview of that evaluation."""
    import comfy.cli_args
    import comfy.utils
    import numpy as np

    monkeypatch.setattr(comfy.cli_args.args, "preview_method", comfy.cli_args.LatentPreviewMethod.Latent2RGB)
    previews = []
    monkeypatch.setattr(
        comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, *a, **k: previews.append(preview)
    )
    s.w2sd(s.cfg_gap(), seed=2)
    assert len(previews) == STEPS + 2 * (STEPS - 1) and all(p is not None for p in previews)
    images = [np.asarray(p[1]) for p in previews]  # (format, PIL image, max size)
    assert sum(not np.array_equal(a, b) for a, b in zip(images, images[1:], strict=False)) >= len(images) // 2


def test_two_checkpoints_load_together_and_stay_loaded(s, monkeypatch):
    import comfy.model_management as mm

    finetune = s.c.execute("CheckpointLoaderSimple", ckpt_name=SD15_MINI_FINETUNE)[0]
    pair = s.c.execute("W2SDModelPair", strong_model=finetune, weak_model=s.model)[0]
    calls = []
    real = mm.load_models_gpu

    def recording(models, *args, **kwargs):
        calls.append([m.model for m in models])
        return real(models, *args, **kwargs)

    monkeypatch.setattr(mm, "load_models_gpu", recording)
    latent, _ = s.w2sd(pair, model=s.model)
    assert len(calls) == 1, f"model loads during sampling: {len(calls)}"
    assert any(m is finetune.model for m in calls[0]) and any(m is s.model.model for m in calls[0])
    assert torch.isfinite(latent).all()


def test_a_model_patch_on_the_strong_side_only(s):
    """Model patches on the strong model only (a stock RescaleCFG, and an attention patch as IP-Adapter
    installs them): they act on the strong side's passes and on no other, and change the result."""
    rescaled = s.c.execute("RescaleCFG", model=s.model, multiplier=0.7)[0]
    roles = []

    def attn1_patch(n, context, value, extra_options):
        roles.append(extra_options.get("w2sd_role", "main"))
        return n * 1.1, context, value

    strong = rescaled.clone()
    strong.set_model_attn1_patch(attn1_patch)
    pair = s.c.execute("W2SDModelPair", strong_model=strong)[0]
    reflected, _ = s.w2sd(pair)
    assert set(roles) == {"strong"} and len(roles) % (STEPS - 1) == 0  # each attention block, each pass
    plain, _ = s.w2sd(pair, reflect_steps=0)
    assert torch.equal(plain, s.stock()), "the patch leaked into the sampler's own model"
    unpatched, _ = s.w2sd(s.c.execute("W2SDModelPair", strong_model=s.model.clone())[0])
    rescale_only, _ = s.w2sd(s.c.execute("W2SDModelPair", strong_model=rescaled)[0])
    assert (reflected - rescale_only).abs().max() > 1e-3, "the strong side's attention patch changed nothing"
    assert (rescale_only - unpatched).abs().max() > 1e-3, "the strong side's RescaleCFG changed nothing"
    assert "sampler_cfg_function" not in s.model.model_options
    assert "patches" not in s.model.model_options.get("transformer_options", {})


def test_family_mismatch_is_a_clear_error(s):
    sd3 = s.c.execute("CheckpointLoaderSimple", ckpt_name=SD3_MINI)[0]
    pair = s.c.execute("W2SDModelPair", strong_model=sd3)[0]
    with pytest.raises(ValueError, match="strong model .* latent format"):
        s.w2sd(pair)


def test_lora_patched_clone_is_a_clear_error(s):
    lora_model = s.c.execute(
        "LoraLoader",
        model=s.model,
        clip=s.clip,
        lora_name=SD15_MINI_LORA,
        strength_model=1.0,
        strength_clip=1.0,
    )[0]
    pair = s.c.execute("W2SDModelPair", strong_model=lora_model)[0]
    with pytest.raises(ValueError, match="LoRA-scale splitter"):
        s.w2sd(pair)


def test_lora_split_main_scale_and_no_mutation(s):
    model_options_before = repr(s.model.model_options)
    patches_before = dict(s.model.patches)
    split_model, pair, _ = s.c.execute(
        "W2SDLoraSplit",
        model=s.model,
        lora_name=SD15_MINI_LORA,
        main_scale=0.8,
        strong_scale=1.5,
        weak_scale=-1.5,
        clip=None,
    )
    reflected, _ = s.w2sd(pair, model=split_model)
    plain, _ = s.w2sd(pair, model=split_model, reflect_steps=0)
    stock_lora = s.c.execute(
        "LoraLoader",
        model=s.model,
        clip=s.clip,
        lora_name=SD15_MINI_LORA,
        strength_model=0.8,
        strength_clip=0.0,
    )[0]
    reference = s.stock(model=stock_lora)
    rel = (plain - reference).abs().max().item() / reference.abs().max().item()
    print(f"LoRA split at main scale vs LoraLoader: relative max error {rel:.2e}")
    assert rel < 1e-3
    assert (reflected - plain).abs().max() > 1e-3
    assert repr(s.model.model_options) == model_options_before and dict(s.model.patches) == patches_before
    assert torch.equal(s.stock(seed=5), s.stock(seed=5))


@pytest.fixture
def server_progress_hook(monkeypatch):
    """The progress hook ComfyUI's server installs (main.py's hijack_progress): every progress update
    raises once an interrupt was asked for. 0.3.52 checks for interrupts only there; newer cores also
    check in every layer (comfy.ops.run_every_op)."""
    import comfy.model_management as mm
    import comfy.utils

    def hook(value, total, preview_image, prompt_id=None, node_id=None):
        mm.throw_exception_if_processing_interrupted()

    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)


def test_interrupt_stops_within_one_evaluation_and_leaves_stock_intact(s, server_progress_hook):
    import comfy.model_management as mm

    stock = s.stock(seed=3)
    log = []
    model = counting_model(s.model, log)

    def wrapper(apply_model, args):
        log.append(args["c"]["transformer_options"].get("w2sd_role", "main"))
        if len(log) == 4:  # inside the reflection phase
            mm.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(wrapper)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            s.w2sd(s.cfg_gap(), model=model, seed=3)
    finally:
        mm.interrupt_current_processing(False)
    assert len(log) <= 5, f"{len(log)} evaluations ran after asking to stop at 4"
    assert torch.equal(s.stock(seed=3), stock)


def test_exception_in_a_model_call_leaves_stock_intact(s):
    split_model = s.c.execute(
        "W2SDLoraSplit",
        model=s.model,
        lora_name=SD15_MINI_LORA,
        main_scale=0.8,
        strong_scale=1.5,
        weak_scale=-1.5,
        clip=None,
    )[0]
    stock = s.stock(seed=4)
    broken = split_model.clone()

    def wrapper(apply_model, args):
        if args["c"]["transformer_options"].get("w2sd_role") == "weak":
            raise RuntimeError("boom inside the weak model")
        return apply_model(args["input"], args["timestep"], **args["c"])

    broken.set_model_unet_function_wrapper(wrapper)
    pair = s.c.execute("W2SDModelPair", strong_model=broken, weak_model=broken)[0]
    with pytest.raises(RuntimeError, match="boom"):
        s.w2sd(pair, model=broken, seed=4)
    assert torch.equal(s.stock(seed=4), stock)


def test_equal_budget_spends_no_more_than_stock(s):
    log = []
    s.w2sd(s.cfg_gap(), model=counting_model(s.model, log), steps=12, equal_budget=True)
    assert len(log) <= 12
    assert Counter(r for r, _ in log) == {"main": 6, "strong": 3, "weak": 3}


def test_diagnostics_plot(s):
    _, plot = s.w2sd(s.cfg_gap())
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and plot.dtype == torch.float32
    assert 0.0 <= plot.min() and plot.max() <= 1.0


def progress_hook(monkeypatch, seen):
    """Every progress update as (value, total), unthrottled (see test_progress_counts_every_evaluation)."""
    import comfy.utils

    for name in ("PROGRESS_THROTTLE_MIN_INTERVAL", "PROGRESS_THROTTLE_MIN_PERCENT"):
        if hasattr(comfy.utils, name):
            monkeypatch.setattr(comfy.utils, name, 0)
    monkeypatch.setattr(
        comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, *a, **k: seen.append((value, total))
    )


def test_adaptive_stop_is_the_fixed_window_that_ends_where_it_stopped(s, monkeypatch):
    """stop_ratio 1: the window ends after the first reflection smaller than the largest so far. The run
    is then the fixed window of that many steps, bit for bit, and the progress total shrinks to what ran."""
    seen, log = [], []
    progress_hook(monkeypatch, seen)
    adaptive, plot = s.w2sd(s.cfg_gap(), model=counting_model(s.model, log), steps=10, seed=3, stop_ratio=1.0)
    reflected = Counter(role for role, _ in log)["strong"]
    assert 2 <= reflected < 9, f"{reflected} reflected: the window did not end early"
    nfe = 10 + 2 * reflected
    assert len(log) == nfe and seen[-1] == (nfe, nfe)
    assert [v for v, _ in seen] == list(range(1, nfe + 1))
    fixed, fixed_plot = s.w2sd(s.cfg_gap(), steps=10, seed=3, reflect_steps=reflected)
    assert torch.equal(adaptive, fixed)
    assert not torch.equal(plot, fixed_plot), "the adaptive plot carries the stop note"


def test_reuse_strong_saves_one_main_evaluation_per_reflected_step(s):
    """reuse_strong: the step after a reflection takes the reflection's strong evaluation; the main model
    runs only outside the window. Fewer evaluations, and the progress bar counts exactly those."""
    log = []
    s.w2sd(s.cfg_gap(5.5, 0.0), model=counting_model(s.model, log), reuse_strong=True)
    assert Counter(role for role, _ in log) == {"main": 1, "strong": STEPS - 1, "weak": STEPS - 1}


def test_reuse_strong_with_strong_equal_weak_and_fixed_point_stays_near_stock(s):
    same = s.c.execute("W2SDModelPair", strong_cfg=5.5, weak_cfg=5.5)[0]
    stock = s.stock()
    scale = stock.abs().max().item()
    reused, _ = s.w2sd(same, inversion="fixed_point", inversion_iters=3, reuse_strong=True)
    fixed, _ = s.w2sd(same, inversion="fixed_point", inversion_iters=3)
    err_reused, err_fixed = ((out - stock).abs().max().item() / scale for out in (reused, fixed))
    print(
        f"strong == weak, fixed-point x3, relative max error vs stock: {err_fixed:.2e}, reusing {err_reused:.2e}"
    )
    # The reused evaluation was made where the (near-identity) reflection started: no new error.
    assert err_reused <= 2 * err_fixed + 1e-6


@pytest.mark.parametrize("reuse_strong", [False, True])
def test_warm_start_with_strong_equal_weak_is_stock_euler(s, reuse_strong):
    """The warm-started inversion undoes a strong step of the same model with no refinement: strong ==
    weak over every step is the stock KSampler (euler) up to float rounding, also reusing the strong
    evaluation (T + lambda evaluations)."""
    same = s.c.execute("W2SDModelPair", strong_cfg=5.5, weak_cfg=5.5)[0]
    stock = s.stock()
    warm, _ = s.w2sd(same, inversion="warm_start", inversion_iters=0, reuse_strong=reuse_strong)
    error = (warm - stock).abs().max().item() / stock.abs().max().item()
    print(f"strong == weak, warm_start, reuse_strong={reuse_strong}: relative max error vs stock {error:.2e}")
    assert error < 1e-5


@pytest.mark.parametrize(
    ("case", "expected"),
    [("lora", "its LoRA scale +1.5 is not the sampler's +0.8"), ("cfg", "its cfg 7 is not the sampler's 5.5"),
     ("s2wd", "works in mode W2SD only")],
)  # fmt: skip
def test_reuse_strong_is_refused_where_the_strong_side_is_not_the_samplers(s, case, expected):
    model, pair, mode = s.model, s.cfg_gap(7.0, 0.0), "W2SD"
    if case == "lora":
        model, pair, _ = s.c.execute(
            "W2SDLoraSplit", model=s.model, lora_name=SD15_MINI_LORA, main_scale=0.8, strong_scale=1.5,
            weak_scale=-1.5, clip=None,
        )  # fmt: skip
    elif case == "s2wd":
        pair, mode = s.cfg_gap(5.5, 0.0), "S2WD (diagnosis)"
    with pytest.raises(ValueError, match="reuse_strong") as error:
        s.w2sd(pair, model=model, reuse_strong=True, mode=mode)
    assert expected in str(error.value)


def test_the_guider_takes_stop_ratio_and_reuse_strong(s):
    """W2SD Guider + SamplerCustomAdvanced: the adaptive, reusing run equals the fixed window that ends
    where it stopped (read from the guider), reusing too."""
    select = s.c.execute("KSamplerSelect", sampler_name="euler")[0]
    noise = s.c.execute("RandomNoise", noise_seed=3)[0]
    sigmas = s.c.execute("BasicScheduler", model=s.model, scheduler="karras", steps=10, denoise=1.0)[0]

    def sample(**reflection):
        guider = s.c.execute(
            "W2SDGuider", model=s.model, positive=s.positive, negative=s.negative, cfg=5.5, pair=s.cfg_gap(),
            **{**REFLECTION, "reuse_strong": True, **reflection},
        )[0]  # fmt: skip
        latent = s.c.execute(
            "SamplerCustomAdvanced", noise=noise, guider=guider, sampler=select, sigmas=sigmas,
            latent_image=s.latent,
        )[0]  # fmt: skip
        return latent["samples"], guider

    adaptive, guider = sample(stop_ratio=1.0)
    assert guider.stop_tracker is not None and guider.stop_tracker.stopped_at is not None
    fixed, _ = sample(reflect_steps=guider.stop_tracker.stopped_at + 1)
    assert torch.equal(adaptive, fixed)


def test_the_plot_note_names_the_reflected_steps_and_the_stop(s):
    import importlib

    pack = s.c.node_class("W2SDKSampler").__module__.rsplit(".", 2)[0]  # <pack>.nodes.sampler_nodes
    plot, core = (importlib.import_module(f"{pack}.{name}") for name in ("nodes.plot", "w2sd_core"))
    diagnostics, tracker = core.ReflectionDiagnostics(), core.AdaptiveStop(0.5).tracker()
    x = torch.ones(1, 4)
    for step, size in enumerate([1.0, 2.0, 0.5]):
        diagnostics.record(step, 10.0 - step, x, x * (1 + size))
        tracker.observe(step, size)
    assert plot.reflected_note(diagnostics, None) == "reflected steps 0-2"
    assert plot.reflected_note(diagnostics, tracker) == (
        "reflected steps 0-2; adaptive stop after step 2: size 0.5 < 0.5 x largest 2"
    )


@pytest.fixture
def no_free_device_memory(monkeypatch):
    """ComfyUI's --novram loading (--lowvram's limit) on this GPU-less machine: ComfyUI is told the CPU is
    a device with no memory free, so its real partial-loading path runs (weights stay on the offload device and are cast,
    LoRA-patched, per call). Only the device's size and kind are faked; the code under test is stock."""
    import comfy.model_management as mm

    mm.unload_all_models()
    monkeypatch.setattr(mm, "vram_state", mm.VRAMState.NO_VRAM)
    monkeypatch.setattr(mm, "is_device_cpu", lambda device: False)
    monkeypatch.setattr(
        mm, "get_free_memory", lambda dev=None, torch_free_too=False: (0, 0) if torch_free_too else 0
    )
    yield mm
    monkeypatch.undo()
    mm.unload_all_models()


def offloaded_modules(model):
    return sum(bool(getattr(m, "comfy_cast_weights", False)) for m in model.model.modules())


def test_two_checkpoints_and_lora_split_offload_under_memory_pressure(s, no_free_device_memory):
    """Both checkpoints of a pair are loaded partially (offloaded) instead of failing, and the result
    is the one a full load gives; the same for the LoRA split, whose scales then apply per call."""
    mm = no_free_device_memory
    finetune = s.c.execute("CheckpointLoaderSimple", ckpt_name=SD15_MINI_FINETUNE)[0]
    split_model, lora_pair, _ = s.c.execute(
        "W2SDLoraSplit", model=s.model, lora_name=SD15_MINI_LORA,
        main_scale=0.8, strong_scale=1.5, weak_scale=-1.5, clip=None,
    )  # fmt: skip
    checkpoints = s.c.execute("W2SDModelPair", strong_model=finetune, weak_model=s.model)[0]
    runs = {"checkpoints": lambda: s.w2sd(checkpoints, model=s.model)[0]}
    runs["lora"] = lambda: s.w2sd(lora_pair, model=split_model)[0]
    low = {}
    for name, run in runs.items():
        low[name] = run()
        offloaded = {side: offloaded_modules(m) for side, m in (("base", s.model), ("finetune", finetune))}
        print(f"{name}: modules left on the offload device {offloaded}")
        assert s.model.model.model_lowvram and offloaded["base"] > 0
        if name == "checkpoints":
            assert finetune.model.model_lowvram and offloaded["finetune"] > 0

    mm.unload_all_models()
    with pytest.MonkeyPatch.context() as full_load:
        full_load.setattr(mm, "vram_state", mm.VRAMState.NORMAL_VRAM)
        full_load.setattr(mm, "is_device_cpu", lambda device: True)
        full = {name: run() for name, run in runs.items()}
        assert offloaded_modules(s.model) == 0, "a full load leaves no module on the offload device"
    for name in low:
        rel = (low[name] - full[name]).abs().max().item() / full[name].abs().max().item()
        print(f"{name}: offloaded vs full load, relative max difference {rel:.1e}")
        assert rel < 1e-4, name


@pytest.mark.parametrize("sampler", every_sampler_name())
def test_every_sampler_runs_and_an_empty_window_is_stock(s, sampler):
    import comfy.samplers

    assert sampler in comfy.samplers.KSampler.SAMPLERS  # the parsed list is the core's own
    pair = s.cfg_gap()
    empty, _ = s.w2sd(pair, sampler=sampler, scheduler="normal", steps=4, reflect_steps=0)
    assert torch.equal(empty, s.stock(sampler=sampler, scheduler="normal", steps=4))
    reflected, _ = s.w2sd(pair, sampler=sampler, scheduler="normal", steps=4)
    assert torch.isfinite(reflected).all()
    assert not torch.equal(reflected, empty)


def test_window_in_sigma_reads_start_and_end_as_comfyui_does(s):
    """window = sigma: hi = percent_to_sigma(start_percent), lo = percent_to_sigma(end_percent) of the
    sampler's model, and a step reflects when its starting sigma lies in [lo, hi], as ComfyUI applies a
    ControlNet's or a ConditioningSetTimestepRange's percents. 0..1 (lo = 0) is every step but the last:
    percent 0..1 bit for bit. 0.25..0.75 on karras 4 steps (sigmas 14.6, 3.17, 0.447, 0.029) holds step 1
    only, where percent 0.25..0.75 reflects steps 1 and 2."""
    steps, pair = 4, s.cfg_gap()
    every, _ = s.w2sd(pair, steps=steps, window="sigma", start_percent=0.0, end_percent=1.0)
    assert torch.equal(
        every, s.w2sd(pair, steps=steps, window="percent", start_percent=0.0, end_percent=1.0)[0]
    )

    model_sampling = s.model.get_model_object("model_sampling")
    assert model_sampling.percent_to_sigma(1.0) == 0.0
    hi, lo = model_sampling.percent_to_sigma(0.25), model_sampling.percent_to_sigma(0.75)
    log = []
    model = sigma_logging_model(s.model, log)
    latent, _ = s.w2sd(pair, model=model, steps=steps, window="sigma", start_percent=0.25, end_percent=0.75)
    schedule = [sigma for role, sigma in log if role == "main"]  # one evaluation per step (euler)
    reflected = [sigma for role, sigma in log if role == "strong"]  # a reflection's strong step at sigma_i
    print(
        f"karras {steps} steps {[round(x, 3) for x in schedule]}, sigma window {lo:.3g}..{hi:.3g}: {reflected}"
    )
    assert reflected == [sigma for sigma in schedule[:-1] if lo <= sigma <= hi] == [schedule[1]]
    log.clear()
    s.w2sd(pair, model=model, steps=steps, window="percent", start_percent=0.25, end_percent=0.75)
    assert [sigma for role, sigma in log if role == "strong"] == schedule[1:3]
    assert not torch.equal(latent, s.stock(steps=steps))

    node = s.c.node_class("W2SDKSampler")
    message = node.VALIDATE_INPUTS(window="sigma", start_percent=0.8, end_percent=0.2, steps=steps)
    assert "start_percent=0.8 is after end_percent=0.2 (window = sigma)" in message
    assert node.VALIDATE_INPUTS(window="sigma", start_percent=0.2, end_percent=0.8, steps=steps) is True
