"""Patches people stack between loader and sampler, through the W2SD KSampler (issue #23 item 4).

Per patch: with reflections off it is stock-with-the-patch bit for bit; with reflections on it runs, or it
is refused with a message naming the node. See docs/COMPATIBILITY.md for the table.
"""

from __future__ import annotations

import sys

import pytest
import torch
from fixtures.checkpoints import SD3_MINI, SD15_MINI
from fixtures.passes import observed

REFLECTION = {
    "mode": "W2SD", "window": "steps", "start_percent": 0.0, "end_percent": 0.5, "reflect_steps": -1,
    "inversion": "explicit", "inversion_iters": 3, "equal_budget": False,
}  # fmt: skip
STEPS = 3


class Setup:
    """One tiny checkpoint at 32 x 32 px, a stock KSampler and the W2SD KSampler on it."""

    def __init__(self, comfyui, checkpoint):
        self.c = comfyui
        comfyui.load_pack()
        self.model, self.clip, _ = comfyui.execute("CheckpointLoaderSimple", ckpt_name=checkpoint)
        self.positive = comfyui.execute("CLIPTextEncode", clip=self.clip, text="a red fox in the snow")[0]
        self.negative = comfyui.execute("CLIPTextEncode", clip=self.clip, text="blurry")[0]
        channels = self.model.get_model_object("latent_format").latent_channels
        self.latent = {"samples": torch.zeros(1, channels, 4, 4)}

    def stock(self, model, latent=None, cfg=5.5, steps=STEPS):
        out = self.c.nodes.common_ksampler(
            model, 1, steps, cfg, "euler", "karras", self.positive, self.negative, latent or self.latent
        )
        return out[0]["samples"]

    def w2sd(self, model, pair, latent=None, cfg=5.5, steps=STEPS, **reflection):
        out = self.c.execute(
            "W2SDKSampler", model=model, seed=1, steps=steps, cfg=cfg, sampler_name="euler",
            scheduler="karras", positive=self.positive, negative=self.negative,
            latent_image=latent or self.latent, denoise=1.0, pair=pair, **{**REFLECTION, **reflection},
        )  # fmt: skip
        return out[0]["samples"]

    def cfg_gap(self, strong=5.5, weak=1.0):
        return self.c.execute("W2SDCFGGap", strong_cfg=strong, weak_cfg=weak)[0]

    def patched(self, node, **inputs):
        if node not in self.c.nodes.NODE_CLASS_MAPPINGS:
            pytest.skip(f"this ComfyUI core has no {node} node")
        return self.c.execute(node, model=self.model, **inputs)[0]


@pytest.fixture(scope="module")
def sd15(comfyui):
    return Setup(comfyui, SD15_MINI)


@pytest.fixture(scope="module")
def sd3(comfyui):
    return Setup(comfyui, SD3_MINI)


def runs_and_stock_when_off(s, model, pair):
    """W2SD reflects to a finite latent that differs from stock; with reflect_steps=0 it is stock bit for bit."""
    stock = s.stock(model)
    reflected = s.w2sd(model, pair)
    assert torch.isfinite(reflected).all()
    assert not torch.equal(reflected, stock)
    assert torch.equal(s.w2sd(model, pair, reflect_steps=0), stock)


# --- 1. model-sampling patches ---------------------------------------------------------------------
MODEL_SAMPLING = [
    ("sd3", "ModelSamplingSD3", {"shift": 3.0}, {"shift": 6.0}),
    ("sd3", "ModelSamplingAuraFlow", {"shift": 1.73}, {"shift": 3.0}),
    ("sd3", "ModelSamplingFlux", {"max_shift": 1.15, "base_shift": 0.5, "width": 32, "height": 32},
     {"max_shift": 2.0, "base_shift": 0.5, "width": 32, "height": 32}),
    ("sd3", "ModelSamplingLTXV", {"max_shift": 2.05, "base_shift": 0.95}, {"max_shift": 1.0, "base_shift": 0.5}),
    ("sd15", "ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": False},
     {"sampling": "v_prediction", "zsnr": True}),
]  # fmt: skip


@pytest.mark.parametrize("family,node,settings,other", MODEL_SAMPLING, ids=[c[1] for c in MODEL_SAMPLING])
def test_model_sampling_same_on_all_sides_works_and_other_settings_are_refused(
    request, family, node, settings, other
):
    """The same ModelSampling node on the sampler's model and (as a separate patcher) on the weak model works;
    the weak model with other settings is refused, naming the weak side and both schedules."""
    s = request.getfixturevalue(family)
    main = s.patched(node, **settings)
    weak = s.patched(node, **settings)
    assert weak is not main
    runs_and_stock_when_off(s, main, s.c.execute("W2SDModelPair", weak_model=weak, weak_cfg=1.0)[0])

    mismatch = s.c.execute("W2SDModelPair", weak_model=s.patched(node, **other), weak_cfg=1.0)[0]
    with pytest.raises(
        ValueError, match=r"the weak model samples with .*, but the sampler's model with"
    ) as e:
        s.w2sd(main, mismatch)
    assert "ModelSampling" in str(e.value)


def test_unpatched_side_against_a_shifted_sampler_model_is_refused(sd3):
    """The usual mistake: ModelSamplingSD3 on the sampler's model only, the bare checkpoint as weak_model."""
    main = sd3.patched("ModelSamplingSD3", shift=6.0)
    pair = sd3.c.execute("W2SDModelPair", weak_model=sd3.model)[0]
    with pytest.raises(
        ValueError, match=r"weak model samples with ModelSamplingDiscreteFlow.*shift 3.*shift 6"
    ):
        sd3.w2sd(main, pair)


# --- 2. CFG-stage functions ------------------------------------------------------------------------
CFG_PATCHES = [
    ("sd15", "CFGNorm", {"strength": 1.0}),
    ("sd15", "CFGZeroStar", {}),
    ("sd15", "APG", {"eta": 1.0, "norm_threshold": 5.0, "momentum": 0.0}),
    ("sd15", "TCFG", {}),
    ("sd15", "RescaleCFG", {"multiplier": 0.7}),
    ("sd15", "PerturbedAttentionGuidance", {"scale": 3.0}),
    ("sd15", "RenormCFG", {"cfg_trunc": 100.0, "renorm_cfg": 1.0}),
    ("sd15", "NAGuidance", {"nag_scale": 5.0, "nag_alpha": 0.5, "nag_tau": 1.5}),
    ("sd3", "SkipLayerGuidanceDiT", {"double_layers": "1", "single_layers": "", "scale": 3.0,
                                     "start_percent": 0.0, "end_percent": 1.0, "rescaling_scale": 0.0}),
]  # fmt: skip


@pytest.mark.parametrize("family,node,inputs", CFG_PATCHES, ids=[c[1] for c in CFG_PATCHES])
def test_cfg_stage_patch_runs_and_is_stock_when_off(request, family, node, inputs):
    s = request.getfixturevalue(family)
    runs_and_stock_when_off(s, s.patched(node, **inputs), s.cfg_gap())


def test_apg_without_momentum_keeps_stock_with_an_exact_reflection(sd15):
    """strong == weak and a converged inversion: the reflection is a no-op and W2SD gives back stock-with-APG."""
    apg = sd15.patched("APG", eta=1.0, norm_threshold=5.0, momentum=0.0)
    same = sd15.cfg_gap(5.5, 5.5)
    stock = sd15.stock(apg)
    reflected = sd15.w2sd(apg, same, inversion="warm_start", inversion_iters=10)
    error = ((reflected - stock).abs().max() / stock.abs().max()).item()
    assert error < 1e-4, f"W2SD with a null pair and APG is {error:.2e} from stock-with-APG"


def test_apg_momentum_is_refused_inside_the_window(sd15, monkeypatch):
    """APG's running average resets whenever sigma rises, as every W2SD inversion makes it: refused. Why:
    without the refusal, the null reflection of the test above lands far from stock-with-APG."""
    apg = sd15.patched("APG", eta=1.0, norm_threshold=5.0, momentum=0.5)
    with pytest.raises(ValueError, match=r"Adaptive Projected Guidance \(APG\) with momentum=0.5"):
        sd15.w2sd(apg, sd15.cfg_gap())
    stock = sd15.stock(apg)
    assert torch.equal(sd15.w2sd(apg, sd15.cfg_gap(), reflect_steps=0), stock)

    guider = next(m for name, m in sys.modules.items() if name.endswith("nodes.guider"))
    monkeypatch.setattr(guider, "check_reflection_patches", lambda options: None)
    unchecked = sd15.w2sd(apg, sd15.cfg_gap(5.5, 5.5), inversion="warm_start", inversion_iters=10)
    error = ((unchecked - stock).abs().max() / stock.abs().max()).item()
    assert error > 1e-2, f"APG momentum survived the reflections ({error:.2e} from stock): the refusal may go"


# --- 3. step caches --------------------------------------------------------------------------------
CACHE_STEPS = 6


def first_layer(network):
    return network.x_embedder if hasattr(network, "x_embedder") else network.input_blocks[0][0]


def network_runs(model, runs):
    """Records the role of every pass that really runs the network (a cache's skip does not)."""
    network = model.model.diffusion_model
    role = []

    def called(module, args, kwargs):
        role[:] = [kwargs["transformer_options"].get("w2sd_role", "main")]

    def ran(module, args):
        runs.append(role[0])

    return [
        network.register_forward_pre_hook(called, with_kwargs=True),
        first_layer(network).register_forward_pre_hook(ran),
    ]


@pytest.mark.parametrize("node", ["EasyCache", "LazyCache"])
def test_step_cache_skips_regular_steps_only(sd15, node):
    """Every strong and weak call runs the network (never served a cached output of the other side or
    another sigma), the cache still skips regular steps, a CFG gap still reflects (differs from a null
    pair), and with reflections off it is stock-with-the-cache bit for bit."""
    cached = sd15.patched(node, reuse_threshold=2.0, start_percent=0.0, end_percent=1.0, verbose=False)
    runs = []
    hooks = network_runs(cached, runs)
    try:
        gap = sd15.w2sd(cached, sd15.cfg_gap(), steps=CACHE_STEPS)
    finally:
        for hook in hooks:
            hook.remove()
    reflected = CACHE_STEPS - 1
    assert (runs.count("strong"), runs.count("weak")) == (reflected, reflected), runs
    assert runs.count("main") < CACHE_STEPS, f"{node} skipped no regular step: the test shows nothing"
    assert torch.isfinite(gap).all()
    assert not torch.equal(gap, sd15.w2sd(cached, sd15.cfg_gap(5.5, 5.5), steps=CACHE_STEPS))
    assert torch.equal(
        sd15.w2sd(cached, sd15.cfg_gap(), steps=CACHE_STEPS, reflect_steps=0),
        sd15.stock(cached, steps=CACHE_STEPS),
    )


def test_flux_kv_cache_is_refused(sd15):
    """FluxKVCache's patches are recognised on any model; the node itself is for Flux Kontext references."""
    cached = sd15.patched("FluxKVCache")
    with pytest.raises(ValueError, match="FluxKVCache cannot run inside a W2SD reflection window"):
        sd15.w2sd(cached, sd15.cfg_gap())


# --- 4. inpainting masks ---------------------------------------------------------------------------
def recording(model, calls):
    """A clone that records every network pass as (role, x, sigma), before the model scales x."""
    return observed(
        model, lambda role, args: calls.append((role, args["input"].clone(), args["timestep"].clone()))
    )


@pytest.mark.parametrize("differential", [False, True], ids=["SetLatentNoiseMask", "DifferentialDiffusion"])
def test_mask_puts_the_original_back_on_every_call_inversions_too(sd15, differential):
    """Every model call (strong, weak, main) sees the original latent, noised to its sigma, outside the mask,
    and with a plain mask the output keeps the input latent there, as stock does."""
    import comfy.sample

    original = {"samples": torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(3))}
    mask = torch.zeros(1, 32, 32)
    mask[:, :, :16] = 1.0 if not differential else torch.linspace(0.3, 1.0, 16)
    latent = sd15.c.execute("SetLatentNoiseMask", samples=original, mask=mask)[0]
    keep = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    keep[..., 2:] = True  # the latent columns under the mask's zero half
    model = sd15.c.execute("DifferentialDiffusion", model=sd15.model)[0] if differential else sd15.model
    calls = []
    out = sd15.w2sd(recording(model, calls), sd15.cfg_gap(), latent=latent)
    stock = sd15.stock(model, latent=latent)

    assert {role for role, _, _ in calls} == {"main", "strong", "weak"}
    sampling = model.get_model_object("model_sampling")
    noise = comfy.sample.prepare_noise(original["samples"], 1)
    scaled = model.get_model_object("latent_format").process_in(original["samples"])
    for role, x, timestep in calls:
        expected = sampling.noise_scaling(timestep[:1], noise, scaled)  # timestep: sigma here
        if differential and timestep[0] <= sampling.sigma_min * 1.001:
            continue  # DifferentialDiffusion's threshold is 0 at sigma_min: it lets every pixel change there
        for item in x:
            assert torch.allclose(item[keep[0]], expected[0][keep[0]], rtol=1e-3, atol=1e-4), role
    if differential:
        return
    assert torch.allclose(out[keep], original["samples"][keep], atol=1e-5)
    assert torch.allclose(stock[keep], original["samples"][keep], atol=1e-5)
    assert not torch.equal(out[~keep], stock[~keep])
