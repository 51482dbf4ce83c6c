"""Every model family of tests/fixtures/families.py through the W2SD nodes, against stock ComfyUI nodes.

One table of family specs drives every test here (a tiny model per family, 3 euler steps, a latent of a
few hundred values). Per family:
- reflection off (`reflect_steps=0`) is the stock KSampler bit for bit;
- strong == weak with the `warm_start` inversion, exact for equal sides (the weak step back up is the
  strong step down reversed), stays within WARM_START_BOUND of stock;
- a CFG gap, a second checkpoint and a LoRA split each move the result away from the same run on a null
  pair (equal cfg / the same model twice / equal LoRA scales) by more than PAIR_EFFECT: a pair the sampler
  ignored would give the null run's latent;
- at equal scales the LoRA split samples as stock `LoraLoaderModelOnly` within LORA_TOL, through the
  family's own LoRA key format (sliced keys onto fused qkv where the family has them);
- what the conds carry (guidance, reference latents, concat latents, masks, pooled vectors) reaches the
  strong and the weak side's model calls as that side's model encodes it in a stock run (a second
  checkpoint; the model at the side's LoRA scale);
- pairs across families are refused naming both, and LoRA keys ComfyUI maps past a fused weight name it.
Families whose class this core lacks are skipped naming the class (tests/fixtures/families.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest
import torch
from fixtures.families import (
    FAMILIES,
    Family,
    FamilyUnsupported,
    build_family,
    conditioning,
    empty_latent,
    family,
    write_lora,
)
from fixtures.passes import observed

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS, SEED = 3, 1
REFLECT = {
    "mode": "W2SD", "window": "steps", "start_percent": 0.0, "end_percent": 0.5, "reflect_steps": -1,
    "inversion": "explicit", "inversion_iters": 0, "equal_budget": False,
}  # fmt: skip
WARM_START = {**REFLECT, "inversion": "warm_start", "inversion_iters": 0}
# Relative max differences; the measured ranges per core are in docs/COMPATIBILITY.md#model-families.
WARM_START_BOUND = 1e-5
PAIR_EFFECT = 1e-3
LORA_TOL = 2e-4
LORA_SCALES = {"main_scale": 0.8, "strong_scale": 1.5, "weak_scale": -1.5}


def flat(latent) -> torch.Tensor:
    """A sampled latent as one tensor (LTX-2's NestedTensor of video and audio: both, flattened)."""
    if isinstance(latent, torch.Tensor):
        return latent
    return torch.cat([t.flatten() for t in latent.tensors])


def relative(a, b) -> float:
    a, b = flat(a), flat(b)
    return ((a - b).abs().max() / b.abs().max()).item()


class FamilySetup:
    """One family's tiny model (and a second checkpoint of it), conds, latent and LoRA, and the runs."""

    def __init__(self, comfyui, spec: Family):
        self.c, self.spec = comfyui, spec
        comfyui.load_pack()
        models = comfyui.base_dir / "models"
        try:
            built = build_family(spec, models, salt="a")
        except FamilyUnsupported as e:
            pytest.skip(str(e))
        self.model, self.loaded_by = built.model, built.loaded_by
        self.other = build_family(spec, models, salt="b").model
        self.positive, self.negative = conditioning(spec, 1), conditioning(spec, 2)
        self.latent = empty_latent(spec)
        self.lora, self.lora_format, self.lora_keys, self.lora_sliced = write_lora(
            spec, self.model, models / "loras"
        )

    def stock(self, model=None):
        args = (STEPS, self.spec.cfg, "euler", "simple", self.positive, self.negative, self.latent)
        return self.c.nodes.common_ksampler(model or self.model, SEED, *args)[0]["samples"]

    def w2sd(self, pair, model=None, **reflection):
        latent, _ = self.c.execute(
            "W2SDKSampler", model=model or self.model, seed=SEED, steps=STEPS, cfg=self.spec.cfg,
            sampler_name="euler", scheduler="simple", positive=self.positive, negative=self.negative,
            latent_image=self.latent, denoise=1.0, pair=pair, **{**REFLECT, **reflection},
        )  # fmt: skip
        return latent["samples"]

    def pair(self, **sides):
        return self.c.execute("W2SDModelPair", **sides)[0]

    def null_pair(self):
        """Strong and weak are the sampler's model at the sampler's cfg: a reflection that changes nothing."""
        return self.pair(strong_cfg=self.spec.cfg, weak_cfg=self.spec.cfg)

    def lora_split(self, main_scale, strong_scale, weak_scale, model=None):
        model, pair, _ = self.c.execute(
            "W2SDLoraSplit", model=model or self.model, lora_name=self.lora, main_scale=main_scale,
            strong_scale=strong_scale, weak_scale=weak_scale,
        )  # fmt: skip
        return model, pair


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda f: f.name)
def fam(request, comfyui):
    return FamilySetup(comfyui, request.param)


def test_the_fixture_is_the_family_and_depends_on_its_inputs(fam):
    import comfy.supported_models

    model = fam.model.model
    assert isinstance(model.model_config, getattr(comfy.supported_models, fam.spec.model_class))
    if "v_pred" in fam.spec.model_keys:
        import comfy.model_sampling

        assert isinstance(model.model_sampling, comfy.model_sampling.V_PREDICTION)
    stock = fam.stock()
    assert flat(stock).shape == flat(fam.latent["samples"]).shape and torch.isfinite(flat(stock)).all()
    # A fixture whose output ignores the prompt or the weights would let every pair test below pass.
    fam.positive, saved = conditioning(fam.spec, 3), fam.positive
    try:
        assert relative(fam.stock(), stock) > 10 * PAIR_EFFECT
    finally:
        fam.positive = saved
    assert relative(fam.stock(fam.other), stock) > 10 * PAIR_EFFECT
    print(f"{fam.spec.name}: {fam.spec.model_class} loaded by {fam.loaded_by}, LoRA keys {fam.lora_format}")
    if core_version() >= (0, 29):  # the core the table was written from: no fallback there
        assert fam.loaded_by == ("UNETLoader" if fam.spec.loader == "unet" else "class")
        assert fam.lora_format == fam.spec.lora_format


def core_version() -> tuple[int, ...]:
    import comfyui_version

    return tuple(int(p) for p in comfyui_version.__version__.split(".")[:3])


def test_reflection_off_is_stock_bit_for_bit(fam):
    gap = fam.c.execute("W2SDCFGGap", strong_cfg=fam.spec.cfg + 2, weak_cfg=1.0)[0]
    assert torch.equal(flat(fam.w2sd(gap, reflect_steps=0)), flat(fam.stock()))


def test_strong_equal_to_weak_with_an_exact_inversion_is_stock(fam):
    """warm_start evaluates the weak side where the strong one was evaluated, so with equal sides the
    inversion undoes the strong step up to float rounding and the reflection returns to the latent it left
    (measured 3.4e-7 to 2.7e-6 on the three cores). Fixed-point refinements are left out: on SDXL epsilon's
    3-step schedule (first step from sigma 14.6) each moves it further away (5: 6.7e-5, 20: 0.53)."""
    stock = fam.stock()
    error = relative(fam.w2sd(fam.null_pair(), **WARM_START), stock)
    print(f"{fam.spec.name}: strong == weak, warm_start vs stock: {error:.1e}")
    assert error < WARM_START_BOUND


def test_cfg_gap_changes_the_result_against_a_null_pair(fam):
    gap = fam.c.execute("W2SDCFGGap", strong_cfg=fam.spec.cfg + 2, weak_cfg=1.0)[0]
    change = relative(fam.w2sd(gap), fam.w2sd(fam.null_pair()))
    print(f"{fam.spec.name}: CFG gap vs null pair {change:.1e}")
    assert change > PAIR_EFFECT


def test_two_checkpoints_change_the_result_against_the_same_model_twice(fam):
    same = fam.pair(strong_model=fam.model, weak_model=fam.model)
    two = fam.pair(strong_model=fam.model, weak_model=fam.other)
    change = relative(fam.w2sd(two), fam.w2sd(same))
    print(f"{fam.spec.name}: two checkpoints vs the same model twice {change:.1e}")
    assert change > PAIR_EFFECT


def test_lora_split_changes_the_result_against_equal_scales(fam):
    if fam.spec.sliced_lora and fam.lora_format == fam.spec.lora_format:
        assert fam.lora_sliced > 0, "the family's format has keys on a slice of a fused qkv weight"
    model, pair = fam.lora_split(**LORA_SCALES)
    null_model, null_pair = fam.lora_split(0.8, 0.8, 0.8)
    change = relative(fam.w2sd(pair, model=model), fam.w2sd(null_pair, model=null_model))
    print(
        f"{fam.spec.name}: LoRA +1.5/-1.5 vs equal scales {change:.1e} ({fam.lora_keys} keys {fam.lora_format}, {fam.lora_sliced} sliced)"
    )
    assert change > PAIR_EFFECT


def test_lora_split_at_equal_scales_is_the_stock_lora_loader(fam):
    """The split adds the LoRA at forward time, LoraLoaderModelOnly patches the weights: a re-association
    of the same sums (tests/nodes/test_lora_scales.py), so the sampled latents agree to LORA_TOL."""
    split, _ = fam.lora_split(0.8, 0.8, 0.8)
    loader = fam.c.execute("LoraLoaderModelOnly", model=fam.model, lora_name=fam.lora, strength_model=0.8)[0]
    stock_lora = fam.stock(loader)
    error = relative(fam.stock(split), stock_lora)
    print(f"{fam.spec.name}: LoRA split at 0.8 vs LoraLoaderModelOnly {error:.1e}")
    assert error < LORA_TOL
    assert relative(stock_lora, fam.stock()) > 10 * PAIR_EFFECT  # the LoRA does something


def observing(model, log):
    """A clone recording, per role, what each model call's conds carry."""

    def record(role, args):
        for key, value in args["c"].items():
            log[role][key].add(fingerprint(value))

    return observed(model, record)


def fingerprint(value):
    """The first batch row of a tensor (each side batches its own conds), lists element by element."""
    if isinstance(value, torch.Tensor):
        row = value[0] if value.ndim > 0 else value
        return (
            tuple(row.shape),
            round(row.double().sum().item(), 6),
            round(row.double().abs().sum().item(), 6),
        )
    if isinstance(value, (list, tuple)):
        return tuple(fingerprint(v) for v in value)
    return None


def test_conds_reach_both_sides(fam):
    """The strong side runs the sampler's model, the weak side a second checkpoint. Each side's calls carry
    what that model's own stock KSampler calls carry, the family's cond inputs among them: the same values
    where the conds pass through, and the side's own encoding where the model encodes them with its weights
    (LTX-2's text connectors run in `extra_conds`)."""
    log = defaultdict(lambda: defaultdict(set))
    main, other = observing(fam.model, log), observing(fam.other, log)
    fam.w2sd(fam.pair(weak_model=other), model=main)
    assert set(log) == {"main", "strong", "weak"}
    expected = {"strong": log.pop("main")}
    fam.stock(other)
    expected["weak"] = log.pop("main")
    for key in fam.spec.observed:
        assert key in expected["strong"] and None not in expected["strong"][key], key
    for role in ("strong", "weak"):
        carried = set(expected[role]) - {"transformer_options"}
        assert set(log[role]) - {"transformer_options"} == carried, role
        for key in carried:
            assert log[role][key] == expected[role][key], (role, key)


def test_lora_split_sides_see_the_conds_encoded_at_their_scale(fam):
    """With a LoRA split each side's calls carry what the model at that side's scale carries in a stock run
    (the split at one scale for every role): LTX-2's LoRA reaches its text connectors, which encode the
    text before sampling; elsewhere the conds do not depend on the LoRA."""
    log = defaultdict(lambda: defaultdict(set))
    model, pair = fam.lora_split(**LORA_SCALES, model=observing(fam.model, log))
    fam.w2sd(pair, model=model)
    for role in ("strong", "weak"):
        scale = LORA_SCALES[f"{role}_scale"]
        stock_log = defaultdict(lambda: defaultdict(set))
        fam.stock(fam.lora_split(scale, scale, scale, model=observing(fam.model, stock_log))[0])
        expected = stock_log["main"]
        assert set(log[role]) == set(expected), role
        for key in set(expected) - {"transformer_options"}:
            assert log[role][key] == expected[key], (role, key)


def test_lumina2_diffusers_qkv_keys_are_refused_naming_the_layer(comfyui):
    """ComfyUI's diffusers to_q/k/v map for Lumina 2 puts k and v at offsets of a full query width: right
    for Z-Image (as many key/value heads as query heads), past the end of Lumina 2's fused qkv weight
    (grouped heads). The stock loader fails inside torch when it patches; the split names the layer."""
    spec = replace(family("lumina2"), name="lumina2_diffusers", lora_format=r"^transformer\.")
    comfyui.load_pack()
    models = comfyui.base_dir / "models"
    model = build_family(spec, models, salt="a").model
    lora, key_format, _, sliced = write_lora(spec, model, models / "loras")
    if key_format != spec.lora_format or not sliced:
        pytest.skip("this ComfyUI maps no diffusers q/k/v keys for Lumina 2")
    with pytest.raises(ValueError, match=r"lora_name: .*layers\.0\.attention\.qkv.*does not fit this model"):
        comfyui.execute(
            "W2SDLoraSplit", model=model, lora_name=lora, main_scale=0.8, strong_scale=1.5, weak_scale=-1.5
        )
    stock = comfyui.execute("LoraLoaderModelOnly", model=model, lora_name=lora, strength_model=0.8)[0]
    conds = conditioning(spec, 1), conditioning(spec, 2)
    with pytest.raises(RuntimeError, match="exceeds dimension size"):
        comfyui.nodes.common_ksampler(
            stock, SEED, STEPS, spec.cfg, "euler", "simple", *conds, empty_latent(spec)
        )


@pytest.mark.parametrize(
    ("main", "weak", "message"),
    [
        (
            "wan21_t2v",
            "wan22_5b",
            r"the weak model \(WAN22\) has latent format Wan22, but the sampler's model",
        ),
        (
            "flux_kontext",
            "flux2",
            r"the weak model \(Flux2\) has latent format Flux2, but the sampler's model",
        ),
        (
            "cosmos_predict2",
            "wan21_t2v",
            r"the weak model \(WAN21\) has prediction type CONST, but .* COSMOS_RFLOW",
        ),
        (
            "qwen_image",
            "wan21_t2v",
            r"the weak model is WAN21_T2V and the sampler's model QwenImage: they sample on",
        ),
    ],
    ids=["wan21+wan22_5b", "flux+flux2", "cosmos+wan21", "qwen+wan21"],
)
def test_a_pair_across_families_is_refused_naming_both(comfyui, main, weak, message):
    """Families on other latent formats, or on one latent format with another prediction type or schedule
    (Qwen-Image, Cosmos and Wan all use Wan 2.1's latents): a reflection between them mixes two models'
    meanings of the latent or of sigma."""
    comfyui.load_pack()
    models = comfyui.base_dir / "models"
    try:
        main_model, weak_model = (build_family(family(n), models, salt="x").model for n in (main, weak))
    except FamilyUnsupported as e:
        pytest.skip(str(e))
    spec = family(main)
    pair = comfyui.execute("W2SDModelPair", weak_model=weak_model)[0]
    with pytest.raises(ValueError, match=message):
        comfyui.execute(
            "W2SDKSampler", model=main_model, seed=SEED, steps=STEPS, cfg=spec.cfg, sampler_name="euler",
            scheduler="simple", positive=conditioning(spec, 1), negative=conditioning(spec, 2),
            latent_image=empty_latent(spec), denoise=1.0, pair=pair, **REFLECT,
        )  # fmt: skip
