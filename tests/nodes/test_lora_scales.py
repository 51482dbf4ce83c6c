"""W2SD LoRA-scale splitter (nodes/lora_scales.py) against ComfyUI's stock LoRA path, in-process.

The splitter applies the LoRA at forward time; the stock path (`load_lora_for_models`) patches the
weights. Both must give the same result at the same strength up to float rounding: the patched weight
`W + s a/r U D` is one fp32 sum, the splitter computes `W x + s a/r U (D x)`, a re-association.
Measured on the SD1.5 mini checkpoint (fp32 on CPU, 8x8 latent), max |diff| / max |stock|:
one model output 1.8e-6 to 1.6e-5; final latent after 3 Euler steps at cfg 3: 2.5e-6 to 3.2e-5
(the largest at strength +1.5). REL_TOL is 2e-4; the LoRA itself changes outputs by ~1 relative.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from fixtures.checkpoints import SD3_MINI, SD15_MINI, SD15_MINI_LORA

pytestmark = pytest.mark.usefixtures("one_thread")
REL_TOL = 2e-4
PAPER = {"main": 0.8, "strong": 1.5, "weak": -1.5}
STEPS, CFG, LATENT = 3, 3.0, (1, 4, 8, 8)

MODULE = Path(__file__).resolve().parents[2] / "nodes" / "lora_scales.py"


@pytest.fixture(scope="module")
def ls(comfyui, source_module):
    """nodes/lora_scales.py on its own: it imports only comfy and torch, so no other pack module is needed."""
    return source_module("w2sd_test_lora_scales", MODULE)


@pytest.fixture(scope="module")
def checkpoint(comfyui):
    import comfy.sd

    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(
        str(comfyui.models[SD15_MINI]), output_vae=False
    )
    return model, clip


@pytest.fixture(scope="module")
def base(checkpoint):
    return checkpoint[0]


@pytest.fixture(scope="module")
def lora_sd(comfyui):
    import comfy.utils

    return comfy.utils.load_torch_file(str(comfyui.models[SD15_MINI_LORA]))


@pytest.fixture(scope="module")
def split(ls, base, lora_sd):
    return ls.make_lora_scale_model(base, lora_sd, PAPER, name="mini")


@pytest.fixture(scope="module")
def cond():
    g = torch.Generator().manual_seed(0)
    return [[torch.randn(1, 77, 768, generator=g), {}]], [[torch.randn(1, 77, 768, generator=g), {}]]


# --- helpers ------------------------------------------------------------------------------------------


def stock(base, lora_sd, strength):
    import comfy.sd

    return comfy.sd.load_lora_for_models(base, None, lora_sd, strength, 0)[0]


def with_role(model, role):
    m = model.clone()
    m.model_options.setdefault("transformer_options", {})["w2sd_role"] = role
    return m


def sample(model, cond, seed=1, **kw):
    import comfy.sample

    latent = torch.zeros(LATENT)
    noise = comfy.sample.prepare_noise(latent, seed)
    pos, neg = cond
    return comfy.sample.sample(
        model, noise, STEPS, CFG, "euler", "normal", pos, neg, latent, disable_pbar=True, **kw
    )


def denoise(model, cond, role=None, latent=LATENT, sigma=3.0, **extra):
    """One model call through apply_model with the patcher's wrappers, as the samplers make it."""
    import comfy.model_management
    import comfy.patcher_extension

    comfy.model_management.load_models_gpu([model])
    x = torch.randn(latent, generator=torch.Generator().manual_seed(2))
    options = {"wrappers": comfy.patcher_extension.copy_nested_dicts(model.wrappers)}
    if role is not None:
        options["w2sd_role"] = role
    with torch.inference_mode():
        return model.model.apply_model(
            x, torch.tensor([sigma]), c_crossattn=cond[0][0][0], transformer_options=options, **extra
        )


def rel_diff(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def weights_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def injected_forwards(model):
    return [m for m in model.model.modules() if "forward" in m.__dict__]


# --- 1, 2: same results as the stock LoRA path ---------------------------------------------------------


@pytest.mark.parametrize("strength", [0.8, 1.0])
def test_main_scale_matches_stock(ls, base, lora_sd, cond, strength):
    model, _ = ls.make_lora_scale_model(base, lora_sd, {"main": strength, "strong": 1.5, "weak": -1.5})
    ref_model = stock(base, lora_sd, strength)
    plain = denoise(base, cond)
    ref, got = denoise(ref_model, cond), denoise(model, cond)
    assert rel_diff(got, ref) < REL_TOL
    assert rel_diff(plain, ref) > 100 * REL_TOL  # the LoRA does change the output
    # A stock KSampler given the MODEL (no role anywhere) samples at the main strength.
    assert rel_diff(sample(model, cond), sample(ref_model, cond)) < REL_TOL


@pytest.mark.parametrize("role", ["strong", "weak"])
def test_role_selects_scale(split, base, lora_sd, cond, role):
    model, _ = split
    ref_model = stock(base, lora_sd, PAPER[role])
    assert rel_diff(denoise(model, cond, role), denoise(ref_model, cond)) < REL_TOL
    assert rel_diff(sample(with_role(model, role), cond), sample(ref_model, cond)) < REL_TOL
    # An unknown role falls back to the main strength.
    assert rel_diff(denoise(model, cond, "other"), denoise(stock(base, lora_sd, 0.8), cond)) < REL_TOL


def test_sliced_targets_on_a_flow_model(ls, comfyui):
    """Diffusers LoRA on SD3's fused qkv: each of to_q/to_k/to_v adds to its slice of the output."""
    import comfy.sd

    sd3, *_ = comfy.sd.load_checkpoint_guess_config(
        str(comfyui.models[SD3_MINI]), output_vae=False, output_clip=False
    )
    g = torch.Generator().manual_seed(3)
    lora, rank = {}, 4
    for block in range(2):
        for name, size in (("to_q", 128), ("to_k", 128), ("to_v", 128), ("to_out.0", 128)):
            prefix = f"transformer.transformer_blocks.{block}.attn.{name}"
            lora[f"{prefix}.lora_A.weight"] = torch.randn(rank, 128, generator=g) / 128**0.5
            lora[f"{prefix}.lora_B.weight"] = torch.randn(size, rank, generator=g) / rank**0.5
    model, report = ls.make_lora_scale_model(sd3, lora, {"main": 1.0, "weak": -1.5}, name="sd3")
    assert len(report.modules) == 4 and report.keys_not_matched == ()  # two fused qkv + two out projections
    context = torch.randn(1, 16, 4096, generator=g)
    extra = {"latent": (1, 16, 8, 8), "sigma": 0.7, "y": torch.randn(1, 2048, generator=g)}
    cond = ([[context, {}]], None)
    for role, strength in (("main", 1.0), ("weak", -1.5)):
        ref = denoise(stock(sd3, lora, strength), cond, **extra)
        assert rel_diff(denoise(model, cond, role, **extra), ref) < REL_TOL
        assert rel_diff(denoise(sd3, cond, **extra), ref) > 100 * REL_TOL


# --- 3: no weight patching, nothing left behind --------------------------------------------------------


def test_no_weight_patching_and_clean_eject(split, base, cond, monkeypatch):
    import comfy.lora
    import comfy.model_patcher

    model, report = split
    plain = sample(base, cond)  # loads the base as it is (an earlier stock LoRA clone may have patched it)
    before = weights_hash(base)
    calls, patched, in_model_calls = [], [], []
    original = comfy.model_patcher.ModelPatcher.patch_weight_to_device
    calculate = comfy.lora.calculate_weight

    def counting(self, key, *args, **kwargs):
        calls.append(key)
        if key in self.patches:
            patched.append(key)
        return original(self, key, *args, **kwargs)

    def counting_calculate(*args, **kwargs):
        patched.append(args[2] if len(args) > 2 else kwargs.get("key"))
        return calculate(*args, **kwargs)

    roles = iter(["strong", "weak"] * STEPS * 2)
    seen = []

    def alternate(apply_model, args):
        # Every model call gets the next role, as a W2SD reflection alternates strong and weak.
        in_model_calls.append(len(calls))
        role = next(roles)
        seen.append(role)
        c = dict(args["c"])
        c["transformer_options"] = {**c.get("transformer_options", {}), "w2sd_role": role}
        return apply_model(args["input"], args["timestep"], **c)

    monkeypatch.setattr(comfy.model_patcher.ModelPatcher, "patch_weight_to_device", counting)
    monkeypatch.setattr(comfy.lora, "calculate_weight", counting_calculate)
    alternating = model.clone()
    alternating.set_model_unet_function_wrapper(alternate)
    out = sample(alternating, cond)
    monkeypatch.undo()

    assert seen == ["strong", "weak"] * (STEPS // 2) + ["strong"] * (STEPS % 2)
    assert patched == []  # no weight was patched at any point
    assert len(calls) == in_model_calls[0]  # no patch call at all once the first model call started
    assert rel_diff(out, sample(model, cond)) > 100 * REL_TOL  # the roles did act
    assert weights_hash(base) == before
    # The original patcher samples exactly as before: the injection was ejected when it loaded.
    assert sample(base, cond).equal(plain)
    assert injected_forwards(base) == []
    assert len(report.modules) == 48


# --- 4: memory -------------------------------------------------------------------------------------------


def test_memory_is_the_lora_only(ls, split, base, lora_sd, cond):
    model, report = split
    param_ptrs = {k: v.data_ptr() for k, v in base.model.state_dict().items()}
    denoise(model, cond)  # loaded and injected
    forwards = [
        m.forward for m in base.model.modules() if isinstance(m.__dict__.get("forward"), ls._LoraForward)
    ]
    assert len(forwards) == len(report.modules)
    held = [t for f in forwards for layer in f.layers for t in layer._cast]
    dtype = base.model.get_dtype()
    unet_lora = [v for k, v in lora_sd.items() if k.startswith("lora_unet_") and not k.endswith(".alpha")]
    expected = sum(t.numel() for t in unet_lora) * torch.empty((), dtype=dtype).element_size()
    assert sum(t.numel() * t.element_size() for t in held) == expected
    assert report.lora_bytes == sum(t.numel() * t.element_size() for t in unet_lora)
    # Base weights are the same tensors (no copy made, none replaced).
    assert {k: v.data_ptr() for k, v in base.model.state_dict().items()} == param_ptrs
    largest_lora = max(t.numel() for t in held)
    assert largest_lora < min(
        m.weight.numel()
        for m in base.model.modules()
        if isinstance(m.__dict__.get("forward"), ls._LoraForward)
    )


def test_input_model_untouched_and_report(ls, base, lora_sd):
    wrappers, injections = dict(base.wrappers), dict(base.injections)
    options = repr(base.model_options)
    model, report = ls.make_lora_scale_model(base, lora_sd, {"main": 0.8}, name="mini")
    assert model is not base and model.model is base.model
    assert base.wrappers == wrappers and base.injections == injections and repr(base.model_options) == options
    assert report.scales == {"main": 0.8, "strong": 0.8, "weak": 0.8}
    assert report.keys_total == len(lora_sd)
    # The CLIP keys are what is left: 72 text-encoder modules x (up, down, alpha).
    assert (
        report.text_encoder_keys
        == len(report.keys_not_matched)
        == len([k for k in lora_sd if k.startswith("lora_te_")])
    )
    assert all(m.startswith("diffusion_model.") for m in report.modules)


def test_two_splits_stack_and_eject(ls, base, lora_sd, cond):
    half, _ = ls.make_lora_scale_model(base, lora_sd, {"main": 0.4})
    both, _ = ls.make_lora_scale_model(half, lora_sd, {"main": 0.4})
    assert set(both.injections) == {"w2sd_lora_scales", "w2sd_lora_scales.2"}
    assert rel_diff(denoise(both, cond), denoise(stock(base, lora_sd, 0.8), cond)) < REL_TOL
    denoise(base, cond)
    assert injected_forwards(base) == []


# --- 5: errors -------------------------------------------------------------------------------------------


def test_lora_for_another_model(ls, base, lora_sd):
    flux_like = {
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(4, 64),
        "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.zeros(192, 4),
        "lora_unet_double_blocks_0_img_attn_qkv.alpha": torch.tensor(4.0),
    }
    with pytest.raises(
        ValueError, match=r"LoRA 'flux' matches no layer of this model \(0 of 3 keys\); is it for another"
    ):
        ls.make_lora_scale_model(base, flux_like, PAPER, name="flux")
    clip_only = {k: v for k, v in lora_sd.items() if k.startswith("lora_te_")}
    with pytest.raises(ValueError, match="matches no layer.*text-encoder keys: apply it to the CLIP"):
        ls.make_lora_scale_model(base, clip_only, PAPER, name="te")


def test_not_a_lora(ls, base):
    sd = {k: v for k, v in list(base.model.state_dict().items())[:5]}
    with pytest.raises(ValueError, match=r"'ckpt' is not a LoRA: none of its 5 keys is a LoRA weight"):
        ls.make_lora_scale_model(base, sd, PAPER, name="ckpt")


def _one_module(lora_sd, suffix="attn1_to_q"):
    prefix = next(k.split(".")[0] for k in lora_sd if k.startswith("lora_unet_") and suffix in k)
    return prefix, {k: v for k, v in lora_sd.items() if k.startswith(prefix + ".")}


@pytest.mark.parametrize(
    "kind, match",
    [
        ("loha", "LoHa"),
        ("lokr", "LoKr"),
        ("dora", r"DoRA \(dora_scale\)"),
        ("mid", r"tucker LoCon \(lora_mid\)"),
        ("diff", "full weight difference"),
    ],
)
def test_unsupported_kinds(ls, base, lora_sd, kind, match):
    prefix, sd = _one_module(lora_sd, "proj_in" if kind == "mid" else "attn1_to_q")
    down, up = sd[f"{prefix}.lora_down.weight"], sd[f"{prefix}.lora_up.weight"]
    if kind == "loha":
        sd = {
            f"{prefix}.hada_w1_a": up,
            f"{prefix}.hada_w1_b": down,
            f"{prefix}.hada_w2_a": up,
            f"{prefix}.hada_w2_b": down,
        }
    elif kind == "lokr":
        sd = {f"{prefix}.lokr_w1": torch.ones(2, 2), f"{prefix}.lokr_w2": torch.ones(160, 160)}
    elif kind == "dora":
        sd[f"{prefix}.dora_scale"] = torch.ones(up.shape[0], 1)
    elif kind == "mid":
        sd[f"{prefix}.lora_mid.weight"] = torch.ones(4, 4, 1, 1)
    elif kind == "diff":
        sd = {f"{prefix}.diff": torch.zeros(320, 320)}
    with pytest.raises(ValueError, match=f"LoRA 'x' holds {match}.*supports plain LoRA / LoCon"):
        ls.make_lora_scale_model(base, sd, PAPER, name="x")


@pytest.mark.parametrize(
    "scales,match",
    [
        ({"strong": 1.5}, "scales"),
        ({"main": 0.8, "middle": 1.0}, "scales"),
        ({"main": float("nan")}, "main_scale=nan is not a finite number"),  # the node's input name
    ],
)
def test_bad_scales(ls, base, lora_sd, scales, match):
    with pytest.raises(ValueError, match=match):
        ls.make_lora_scale_model(base, lora_sd, scales)


def test_missing_injection_api(ls, base, lora_sd, monkeypatch, caplog):
    import comfy.model_patcher

    monkeypatch.delattr(comfy.model_patcher.ModelPatcher, "set_injections")
    monkeypatch.setattr(ls, "_missing_api_logged", False)
    with pytest.raises(RuntimeError, match="needs ComfyUI with ModelPatcher injections.*set_injections"):
        ls.make_lora_scale_model(base, lora_sd, PAPER)
    assert [r.message for r in caplog.records if r.message.startswith("[W2SD]")]


def test_lora_clip_is_the_stock_path(ls, checkpoint, lora_sd):
    import comfy.sd

    clip = checkpoint[1]
    patched = ls.lora_clip(clip, lora_sd, 1.5)
    ref = comfy.sd.load_lora_for_models(None, clip, lora_sd, 0, 1.5)[1]
    assert patched is not clip and patched.patcher.model is clip.patcher.model
    assert clip.patcher.patches == {}
    assert set(patched.patcher.patches) == set(ref.patcher.patches)
    assert len(patched.patcher.patches) == len([k for k in lora_sd if k.startswith("lora_te_")]) // 3
    assert {p[0] for ps in patched.patcher.patches.values() for p in ps} == {1.5}
    assert ls.lora_clip(clip, lora_sd, 0.0) is clip and ls.lora_clip(None, lora_sd, 1.0) is None


def test_a_key_map_function_on_output_rows_applies_to_up(ls):
    """Flux's diffusers `norm_out.linear` maps with swap_scale_shift (the output halves swapped): applied
    to up, the LoRA's product is the swapped one (through the nodes: tests/nodes/test_families.py)."""
    g = torch.Generator().manual_seed(0)
    up, down = torch.randn(8, 4, generator=g), torch.randn(4, 6, generator=g)

    def swap_halves(w):
        a, b = w.chunk(2, dim=0)
        return torch.cat([b, a], dim=0)

    moved = ls._function_on_up("mini", "k.weight", swap_halves, up, down)
    assert torch.allclose(moved @ down, swap_halves(up @ down))
    with pytest.raises(
        ValueError, match=r"its key for k\.weight with a weight function that changes more than"
    ):
        ls._function_on_up("mini", "k.weight", lambda w: w.flip(-1), up, down)
