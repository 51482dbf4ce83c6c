"""Flux (flow matching, guidance-distilled) in-process: a guidance gap carried by per-side conditioning.

Flux dev takes its guidance scale as a condition (`FluxGuidance`), not through CFG: sampled at cfg 1, a
strong side at guidance 3.5 against a weak side at 1.0 is a condition gap like the paper's CFG gap, at
one network pass per evaluation. The fixture is the family table's Flux (tests/fixtures/families.py: ComfyUI's
Flux class, hidden 128, one double and one single block, through UNETLoader where the core's detection takes
it) with plain text conditioning: no Kontext reference latent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch
from fixtures.families import build_family, conditioning, family, pooled
from fixtures.passes import observed

FLUX_DEV = replace(family("flux_kontext"), name="flux_dev", extras=pooled(32))

STEPS = 4
REFLECTION = {
    "mode": "W2SD", "window": "steps", "start_percent": 0.0, "end_percent": 0.5, "reflect_steps": -1,
    "inversion": "explicit", "inversion_iters": 3, "equal_budget": False,
}  # fmt: skip


class FluxSetup:
    def __init__(self, comfyui):
        self.c = comfyui
        comfyui.load_pack()
        self.model = build_family(FLUX_DEV, comfyui.base_dir / "models", salt="a").model
        text = conditioning(FLUX_DEV, seed=1)
        self.positive = comfyui.execute("FluxGuidance", conditioning=text, guidance=3.5)[0]
        self.weak_positive = comfyui.execute("FluxGuidance", conditioning=text, guidance=1.0)[0]
        self.negative = comfyui.execute("ConditioningZeroOut", conditioning=text)[0]
        self.latent = comfyui.execute("EmptySD3LatentImage", width=64, height=64, batch_size=1)[0]

    def stock(self, model=None, seed=1):
        args = (STEPS, 1.0, "euler", "simple", self.positive, self.negative, self.latent)
        return self.c.nodes.common_ksampler(model or self.model, seed, *args)[0]["samples"]

    def w2sd(self, pair, model=None, seed=1, **reflection):
        latent, _ = self.c.execute(
            "W2SDKSampler", model=model or self.model, seed=seed, steps=STEPS, cfg=1.0, sampler_name="euler",
            scheduler="simple", positive=self.positive, negative=self.negative, latent_image=self.latent,
            denoise=1.0, pair=pair, **{**REFLECTION, **reflection},
        )  # fmt: skip
        return latent["samples"]

    def guidance_pair(self, weak_positive=None):
        weak = self.weak_positive if weak_positive is None else weak_positive
        return self.c.execute("W2SDModelPair", weak_positive=weak)[0]


@pytest.fixture(scope="module")
def flux(comfyui):
    return FluxSetup(comfyui)


def logging_model(model, log):
    """A clone logging every network pass as (role, batch size, guidance values)."""

    def record(role, args):
        guidance = args["c"].get("guidance")
        log.append((role, args["input"].shape[0], None if guidance is None else tuple(guidance.tolist())))

    return observed(model, record)


def test_the_fixture_is_flux_dev(flux):
    model = flux.model.model
    assert type(model).__name__ == "Flux" and model.diffusion_model.params.guidance_embed
    import comfy.model_sampling as ms

    assert isinstance(model.model_sampling, ms.ModelSamplingFlux) and isinstance(
        model.model_sampling, ms.CONST
    )
    assert torch.isfinite(flux.stock()).all()


def test_empty_window_is_stock_bit_for_bit(flux):
    assert torch.equal(flux.w2sd(flux.guidance_pair(), reflect_steps=0), flux.stock())


def test_guidance_gap_reaches_each_side_at_one_pass_per_evaluation(flux):
    log = []
    latent = flux.w2sd(flux.guidance_pair(), model=logging_model(flux.model, log))
    assert Counter(role for role, _, _ in log) == {"main": STEPS, "strong": STEPS - 1, "weak": STEPS - 1}
    assert {b for _, b, _ in log} == {1}, "cfg 1: the unconditional pass is skipped on every side"
    guidance = {role: {g for r, _, g in log if r == role} for role in ("main", "strong", "weak")}
    assert guidance == {"main": {(3.5,)}, "strong": {(3.5,)}, "weak": {(1.0,)}}
    # Against the same reflections with equal guidance: a pair whose weak conds were ignored gives that.
    null = flux.w2sd(flux.guidance_pair(weak_positive=flux.positive))
    change = (latent - null).abs().max().item() / null.abs().max().item()
    print(f"Flux guidance gap 3.5 vs 1.0: relative change from equal guidance {change:.2e}")
    assert torch.isfinite(latent).all() and change > 1e-3


def test_equal_guidance_with_fixed_point_inversion_matches_stock(flux):
    same = flux.guidance_pair(weak_positive=flux.positive)
    stock = flux.stock()
    scale = stock.abs().max().item()
    explicit = (flux.w2sd(same, inversion="explicit") - stock).abs().max().item() / scale
    fixed = (flux.w2sd(same, inversion="fixed_point", inversion_iters=10) - stock).abs().max().item() / scale
    print(
        f"Flux, strong == weak, relative max error vs stock: explicit {explicit:.2e}, fixed-point x10 {fixed:.2e}"
    )
    assert fixed < 0.05 * max(explicit, 1e-12) or fixed < 1e-3
