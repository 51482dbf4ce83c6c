"""The learned digit models (tools/learned_models.py) through the stock loaders and nodes, in-process.

Checkpoints load with CheckpointLoaderSimple as SD3 (flow) and SD1.5 (EPS), VAEDecode(VAEEncode(digit
image)) gives the digit back (measured max error 1e-5; tolerance 1e-3 of the [0, 1] pixel range), the VAE
file loads with VAELoader, and each family's LoRA (Kohya `lora_unet_*` keys) patches every one of its
modules through the stock LoraLoader and the pack's W2SDLoraSplit. The EPS models sample the prompted
digit through benchmarks/learned.py's `--family eps` path (EmptyLatentImage, euler with the normal schedule).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import judges  # noqa: E402
import learned_models as lm  # noqa: E402
from comfy_server import REPO_ROOT  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
ROUND_TRIP_TOL = 1e-3


@pytest.fixture(scope="module")
def learned(comfyui):
    return lm.install_learned_models(comfyui.base_dir, comfyui.comfyui)


@pytest.fixture(scope="module")
def digits():
    return judges.load_digits().test_x[:16]


@pytest.mark.parametrize("name", [lm.DIGITS_STRONG, lm.DIGITS_WEAK])
def test_checkpoint_loads_as_sd3_flow(comfyui, learned, name):
    import comfy.model_base

    model, clip, vae = comfyui.execute("CheckpointLoaderSimple", ckpt_name=name)
    assert isinstance(model.model, comfy.model_base.SD3)
    assert model.model.model_type == comfy.model_base.ModelType.FLOW
    assert clip is not None and vae.latent_channels == 16


@pytest.mark.parametrize("name", [lm.EPS_STRONG, lm.EPS_WEAK, lm.EPS_DISTILLED_STRONG, lm.EPS_DISTILLED_WEAK])
def test_eps_checkpoint_loads_as_sd15_eps(comfyui, learned, name):
    import comfy.model_base

    model, clip, vae = comfyui.execute("CheckpointLoaderSimple", ckpt_name=name)
    assert type(model.model.model_config).__name__ == "SD15"
    assert model.model.model_type == comfy.model_base.ModelType.EPS
    assert model.model.diffusion_model.model_channels == 320
    assert clip is not None and vae.latent_channels == 4


@pytest.mark.parametrize("name", [lm.DIGITS_STRONG, lm.EPS_STRONG])
def test_vae_round_trip_is_exact_on_digits(comfyui, learned, digits, name):
    image = torch.from_numpy(judges.digit_to_image(digits))
    _, _, checkpoint_vae = comfyui.execute("CheckpointLoaderSimple", ckpt_name=name)
    vaes = [checkpoint_vae]
    if name == lm.DIGITS_STRONG:
        vaes.append(comfyui.execute("VAELoader", vae_name=lm.DIGITS_VAE)[0])
    for vae in vaes:
        (latent,) = comfyui.execute("VAEEncode", pixels=image, vae=vae)
        assert latent["samples"].shape == (16, vae.latent_channels, 8, 8)
        assert torch.allclose(
            lm.latent_to_digit(latent["samples"]), torch.from_numpy(digits), atol=ROUND_TRIP_TOL
        )
        (decoded,) = comfyui.execute("VAEDecode", samples=latent, vae=vae)
        assert decoded.shape == (16, 64, 64, 3)
        error = abs(judges.image_to_digit(decoded) - digits).max()
        assert error < ROUND_TRIP_TOL, f"VAE round trip max error {error}"


@pytest.mark.parametrize("name", [lm.DIGITS_STRONG, lm.EPS_STRONG])
def test_latent_is_unit_scale_in_model_space(comfyui, learned, name):
    """The digit channel reaches the model roughly standardised (the scale it was trained at)."""
    model, _, vae = comfyui.execute("CheckpointLoaderSimple", ckpt_name=name)
    # 300 of the training digits: the statistics are the data's, at a fifth of the full set's encode time.
    image = torch.from_numpy(judges.digit_to_image(judges.load_digits().train_x[:300]))
    (latent,) = comfyui.execute("VAEEncode", pixels=image, vae=vae)
    z = model.model.latent_format.process_in(latent["samples"])
    assert abs(float(z[:, 0].mean())) < 0.1 and 0.8 < float(z[:, 0].std()) < 1.1
    assert float(z[:, 1:].abs().max()) < 1e-4


LORA_PREFIX = {"flow": "lora_unet_joint_blocks_", "eps": "lora_unet_"}


@pytest.mark.parametrize("family", list(LORA_PREFIX))
def test_lora_loads_every_module(comfyui, learned, family):
    import comfy.utils

    files = lm.FAMILIES[family]
    lora_sd = comfy.utils.load_torch_file(str(learned[files["lora"]]))
    modules = sorted(k[: -len(".alpha")] for k in lora_sd if k.endswith(".alpha"))
    assert modules and all(m.startswith(LORA_PREFIX[family]) for m in modules)
    model, clip, _ = comfyui.execute("CheckpointLoaderSimple", ckpt_name=files["weak"])
    patched, _ = comfyui.execute(
        "LoraLoader", model=model, clip=clip, lora_name=files["lora"], strength_model=1.0, strength_clip=0.0
    )
    assert len(patched.patches) == len(modules)


@pytest.mark.parametrize("family", list(LORA_PREFIX))
def test_lora_split_matches_every_module(comfyui, learned, source_module, family):
    import comfy.utils

    files = lm.FAMILIES[family]
    ls = source_module(
        "w2sd_test_learned_lora_scales", Path(__file__).resolve().parents[2] / "nodes" / "lora_scales.py"
    )
    lora_sd = comfy.utils.load_torch_file(str(learned[files["lora"]]))
    model, _, _ = comfyui.execute("CheckpointLoaderSimple", ckpt_name=files["weak"])
    _, report = ls.make_lora_scale_model(
        model, lora_sd, {"main": 0.8, "strong": 1.5, "weak": -1.5}, name="digits"
    )
    assert len(report.modules) == len([k for k in lora_sd if k.endswith(".alpha")])
    assert report.keys_not_matched == ()

    comfyui.load_pack()
    split_model, pair, _ = comfyui.execute(
        "W2SDLoraSplit", model=model, clip=None, lora_name=files["lora"], main_scale=0.8, strong_scale=1.5,
        weak_scale=-1.5,
    )  # fmt: skip
    assert split_model is not model and pair is not None


EPS_SAMPLES = 10
EPS_STEPS = 6
ACCURACY_CFG3 = 0.6
"""Prompt accuracy at cfg 3 (the manifests' accuracy_cfg3, 20 steps and 200 samples: EPS 0.88, v 1.0)."""
OUT_OF_RANGE = 0.05
"""Share of decoded pixels outside [0, 1] at cfg 1 on both sides (with cfg 3 in the step or the reflection,
8-10% at these 6 steps)."""


@pytest.mark.parametrize("family", ["eps", "v"])
def test_sd15_models_sample_the_prompted_digit(comfyui, learned, source_module, family):
    """benchmarks/learned.py's --family eps / v path (EmptyLatentImage, euler with the normal schedule; v
    through ModelSamplingDiscrete), stock KSampler and the W2SD KSampler: the class prompts (one sample per
    digit) give the prompted digit at cfg 3; the W2SD rows of the CFG-gap and two-checkpoint pairs sample
    digits in range. Measured 5-6 s each (ComfyUI 0.3.75, 1 thread, busy 2-core machine), accuracy 1.0."""
    import learned_models

    bench = source_module("learned_benchmark_sd15", REPO_ROOT / "benchmarks" / "learned.py")
    comfyui.load_pack()
    session = bench.Session(comfyui, learned_models, family)
    judge = bench.Judge(False, learned_models.MINORITY)
    pairs = {p.key: p for p in bench.learned_pairs(family=family)}
    cfg3 = bench.Row("cfg_3", "stock cfg 3", cfg=3.0)
    for key, row in (("cfg", cfg3), ("cfg", bench.ROWS["w2sd"]), ("checkpoints", bench.ROWS["w2sd"])):
        with torch.inference_mode():
            setup = pairs[key].build(session)
        run = bench.sample_row(session, setup, row, EPS_SAMPLES, "euler", EPS_STEPS, EPS_SAMPLES, bench.SEED)
        assert run.latents.shape == (EPS_SAMPLES, 4, 8, 8)
        figures, _ = judge.figures(["prompt_accuracy", "out_of_range"], run, rounds=1)
        print(family, key, row.name, {m: f.value for m, f in figures.items()})
        assert np.isfinite(run.latents).all()
        if row is cfg3:
            assert figures["prompt_accuracy"].value >= ACCURACY_CFG3, (family, figures)
        if key == "checkpoints":
            assert figures["out_of_range"].value < OUT_OF_RANGE, (family, key, row.name, figures)
