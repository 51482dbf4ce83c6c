"""Every tiny checkpoint loads through ComfyUI's stock loaders in-process and is what it claims to be."""

from __future__ import annotations

import logging

import pytest
import torch
from fixtures.checkpoints import SD3_MINI, SD15_MINI, SD15_MINI_CONTROLNET, SD15_MINI_FINETUNE, SD15_MINI_LORA


@pytest.fixture(scope="module")
def sd15(comfyui):
    return comfyui.execute("CheckpointLoaderSimple", ckpt_name=SD15_MINI)


def encode(comfyui, clip, text="a red fox in the snow"):
    return comfyui.execute("CLIPTextEncode", clip=clip, text=text)[0]


def sample(comfyui, model, clip, seed=1, positive=None, latent_channels=4):
    positive = positive if positive is not None else encode(comfyui, clip)
    latent = {"samples": torch.zeros(1, latent_channels, 8, 8)}
    return comfyui.execute(
        "KSampler", model=model, seed=seed, steps=2, cfg=3.0, sampler_name="euler", scheduler="normal",
        positive=positive, negative=encode(comfyui, clip, ""), latent_image=latent, denoise=1.0,
    )[0]["samples"]  # fmt: skip


def test_all_fixtures_are_installed(comfyui):
    for name in (SD15_MINI, SD15_MINI_FINETUNE, SD15_MINI_LORA, SD15_MINI_CONTROLNET, SD3_MINI):
        assert comfyui.models[name].is_file()
    import folder_paths

    assert SD15_MINI in folder_paths.get_filename_list("checkpoints")
    assert SD15_MINI_LORA in folder_paths.get_filename_list("loras")
    assert SD15_MINI_CONTROLNET in folder_paths.get_filename_list("controlnet")


def test_sd15_mini_is_an_eps_sd15_that_samples_and_decodes(comfyui, sd15):
    import comfy.model_base
    import comfy.supported_models

    model, clip, vae = sd15
    assert isinstance(model.model.model_config, comfy.supported_models.SD15)
    assert model.model.model_type == comfy.model_base.ModelType.EPS
    latent = sample(comfyui, model, clip)
    assert latent.shape == (1, 4, 8, 8) and torch.isfinite(latent).all()
    torch.testing.assert_close(sample(comfyui, model, clip), latent, rtol=0, atol=0)
    image = comfyui.execute("VAEDecode", samples={"samples": latent}, vae=vae)[0]
    assert image.shape == (1, 64, 64, 3)


def test_fine_tune_has_the_same_shape_and_other_weights(comfyui, sd15):
    tuned, _, _ = comfyui.execute("CheckpointLoaderSimple", ckpt_name=SD15_MINI_FINETUNE)
    base_sd, tuned_sd = sd15[0].model.state_dict(), tuned.model.state_dict()
    assert base_sd.keys() == tuned_sd.keys()
    key = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    assert not torch.equal(base_sd[key], tuned_sd[key])


def test_lora_loads_every_module(comfyui, sd15, caplog):
    import comfy.utils

    model, clip, _ = sd15
    modules = [
        k for k in comfy.utils.load_torch_file(str(comfyui.models[SD15_MINI_LORA])) if k.endswith(".alpha")
    ]
    with caplog.at_level(logging.WARNING):
        lora_model, lora_clip = comfyui.execute(
            "LoraLoader",
            model=model,
            clip=clip,
            lora_name=SD15_MINI_LORA,
            strength_model=1.0,
            strength_clip=1.0,
        )
    assert "lora key not loaded" not in caplog.text
    assert len(lora_model.patches) + len(lora_clip.patcher.patches) == len(modules)
    assert not torch.equal(sample(comfyui, lora_model, lora_clip), sample(comfyui, model, clip))


def test_controlnet_loads_and_changes_the_result(comfyui, sd15):
    model, clip, vae = sd15
    control = comfyui.execute("ControlNetLoader", control_net_name=SD15_MINI_CONTROLNET)[0]
    hint = torch.full((1, 64, 64, 3), 0.5)
    positive, negative = comfyui.execute(
        "ControlNetApplyAdvanced", positive=encode(comfyui, clip), negative=encode(comfyui, clip, ""),
        control_net=control, image=hint, strength=1.0, start_percent=0.0, end_percent=1.0, vae=vae,
    )  # fmt: skip
    assert positive[0][1]["control"] is not None
    assert not torch.equal(sample(comfyui, model, clip, positive=positive), sample(comfyui, model, clip))


def test_sd3_mini_is_a_flow_model_that_samples(comfyui):
    import comfy.model_base
    import comfy.model_sampling

    model, clip, vae = comfyui.execute("CheckpointLoaderSimple", ckpt_name=SD3_MINI)
    assert model.model.model_type == comfy.model_base.ModelType.FLOW
    assert isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST)
    latent = sample(comfyui, model, clip, latent_channels=16)
    assert latent.shape == (1, 16, 8, 8) and torch.isfinite(latent).all()
    assert comfyui.execute("VAEDecode", samples={"samples": latent}, vae=vae)[0].shape == (1, 64, 64, 3)


def test_pack_loads_through_comfyuis_custom_node_loader(comfyui):
    new_ids = comfyui.load_pack()
    assert new_ids and all(node_id.startswith("W2SD") for node_id in new_ids)
    assert "W2SDKSampler" in comfyui.nodes.NODE_CLASS_MAPPINGS
