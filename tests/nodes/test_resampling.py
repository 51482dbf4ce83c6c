"""Re-Sampling (arXiv 2502.00473, Appendix E.3) re-noises to each model type's own signal level: the guider
reads the noising off ComfyUI's real model_sampling classes, and the latents the model receives after a
re-noising are the model's own forward noising."""

from __future__ import annotations

import importlib

import pytest
import torch
from fixtures.checkpoints import SD3_MINI, SD15_MINI

DRAWS = 100_000
X0 = torch.linspace(-2.0, 2.0, 8)  # fixed data, one value per column


def pack(comfyui, name):
    comfyui.load_pack()
    root = comfyui.node_class("W2SDKSampler").__module__.rsplit(".", 2)[0]  # <pack>.nodes.sampler_nodes
    return importlib.import_module(f"{root}.{name}")


def every_model_sampling():
    """(name, model_sampling) for every ModelType this ComfyUI has, built as its models build them."""
    import comfy.model_base

    return [(t.name, comfy.model_base.model_sampling(None, t)) for t in comfy.model_base.ModelType]


def test_renoise_is_the_forward_noising_of_every_model_type(comfyui):
    """Re-noising x_next (the model's own noise_scaling at sigma_next) up to sigma has the statistics of
    noise_scaling at sigma, per value of x0; on the schedule's first two steps (sigma 1 for flow models)."""
    import comfy.model_sampling
    import comfy.samplers

    guider, core = pack(comfyui, "nodes.guider"), pack(comfyui, "w2sd_core")
    g = torch.Generator().manual_seed(0)
    checked = []
    for name, ms in every_model_sampling():
        if name == "IMG_TO_IMG_FLOW":  # its latent carries no noise: refused, see below
            continue
        sigmas = comfy.samplers.calculate_sigmas(ms, "simple", 4)
        noising = guider.model_noising(ms)
        for sigma, sigma_next in ((sigmas[0], sigmas[1]), (sigmas[1], sigmas[2])):
            eps = [torch.randn(DRAWS, 8, generator=g) for _ in range(3)]
            x_next = ms.noise_scaling(sigma_next, eps[0], X0)
            x = core.renoise(x_next, sigma, sigma_next, eps[1], noising)
            forward = ms.noise_scaling(sigma, eps[2], X0)
            b = forward.std().item()
            assert torch.allclose(x.mean(0), forward.mean(0), atol=6 * b / DRAWS**0.5), (name, float(sigma))
            assert torch.allclose(x.std(0), forward.std(0), rtol=0.02), (name, float(sigma))
            # The variance-exploding formula, the only one before, is still bit for bit what all but flow get.
            ve = core.renoise(x_next, sigma, sigma_next, eps[1])
            if isinstance(ms, comfy.model_sampling.CONST):
                assert not torch.allclose(ve.mean(0), forward.mean(0), atol=0.1), name
            else:
                assert torch.equal(x, ve), name
        checked.append(name)
    assert {"EPS", "V_PREDICTION", "EDM", "FLOW", "FLUX", "FLOW_COSMOS"} <= set(checked)


def test_flow_noise_scale_is_read_from_the_model(comfyui):
    """A flow model_sampling with a noise_scale (0.29's ModelNoiseScale sets one): re-noised to its level."""
    import comfy.model_base
    import comfy.samplers

    guider, core = pack(comfyui, "nodes.guider"), pack(comfyui, "w2sd_core")
    ms = comfy.model_base.model_sampling(None, comfy.model_base.ModelType.FLOW)
    ms.noise_scale = 0.5
    sigma, sigma_next = torch.tensor(0.8), torch.tensor(0.5)
    noise = ms.noise_scaling(sigma, torch.ones(()), torch.zeros(()))
    assert guider.model_noising(ms).noise(sigma) == noise  # 0.4 where the core honours noise_scale, else 0.8
    g = torch.Generator().manual_seed(1)
    x_next = ms.noise_scaling(sigma_next, torch.randn(DRAWS, 8, generator=g), X0)
    x = core.renoise(x_next, sigma, sigma_next, torch.randn(DRAWS, 8, generator=g), guider.model_noising(ms))
    assert torch.allclose(x.std(0), torch.full((8,), noise.item()), rtol=0.02)
    assert torch.allclose(x.mean(0), 0.2 * X0, atol=0.02)


def test_a_model_whose_latent_carries_no_noise_is_refused(comfyui):
    import comfy.model_sampling

    guider = pack(comfyui, "nodes.guider")
    flow_ms = dict(every_model_sampling())["FLOW"]
    guider.check_resampling_fits(flow_ms, torch.tensor([1.0, 0.5, 0.0]))
    img_to_img_flow = getattr(comfy.model_sampling, "IMG_TO_IMG_FLOW", None)
    if img_to_img_flow is None:
        pytest.skip("this ComfyUI has no IMG_TO_IMG_FLOW")
    ms = type("ModelSampling", (comfy.model_sampling.ModelSamplingDiscreteFlow, img_to_img_flow), {})(None)
    with pytest.raises(ValueError, match="samples with IMG_TO_IMG_FLOW, whose noise_scaling"):
        guider.check_resampling_fits(ms, torch.tensor([1.0, 0.5, 0.0]))


# --- through the W2SD KSampler ---------------------------------------------------------------------

CLEAN = 2.0  # every side's denoised latent: with an exact denoiser the noise statistics are known


@pytest.fixture(scope="module")
def run(comfyui):
    comfyui.load_pack()
    loaded = {}

    def run(checkpoint, model_sampling_node=None, mode="Re-Sampling (vanilla)"):
        if checkpoint not in loaded:
            loaded[checkpoint] = comfyui.execute("CheckpointLoaderSimple", ckpt_name=checkpoint)
        return sample_with_a_known_denoiser(comfyui, loaded[checkpoint], model_sampling_node, mode)

    return run


def sample_with_a_known_denoiser(comfyui, checkpoint, model_sampling_node, mode):
    """Runs the W2SD KSampler with every evaluation's denoised latent replaced by CLEAN; returns the
    (sigma, latent) of each main-model evaluation (each follows a re-noising but the last)."""
    model, clip = checkpoint[:2]
    if model_sampling_node is not None:
        node, inputs = model_sampling_node
        model = comfyui.execute(node, model=model, **inputs)[0]
    seen = []

    def exact(args):
        role = args["model_options"]["transformer_options"].get("w2sd_role", "main")
        if role == "main":
            seen.append((float(args["sigma"][0]), args["input"].clone()))
        return torch.full_like(args["denoised"], CLEAN)

    model = model.clone()
    model.set_model_sampler_post_cfg_function(exact)
    positive = comfyui.execute("CLIPTextEncode", clip=clip, text="a red fox")[0]
    negative = comfyui.execute("CLIPTextEncode", clip=clip, text="")[0]
    # 2048 values or more; small images: attention over an SD1.5 UNet's tokens is what costs here.
    shape = (1, 16, 32, 32) if model.model.latent_format.latent_channels == 16 else (2, 4, 16, 16)
    latent = {"samples": torch.zeros(shape)}
    pair = comfyui.execute("W2SDCFGGap", strong_cfg=1.0, weak_cfg=0.0, pair=None)[0]  # one pass per call
    comfyui.execute(
        "W2SDKSampler", model=model, seed=1, steps=4, cfg=1.0, sampler_name="euler", scheduler="simple",
        positive=positive, negative=negative, latent_image=latent, denoise=1.0, pair=pair, mode=mode,
        window="steps", start_percent=0.0, end_percent=1.0, reflect_steps=-1, inversion="explicit",
        inversion_iters=0, equal_budget=False,
    )  # fmt: skip
    return seen


def off_signal_level(seen, flow):
    """The main evaluations whose latent is not `a(sigma) CLEAN + sigma eps` (flow: a = 1 - sigma, else 1)."""
    off = []
    for sigma, x in seen[:-1]:  # the last step follows a plain step, not a re-noising
        a = 1 - sigma if flow else 1.0
        n = x.numel()
        if abs(x.mean().item() - a * CLEAN) > 6 * sigma / n**0.5 or abs(x.std().item() / sigma - 1) > 0.05:
            off.append((round(sigma, 3), round(x.mean().item(), 3), round(x.std().item(), 3)))
    return off


VANILLA, ALIGNED = "Re-Sampling (vanilla)", "Re-Sampling (aligned)"


@pytest.mark.parametrize(
    "checkpoint,model_sampling_node,mode",
    [
        (SD15_MINI, None, VANILLA),  # EPS
        (SD15_MINI, None, ALIGNED),
        (SD15_MINI, ("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": False}), VANILLA),
        (SD15_MINI, ("ModelSamplingContinuousEDM", {"sampling": "edm", "sigma_max": 10.0, "sigma_min": 0.01}), VANILLA),
        (SD15_MINI, ("ModelSamplingContinuousEDM", {"sampling": "cosmos_rflow", "sigma_max": 10.0, "sigma_min": 0.01}), VANILLA),
        (SD3_MINI, None, VANILLA),  # CONST; its first step re-noises to sigma 1
        (SD3_MINI, None, ALIGNED),
    ],
    ids=["eps", "eps-aligned", "v_prediction", "edm", "cosmos_rflow", "sd3_flow", "sd3_flow-aligned"],
)  # fmt: skip
def test_the_model_receives_its_own_signal_level_after_a_renoising(
    run, checkpoint, model_sampling_node, mode
):
    seen = run(checkpoint, model_sampling_node, mode)
    assert len(seen) == 4
    assert off_signal_level(seen, flow=checkpoint == SD3_MINI) == []


def test_the_variance_exploding_renoising_feeds_a_flow_model_too_much_signal(comfyui, run, monkeypatch):
    """What both modes did before: on SD3 the latents after a re-noising kept the previous level's signal."""
    guider, core = pack(comfyui, "nodes.guider"), pack(comfyui, "w2sd_core")
    monkeypatch.setattr(guider, "model_noising", lambda ms: core.VARIANCE_EXPLODING)
    monkeypatch.setattr(guider, "check_resampling_fits", lambda ms, sigmas: None)
    seen = run(SD3_MINI)
    off = off_signal_level(seen, flow=True)
    assert len(off) == 3 and all(mean > (1 - sigma) * CLEAN for sigma, mean, _ in off), off
