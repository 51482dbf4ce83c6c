"""The learned digit models (tools/learned_models.py) through the stock loaders and nodes, in-process.

Checkpoints load with CheckpointLoaderSimple as SD3 (flow), VAEDecode(VAEEncode(digit image)) gives the
digit back (measured max error 1e-5; tolerance 1e-3 of the [0, 1] pixel range), the VAE file loads with
VAELoader, and the LoRA (Kohya `lora_unet_joint_blocks_*` keys) patches every one of its modules through
the stock LoraLoader and the pack's W2SDLoraSplit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import judges  # noqa: E402
import learned_models as lm  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
ROUND_TRIP_TOL = 1e-3


@pytest.fixture(scope="module")
def learned(comfyui):
    return lm.install_learned_models(comfyui.base_dir, comfyui.comfyui)


@pytest.fixture(scope="module")
def checkpoint(comfyui, learned):
    return comfyui.execute("CheckpointLoaderSimple", ckpt_name=lm.DIGITS_STRONG)


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


def test_vae_round_trip_is_exact_on_digits(comfyui, checkpoint, learned, digits):
    image = torch.from_numpy(judges.digit_to_image(digits))
    for vae in (checkpoint[2], comfyui.execute("VAELoader", vae_name=lm.DIGITS_VAE)[0]):
        (latent,) = comfyui.execute("VAEEncode", pixels=image, vae=vae)
        assert latent["samples"].shape == (16, 16, 8, 8)
        assert torch.allclose(
            lm.latent_to_digit(latent["samples"]), torch.from_numpy(digits), atol=ROUND_TRIP_TOL
        )
        (decoded,) = comfyui.execute("VAEDecode", samples=latent, vae=vae)
        assert decoded.shape == (16, 64, 64, 3)
        error = abs(judges.image_to_digit(decoded) - digits).max()
        assert error < ROUND_TRIP_TOL, f"VAE round trip max error {error}"


def test_latent_is_unit_scale_in_model_space(comfyui, checkpoint, learned):
    """The digit channel reaches the MMDiT roughly standardised (the scale the flow was trained at)."""
    # 300 of the training digits: the statistics are the data's, at a fifth of the full set's encode time.
    image = torch.from_numpy(judges.digit_to_image(judges.load_digits().train_x[:300]))
    (latent,) = comfyui.execute("VAEEncode", pixels=image, vae=checkpoint[2])
    z = checkpoint[0].model.latent_format.process_in(latent["samples"])
    assert abs(float(z[:, 0].mean())) < 0.1 and 0.8 < float(z[:, 0].std()) < 1.1
    assert float(z[:, 1:].abs().max()) < 1e-4


def test_lora_loads_every_module(comfyui, learned):
    import comfy.utils

    lora_sd = comfy.utils.load_torch_file(str(learned[lm.DIGITS_LORA]))
    modules = sorted(k[: -len(".alpha")] for k in lora_sd if k.endswith(".alpha"))
    assert modules and all(m.startswith("lora_unet_joint_blocks_") for m in modules)
    model, clip, _ = comfyui.execute("CheckpointLoaderSimple", ckpt_name=lm.DIGITS_WEAK)
    patched, _ = comfyui.execute(
        "LoraLoader", model=model, clip=clip, lora_name=lm.DIGITS_LORA, strength_model=1.0, strength_clip=0.0
    )
    assert len(patched.patches) == len(modules)


def test_lora_split_matches_every_module(comfyui, learned, source_module):
    import comfy.utils

    ls = source_module(
        "w2sd_test_learned_lora_scales", Path(__file__).resolve().parents[2] / "nodes" / "lora_scales.py"
    )
    lora_sd = comfy.utils.load_torch_file(str(learned[lm.DIGITS_LORA]))
    model, _, _ = comfyui.execute("CheckpointLoaderSimple", ckpt_name=lm.DIGITS_WEAK)
    _, report = ls.make_lora_scale_model(
        model, lora_sd, {"main": 0.8, "strong": 1.5, "weak": -1.5}, name="digits"
    )
    assert len(report.modules) == len([k for k in lora_sd if k.endswith(".alpha")])
    assert report.keys_not_matched == ()

    comfyui.load_pack()
    split_model, pair, _ = comfyui.execute(
        "W2SDLoraSplit", model=model, clip=None, lora_name=lm.DIGITS_LORA, main_scale=0.8, strong_scale=1.5,
        weak_scale=-1.5,
    )  # fmt: skip
    assert split_model is not model and pair is not None
