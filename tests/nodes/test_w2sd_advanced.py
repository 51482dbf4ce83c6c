"""W2SD KSampler (Advanced) in-process against stock KSamplerAdvanced: two-stage runs (SD1.5 mini, and
Wan 2.2 14B's two experts from tests/fixtures/families.py), the guider path over split schedules,
the reflection window over a partial schedule, and stock's behaviour for stages that hold no step."""

from __future__ import annotations

import sys
from collections import Counter

import pytest
import torch
from fixtures.checkpoints import SD15_MINI
from fixtures.families import WAN_TEXT_DIM, build_family, conditioning, family
from fixtures.passes import observed, sigma_logging_model

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS, SPLIT, CFG, SEED = 4, 2, 5.5, 7
REFLECTION = {
    "mode": "W2SD", "window": "steps", "start_percent": 0.0, "end_percent": 0.5, "reflect_steps": 0,
    "inversion": "explicit", "inversion_iters": 0, "equal_budget": False,
}  # fmt: skip
FIRST_HALF = {**REFLECTION, "window": "percent", "start_percent": 0.0, "end_percent": 0.5}
SECOND_HALF = {**REFLECTION, "window": "percent", "start_percent": 0.5, "end_percent": 1.0}
# Stage 1 returns its leftover noise, stage 2 adds none: the core's Wan 2.2 blueprints.
STAGE_1 = {
    "add_noise": "enable",
    "start_at_step": 0,
    "end_at_step": SPLIT,
    "return_with_leftover_noise": "enable",
}
STAGE_2 = {
    "add_noise": "disable",
    "start_at_step": SPLIT,
    "end_at_step": 10000,
    "return_with_leftover_noise": "disable",
}


class Setup:
    def __init__(self, comfyui, model, positive, negative, latent, scheduler):
        self.c = comfyui
        self.model, self.positive, self.negative, self.latent = model, positive, negative, latent
        self.scheduler = scheduler

    def stock(self, latent=None, model=None, sampler="euler", steps=STEPS, **stage):
        return self.c.execute(
            "KSamplerAdvanced", model=model or self.model, noise_seed=SEED, steps=steps, cfg=CFG,
            sampler_name=sampler, scheduler=self.scheduler, positive=self.positive, negative=self.negative,
            latent_image=latent or self.latent, **stage,
        )[0]  # fmt: skip

    def w2sd(
        self, pair, latent=None, model=None, sampler="euler", steps=STEPS, reflection=REFLECTION, **stage
    ):
        return self.c.execute(
            "W2SDKSamplerAdvanced", model=model or self.model, noise_seed=SEED, steps=steps, cfg=CFG,
            sampler_name=sampler, scheduler=self.scheduler, positive=self.positive, negative=self.negative,
            latent_image=latent or self.latent, pair=pair, **reflection, **stage,
        )  # fmt: skip

    def w2sd_ksampler(self, pair, reflection, sampler="euler"):
        return self.c.execute(
            "W2SDKSampler", model=self.model, seed=SEED, steps=STEPS, cfg=CFG, sampler_name=sampler,
            scheduler=self.scheduler, positive=self.positive, negative=self.negative, latent_image=self.latent,
            denoise=1.0, pair=pair, **reflection,
        )[0]["samples"]  # fmt: skip

    def cfg_gap(self, strong=CFG, weak=0.0):
        return self.c.execute("W2SDCFGGap", strong_cfg=strong, weak_cfg=weak, pair=None)[0]


@pytest.fixture(scope="module")
def s(comfyui):
    comfyui.load_pack()
    model, clip, _ = comfyui.execute("CheckpointLoaderSimple", ckpt_name=SD15_MINI)
    positive = comfyui.execute("CLIPTextEncode", clip=clip, text="a red fox in the snow")[0]
    negative = comfyui.execute("CLIPTextEncode", clip=clip, text="blurry")[0]
    latent = comfyui.execute("EmptyLatentImage", width=64, height=64, batch_size=1)[0]
    return Setup(comfyui, model, positive, negative, latent, "karras")


@pytest.fixture(scope="module")
def wan(comfyui):
    """Wan 2.2 14B's shape: a high-noise and a low-noise expert (the family table's Wan 2.1-class T2V with
    two fills), through the stock UNETLoader where the core's detection takes the tiny file (0.29.0)."""
    comfyui.load_pack()
    spec = family("wan21_t2v")
    experts = [build_family(spec, comfyui.base_dir / "models", salt=s).model for s in ("high", "low")]
    assert experts[0].model.diffusion_model.text_embedding[0].in_features == WAN_TEXT_DIM
    latent = comfyui.execute("EmptyHunyuanLatentVideo", width=64, height=64, length=1, batch_size=1)[0]
    setup = Setup(comfyui, experts[0], conditioning(spec, 1), conditioning(spec, 2), latent, "simple")
    setup.low = experts[1]
    return setup


def counting_model(model, log):
    """A clone whose every network pass is logged by role."""
    return observed(model, lambda role, args: log.append(role))


# --- reflection off: KSamplerAdvanced bit for bit --------------------------------------------------


@pytest.mark.parametrize(
    "sampler", ["euler", "dpmpp_2m_sde", "uni_pc"]
)  # SDE noise over the stage's sigmas; uni_pc drops a sigma
def test_two_stages_with_an_empty_window_are_stock_bit_for_bit(s, sampler):
    pair = s.cfg_gap()
    stock_1 = s.stock(sampler=sampler, **STAGE_1)
    ours_1, _ = s.w2sd(pair, sampler=sampler, **STAGE_1)
    assert torch.equal(ours_1["samples"], stock_1["samples"])
    stock_2 = s.stock(stock_1, sampler=sampler, **STAGE_2)
    ours_2, _ = s.w2sd(pair, ours_1, sampler=sampler, **STAGE_2)
    assert torch.equal(ours_2["samples"], stock_2["samples"])
    assert not torch.equal(stock_2["samples"], stock_1["samples"])


def test_a_stage_that_ends_early_without_leftover_noise_is_stock(s):
    """return_with_leftover_noise disabled: the stage's last step goes to sigma 0, as stock's does."""
    stage = {**STAGE_1, "return_with_leftover_noise": "disable"}
    ours, _ = s.w2sd(s.cfg_gap(), **stage)
    assert torch.equal(ours["samples"], s.stock(**stage)["samples"])


def test_wan22_two_experts_with_an_empty_window_are_stock_bit_for_bit(wan):
    pair = wan.cfg_gap()
    stock_1 = wan.stock(**STAGE_1)
    ours_1, _ = wan.w2sd(pair, **STAGE_1)
    assert torch.equal(ours_1["samples"], stock_1["samples"])
    stock_2 = wan.stock(stock_1, model=wan.low, **STAGE_2)
    ours_2, _ = wan.w2sd(pair, ours_1, model=wan.low, **STAGE_2)
    assert torch.equal(ours_2["samples"], stock_2["samples"])
    # The experts differ: stage 2 on the high-noise expert is another latent.
    assert not torch.equal(wan.stock(stock_1, **STAGE_2)["samples"], stock_2["samples"])


@pytest.mark.parametrize(
    "reflection", [FIRST_HALF, {**REFLECTION, "reflect_steps": -1}], ids=["first half", "all"]
)
def test_one_full_stage_is_the_w2sd_ksampler_bit_for_bit(s, reflection):
    pair = s.cfg_gap()
    full = {
        "add_noise": "enable",
        "start_at_step": 0,
        "end_at_step": 10000,
        "return_with_leftover_noise": "disable",
    }
    ours, _ = s.w2sd(pair, reflection=reflection, **full)
    expected = s.w2sd_ksampler(pair, reflection)
    assert torch.equal(ours["samples"], expected)
    assert not torch.equal(expected, s.stock(**full)["samples"])


# --- the guider path over split schedules ----------------------------------------------------------


def two_stage_custom(setup, guider, sigmas, split, model_2=None, guider_2=None):
    """SplitSigmas at `split`; stage 1 adds the noise, stage 2 none (SamplerCustomAdvanced twice)."""
    c = setup.c
    high, low = c.execute("SplitSigmas", sigmas=sigmas, step=split)
    select = c.execute("KSamplerSelect", sampler_name="euler")[0]
    noise = c.execute("RandomNoise", noise_seed=SEED)[0]
    first = c.execute(
        "SamplerCustomAdvanced",
        noise=noise,
        guider=guider,
        sampler=select,
        sigmas=high,
        latent_image=setup.latent,
    )[0]
    second = c.execute(
        "SamplerCustomAdvanced", noise=c.execute("DisableNoise")[0], guider=guider_2 or guider, sampler=select,
        sigmas=low, latent_image=first,
    )[0]  # fmt: skip
    return first["samples"], second["samples"]


def guiders(setup, model=None):
    model = model or setup.model
    stock = setup.c.execute(
        "CFGGuider", model=model, positive=setup.positive, negative=setup.negative, cfg=CFG
    )[0]
    ours = setup.c.execute(
        "W2SDGuider", model=model, positive=setup.positive, negative=setup.negative, cfg=CFG,
        pair=setup.cfg_gap(), **REFLECTION,
    )[0]  # fmt: skip
    return stock, ours


def test_guider_split_sigmas_two_stages_are_stock_bit_for_bit(s):
    sigmas = s.c.execute("BasicScheduler", model=s.model, scheduler="karras", steps=STEPS, denoise=1.0)[0]
    stock, ours = guiders(s)
    for a, b in zip(
        two_stage_custom(s, ours, sigmas, SPLIT), two_stage_custom(s, stock, sigmas, SPLIT), strict=True
    ):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "schedule",
    [
        ("ManualSigmas", {"sigmas": "1.0, 0.8, 0.5, 0.2, 0.0"}),
        ("Flux2Scheduler", {"steps": STEPS, "width": 64, "height": 64}),
        (
            "LTXVScheduler",
            {"steps": STEPS, "max_shift": 2.05, "base_shift": 0.95, "stretch": True, "terminal": 0.1},
        ),
    ],
    ids=lambda p: p[0],
)
def test_guider_two_experts_over_flow_schedules_are_stock_bit_for_bit(wan, schedule):
    name, inputs = schedule
    if name not in wan.c.nodes.NODE_CLASS_MAPPINGS:
        pytest.skip(f"this ComfyUI has no {name} node")
    sigmas = wan.c.execute(name, **inputs)[0]
    stock_high, ours_high = guiders(wan)
    stock_low, ours_low = guiders(wan, wan.low)
    ours = two_stage_custom(wan, ours_high, sigmas, SPLIT, guider_2=ours_low)
    stock = two_stage_custom(wan, stock_high, sigmas, SPLIT, guider_2=stock_low)
    for a, b in zip(ours, stock, strict=True):
        assert torch.equal(a, b)


# --- reflection on: the window counts in the whole schedule ----------------------------------------


def split_error(setup, pair, reflection):
    """(two-stage W2SD, one-stage W2SD KSampler, stock one stage): the final latents."""
    stage_1, _ = setup.w2sd(pair, reflection=reflection, **STAGE_1)
    stage_2, plot = setup.w2sd(pair, stage_1, reflection=reflection, **STAGE_2)
    return stage_2["samples"], setup.w2sd_ksampler(pair, reflection), plot


def relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize(
    "reflection", [FIRST_HALF, SECOND_HALF], ids=["window in stage 1", "window in stage 2"]
)
def test_two_stages_reflect_the_one_stage_window(s, reflection):
    """Two stages with a window equal one stage with it, up to the stage hand-over: stock's own two-stage
    split round-trips the latent through the VAE scale (x / 0.18215 x 0.18215), so the same tolerance holds
    between stock's two stages and its one stage. The gap pair moves the result far beyond it."""
    full = {
        "add_noise": "enable",
        "start_at_step": 0,
        "end_at_step": 10000,
        "return_with_leftover_noise": "disable",
    }
    stock_split = s.stock(s.stock(**STAGE_1), **STAGE_2)["samples"]
    stock_full = s.stock(**full)["samples"]
    handover = relative(stock_split, stock_full)
    tolerance = max(10 * handover, 1e-5)  # float32 rounding differs by CPU: 2.8e-6 seen on an AMD EPYC
    two, one, _ = split_error(s, s.cfg_gap(), reflection)
    assert relative(two, one) <= tolerance, (relative(two, one), handover)
    # The window does something: far from stock and from a null pair (strong cfg == weak cfg).
    assert relative(one, stock_full) > 100 * tolerance
    null_two, null_one, _ = split_error(s, s.cfg_gap(CFG, CFG), reflection)
    assert relative(null_two, null_one) <= tolerance
    assert relative(two, null_two) > 100 * tolerance
    print(f"{reflection['start_percent']}..{reflection['end_percent']}: two vs one stage {relative(two, one):.1e}, "
          f"stock hand-over {handover:.1e}, gap vs null {relative(two, null_two):.1e}")  # fmt: skip


def test_a_stage_outside_the_window_reflects_nothing_and_is_stock(s):
    pair = s.cfg_gap()
    log = []
    stage_1, _ = s.w2sd(pair, reflection=FIRST_HALF, **STAGE_1)
    counted = counting_model(s.model, log)
    stage_2, plot = s.w2sd(pair, stage_1, model=counted, reflection=FIRST_HALF, **STAGE_2)
    assert Counter(log) == {"main": STEPS - SPLIT}
    assert torch.equal(stage_2["samples"], s.stock(stage_1, **STAGE_2)["samples"])
    log.clear()
    s.w2sd(pair, model=counted, reflection=FIRST_HALF, **STAGE_1)
    assert Counter(log) == {"main": SPLIT, "strong": SPLIT, "weak": SPLIT}


def test_a_stage_with_leftover_noise_reflects_its_last_step(s):
    log = []
    model = counting_model(s.model, log)
    s.w2sd(s.cfg_gap(), model=model, reflection={**REFLECTION, "reflect_steps": -1}, **STAGE_1)
    assert Counter(log) == {"main": SPLIT, "strong": SPLIT, "weak": SPLIT}
    log.clear()
    # Without leftover noise the stage's last step goes into sigma 0: it does not reflect.
    stage = {**STAGE_1, "return_with_leftover_noise": "disable"}
    s.w2sd(s.cfg_gap(), model=model, reflection={**REFLECTION, "reflect_steps": -1}, **stage)
    assert Counter(log) == {"main": SPLIT, "strong": SPLIT - 1, "weak": SPLIT - 1}


def test_a_window_in_sigma_reflects_the_same_steps_in_two_stages_as_in_one(s):
    """window = sigma reads each step's own sigma: no stage arithmetic. 0.25..1 holds steps 1 and 2 of karras
    4 steps (sigma 3.17 and 0.447), one in each stage."""
    sigma_window = {**REFLECTION, "window": "sigma", "start_percent": 0.25, "end_percent": 1.0}
    log = []
    model = sigma_logging_model(s.model, log)
    stage_1, _ = s.w2sd(s.cfg_gap(), model=model, reflection=sigma_window, **STAGE_1)
    s.w2sd(s.cfg_gap(), stage_1, model=model, reflection=sigma_window, **STAGE_2)
    two_stages = list(log)
    log.clear()
    s.c.execute(
        "W2SDKSampler", model=model, seed=SEED, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler=s.scheduler,
        positive=s.positive, negative=s.negative, latent_image=s.latent, denoise=1.0, pair=s.cfg_gap(),
        **sigma_window,
    )  # fmt: skip
    schedule = [sigma for role, sigma in log if role == "main"]
    assert two_stages == log
    assert [sigma for role, sigma in log if role == "strong"] == schedule[1:3]


def test_wan22_experts_reflect_the_window_in_the_high_noise_stage(wan):
    log = []
    pair = wan.cfg_gap()
    stage_1, _ = wan.w2sd(pair, model=counting_model(wan.model, log), reflection=FIRST_HALF, **STAGE_1)
    stage_2, _ = wan.w2sd(pair, stage_1, model=counting_model(wan.low, log), reflection=FIRST_HALF, **STAGE_2)
    assert Counter(log) == {"main": STEPS, "strong": SPLIT, "weak": SPLIT}
    stock_2 = wan.stock(wan.stock(**STAGE_1), model=wan.low, **STAGE_2)["samples"]
    assert torch.isfinite(stage_2["samples"]).all()
    assert relative(stage_2["samples"], stock_2) > 1e-4


# --- stages that hold no step, and refused inputs --------------------------------------------------


@pytest.mark.parametrize(
    "stage",
    [
        {"start_at_step": 2, "end_at_step": 2},
        {"start_at_step": 3, "end_at_step": 1},
        {"start_at_step": STEPS, "end_at_step": 10000},
        {"start_at_step": 9, "end_at_step": 10000},
    ],
    ids=lambda st: f"{st['start_at_step']}..{st['end_at_step']}",
)
def test_a_stage_without_steps_returns_the_latent_as_stock_does(s, stage):
    stage = {"add_noise": "enable", "return_with_leftover_noise": "disable", **stage}
    start = {
        **s.latent,
        "samples": torch.randn(s.latent["samples"].shape, generator=torch.Generator().manual_seed(3)),
    }
    ours, _ = s.w2sd(s.cfg_gap(), start, reflection=FIRST_HALF, **stage)
    stock = s.stock(start, **stage)
    assert torch.equal(ours["samples"], stock["samples"]) and torch.equal(ours["samples"], start["samples"])


def test_equal_budget_is_refused_naming_the_input(s):
    with pytest.raises(ValueError, match=r"equal_budget=True is not available on W2SD KSampler \(Advanced\)"):
        s.w2sd(s.cfg_gap(), reflection={**REFLECTION, "equal_budget": True}, **STAGE_1)


def test_the_window_is_checked_against_the_whole_schedule(s):
    with pytest.raises(ValueError, match=r"reflect_steps=4 is outside this 4-step schedule"):
        s.w2sd(s.cfg_gap(), reflection={**REFLECTION, "reflect_steps": 4}, **STAGE_1)
    node = s.c.node_class("W2SDKSamplerAdvanced")
    message = node.VALIDATE_INPUTS(
        window="steps", start_percent=0.0, end_percent=0.5, reflect_steps=4, steps=4
    )
    assert "reflect_steps=4" in message and "steps=4" in message


def test_the_plot_numbers_steps_in_the_whole_schedule(s, monkeypatch):
    sampler_nodes = sys.modules[s.c.node_class("W2SDKSamplerAdvanced").__module__]
    plot = sys.modules[sampler_nodes.__name__.rsplit(".", 1)[0] + ".plot"]
    notes = []

    def recording(diagnostics, title, stop=None, first_step=0):
        notes.append((title, plot.reflected_note(diagnostics, stop, first_step) if diagnostics else ""))
        return plot.diagnostics_image(diagnostics, title, stop, first_step)

    monkeypatch.setattr(sampler_nodes, "diagnostics_image", recording)
    stage_1, _ = s.w2sd(s.cfg_gap(), reflection=SECOND_HALF, **STAGE_1)
    s.w2sd(s.cfg_gap(), stage_1, reflection=SECOND_HALF, **STAGE_2)
    assert notes[0][1] == "" and notes[1][1] == "reflected steps 2-2"
    assert notes[1][0].endswith("steps 2..4 of 4")


def test_fp16_intermediates_give_stock_dtype_and_values(s, monkeypatch):
    """--fp16-intermediates (0.29.0): comfy.sample casts the sampled latent to fp16; so do both W2SD KSamplers."""
    import comfy.cli_args
    import comfy.model_management

    if not hasattr(comfy.model_management, "intermediate_dtype"):
        pytest.skip("this ComfyUI has no intermediate dtype (--fp16-intermediates)")
    monkeypatch.setattr(comfy.cli_args.args, "fp16_intermediates", True)
    stock = s.stock(**STAGE_1)["samples"]
    ours, _ = s.w2sd(s.cfg_gap(), **STAGE_1)
    assert stock.dtype == torch.float16 and torch.equal(ours["samples"], stock)
    empty = {**STAGE_1, "start_at_step": 3}
    assert torch.equal(s.w2sd(s.cfg_gap(), **empty)[0]["samples"], s.stock(**empty)["samples"])
    full = s.c.nodes.common_ksampler(
        s.model, SEED, STEPS, CFG, "euler", "karras", s.positive, s.negative, s.latent
    )
    assert torch.equal(s.w2sd_ksampler(s.cfg_gap(), REFLECTION), full[0]["samples"])
