"""What the W2SD KSampler does beyond its model evaluations, counted (not timed) so a regression fails CI.

benchmarks/perf.py measures time and memory on the same hooks (`instrument`, `Counters` in
benchmarks/common/counters.py, `PeakMemory` in benchmarks/common/memory.py, imported from there so the
benchmarks and this test count the same things). Pinned here:
- cfg 1 / cfg 0 sides: one batch-1 pass each, with the positive (cfg 1) or the negative (cfg 0) conds;
- LoRA pair: no weight patch operation at all, no load or unload inside the loop, the base weights are the
  same tensors, peak memory over stock below the LoRA plus 5% (a second copy of the base breaks it);
- two checkpoints: one load call before the loop, none and no weight (re)load inside it, both models
  loaded during every pass, each side's passes on its own model;
- host reads (`.item()`, `.tolist()`, `.cpu()`, `.numpy()`, `bool/float/int(tensor)`) inside the loop:
  none from the pack's code, and no more in total than the stock KSampler makes with the same sampler.
Already pinned elsewhere and not repeated: NFE = T + 2*lambda and the batch per role of a 5.5/0 CFG gap,
the cfg 1 strong side's batch of 1, one `load_models_gpu` call holding both checkpoints
(test_w2sd_sampler.py); the splitter's own patching and memory at module level (test_lora_scales.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from fixtures.checkpoints import SD15_MINI, SD15_MINI_FINETUNE, SD15_MINI_LORA

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common.counters import Counters, instrument  # noqa: E402
from common.memory import PeakMemory  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 4
CFG = 5.5
REFLECTION = {
    "mode": "W2SD", "window": "steps", "start_percent": 0.0, "end_percent": 1.0, "reflect_steps": -1,
    "inversion": "explicit", "inversion_iters": 0, "equal_budget": False,
}  # fmt: skip
NFE = {"main": STEPS, "strong": STEPS - 1, "weak": STEPS - 1}


class Setup:
    def __init__(self, comfyui):
        self.c = comfyui
        comfyui.load_pack()
        self.model, self.clip, _ = comfyui.execute("CheckpointLoaderSimple", ckpt_name=SD15_MINI)
        self.positive = comfyui.execute("CLIPTextEncode", clip=self.clip, text="a red fox in the snow")[0]
        self.negative = comfyui.execute("CLIPTextEncode", clip=self.clip, text="blurry")[0]
        self.latent = comfyui.execute("EmptyLatentImage", width=64, height=64, batch_size=1)[0]

    def stock(self, model=None, sampler="euler"):
        return self.c.execute(
            "KSampler", model=model or self.model, seed=1, steps=STEPS, cfg=CFG, sampler_name=sampler,
            scheduler="karras", positive=self.positive, negative=self.negative, latent_image=self.latent,
            denoise=1.0,
        )[0]["samples"]  # fmt: skip

    def w2sd(self, pair, model=None, sampler="euler"):
        return self.c.execute(
            "W2SDKSampler", model=model or self.model, seed=1, steps=STEPS, cfg=CFG, sampler_name=sampler,
            scheduler="karras", positive=self.positive, negative=self.negative, latent_image=self.latent,
            denoise=1.0, pair=pair, **REFLECTION,
        )[0]["samples"]  # fmt: skip

    def counted(self, run, required=(), host_reads=True, keep_inputs=False):
        counters = Counters(required=tuple(m.model for m in required))
        with (
            instrument(counters, host_reads=host_reads, keep_inputs=keep_inputs),
            torch.inference_mode(),
        ):
            run()
        return counters

    def lora_split(self):
        model, pair, _ = self.c.execute(
            "W2SDLoraSplit", model=self.model, lora_name=SD15_MINI_LORA, main_scale=0.8, strong_scale=1.5,
            weak_scale=-1.5, clip=None,
        )  # fmt: skip
        return model, pair


@pytest.fixture(scope="module")
def s(comfyui):
    return Setup(comfyui)


def rows_of(cond):
    return [t for t in cond[0][0]]


def same(a, b):
    return a.shape == b.shape and torch.equal(a.float().cpu(), b.float().cpu())


def test_counters_see_host_reads(s):
    """The hooks are live: a read made inside the loop is counted, one made outside is not."""
    counters = Counters()
    with instrument(counters, host_reads=True):
        torch.ones(1).item()
        counters.in_loop = True
        torch.ones(2).tolist(), bool(torch.ones(1)), float(torch.ones(1)), torch.ones(1).cpu()
        counters.in_loop = False
    assert counters.host_reads_in_loop() == 4
    assert {op for _, op in counters.host_reads} == {"tolist", "__bool__", "__float__", "cpu"}
    assert "item" in dir(torch.Tensor) and "item" not in vars(torch.Tensor)  # restored as it was


def test_cfg_one_and_zero_sides_make_one_pass_with_the_right_conds(s):
    """cfg 1: the conditional pass alone; cfg 0: the unconditional pass alone; cfg 5.5: both in one batch."""
    pair = s.c.execute("W2SDCFGGap", strong_cfg=1.0, weak_cfg=0.0, pair=None)[0]
    c = s.counted(lambda: s.w2sd(pair), keep_inputs=True)
    assert c.nfe == NFE
    assert c.passes == {("main", 2): STEPS, ("strong", 1): STEPS - 1, ("weak", 1): STEPS - 1}
    (pos,), (neg,) = rows_of(s.positive), rows_of(s.negative)
    for role, _batch, context, _ in c.pass_log:
        rows = list(context)
        if role == "main":
            assert sorted(same(r, pos) for r in rows) == [False, True] and any(same(r, neg) for r in rows)
        else:
            assert same(rows[0], pos if role == "strong" else neg), f"{role} pass used the wrong conds"


def test_lora_pair_patches_no_weight_and_holds_one_base(s):
    import comfy.utils

    split, pair = s.lora_split()
    s.stock(), s.w2sd(pair, model=split)  # warm-up: both loaded once
    weights = {k: v.data_ptr() for k, v in s.model.model.state_dict().items()}
    memory = PeakMemory("cpu")
    memory.start()
    s.stock()
    stock_peak = memory.stop()
    memory.start()
    c = s.counted(lambda: s.w2sd(pair, model=split), required=(split,))
    lora_peak = memory.stop()

    assert c.nfe == NFE
    assert c.passes == {("main", 2): STEPS, ("strong", 2): STEPS - 1, ("weak", 2): STEPS - 1}
    assert sum(c.weight_patches.values()) == 0, f"weight patch operations: {dict(c.weight_patches)}"
    assert c.load_calls == {"setup": 1} and c.weight_moves["loop"] == 0 and c.resident_missing == 0
    assert c.host_reads_in_loop("w2sd") == 0, dict(c.host_read_sites)
    assert {k: v.data_ptr() for k, v in s.model.model.state_dict().items()} == weights
    # Extra memory over stock: the LoRA's tensors (cast to the compute dtype) plus 5%; a second copy of
    # the base UNet (26M params, 104 MB in fp32) cannot fit in that.
    unet_bytes = sum(
        v.numel() * v.element_size() for v in s.model.model.diffusion_model.state_dict().values()
    )
    lora_bytes = sum(  # the UNet part of the LoRA file, cast to the model's fp32 while sampling
        v.numel() * 4
        for k, v in comfy.utils.load_torch_file(str(s.c.models[SD15_MINI_LORA])).items()
        if k.startswith("lora_unet_") and not k.endswith(".alpha")
    )
    extra = lora_peak - stock_peak
    print(
        f"peak over stock {extra / 2**20:.1f} MiB; LoRA {lora_bytes / 2**20:.1f} MiB; base UNet {unet_bytes / 2**20:.0f} MiB"
    )
    if memory.method.startswith("VmHWM"):
        assert extra <= lora_bytes + 0.05 * stock_peak and extra < unet_bytes


def test_two_checkpoints_stay_loaded_without_reloads_in_the_loop(s):
    import comfy.sd

    finetune = comfy.sd.load_checkpoint_guess_config(
        str(s.c.models[SD15_MINI_FINETUNE]), output_vae=False, output_clip=False
    )[0]
    pair = s.c.execute("W2SDModelPair", weak_model=s.model)[0]
    s.stock()  # only the base loaded: the W2SD run must load the fine-tune beside it
    for _ in range(2):
        c = s.counted(lambda: s.w2sd(pair, model=finetune), required=(finetune, s.model), keep_inputs=True)
        assert c.nfe == NFE
        assert c.load_calls == {"setup": 1}, f"load_models_gpu calls: {dict(c.load_calls)}"
        assert c.weight_moves["loop"] == 0 and c.resident_missing == 0
        assert sum(c.weight_patches.values()) == 0
        assert c.host_reads_in_loop("w2sd") == 0, dict(c.host_read_sites)
        on = {(role, id(model)) for role, _, _, model in c.pass_log}
        assert on == {
            ("main", id(finetune.model)),
            ("strong", id(finetune.model)),
            ("weak", id(s.model.model)),
        }


@pytest.mark.parametrize(
    "sampler",
    [
        "euler",
        "dpmpp_2m",
        "euler_ancestral",
        "dpmpp_2m_sde",
        "dpmpp_sde",
    ],
)
def test_no_extra_host_reads_in_the_loop(s, sampler):
    pair = s.c.execute("W2SDCFGGap", strong_cfg=CFG, weak_cfg=0.0, pair=None)[0]
    stock = s.counted(lambda: s.stock(sampler=sampler))
    w2sd = s.counted(lambda: s.w2sd(pair, sampler=sampler))
    assert w2sd.total_nfe > stock.total_nfe
    assert w2sd.host_reads_in_loop("w2sd") == 0, dict(w2sd.host_read_sites)
    assert w2sd.host_reads_in_loop() <= stock.host_reads_in_loop(), (
        f"stock {dict(stock.host_reads)}, W2SD {dict(w2sd.host_reads)}"
    )


@pytest.mark.parametrize("stop_ratio", [0.01, 1.0])
def test_an_adaptive_window_reads_one_size_per_reflected_step(s, stop_ratio):
    """stop_ratio > 0 decides on the host: one read of the reflection's size per reflected step (made
    after the next step is queued), none once the window has ended; the stock sampler's reads unchanged."""
    pair = s.c.execute("W2SDCFGGap", strong_cfg=CFG, weak_cfg=0.0, pair=None)[0]
    run = lambda: s.c.execute(  # noqa: E731
        "W2SDKSampler", model=s.model, seed=1, steps=STEPS, cfg=CFG, sampler_name="euler",
        scheduler="karras", positive=s.positive, negative=s.negative, latent_image=s.latent,
        denoise=1.0, pair=pair, **{**REFLECTION, "stop_ratio": stop_ratio},
    )  # fmt: skip
    c = s.counted(run)
    reflected = c.nfe["strong"]
    assert 2 <= reflected <= STEPS - 1
    assert c.host_reads_in_loop("w2sd") == reflected, dict(c.host_read_sites)
