"""The shipped trained weights (benchmarks/learned_weights/) still belong to the code that made them.

manifest.json records learned_models.source_hash() of the training run: the training script, the train
split, the set-up constants and the fixture code behind the CLIP and the initial weights. Change any of
them and this fails until `benchmarks/learned_train.py` is run again and its output committed. The SD1.5
families (EPS, v) are checked the same way against manifest_eps.json / manifest_v.json and
`benchmarks/learned_train_eps.py`; their 4-step distillations (eps_distilled) against
manifest_eps_distilled.json and `benchmarks/learned_distill.py` (whose hash also covers the EPS teachers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import learned_models as lm  # noqa: E402


def test_shipped_weights_match_their_generating_source():
    manifest = lm.manifest()
    assert manifest["source_hash"] == lm.source_hash(), (
        "benchmarks/learned_weights/ was trained from other code or data: "
        "re-run `.venv/bin/python benchmarks/learned_train.py --comfyui .comfyui/0.3.75` and commit its output"
    )
    assert manifest["steps_scale"] == 1.0
    for name in lm.FAMILIES["flow"].values():
        assert (lm.WEIGHTS_DIR / lm.WEIGHT_FILES[name]).stat().st_size > 50_000, name


def test_prompts_and_pairs():
    assert lm.prompt(3) == "a handwritten digit 3" and lm.RAW_PROMPT == "a handwritten digit"
    assert lm.WEAK_SHARE < lm.STRONG_SHARE < lm.LORA_SHARE
    assert set(lm.PAIRS) == {"checkpoints", "lora", "cfg", "prompt", "lora_cfg"}
    for pair in lm.PAIRS.values():
        assert pair["metric"] in {"minority_share", "prompt_accuracy"}
    try:
        lm.prompt(10)
    except ValueError as error:
        assert "k: 10" in str(error)
    else:
        raise AssertionError("prompt(10) accepted")


@pytest.mark.parametrize("family", ["eps", "v"])
def test_shipped_sd15_weights_match_their_generating_source(family):
    manifest = lm.manifest(family)
    assert manifest["source_hash"] == lm.source_hash(family), (
        f"benchmarks/learned_weights/ ({family}) was trained from other code or data: re-run `.venv/bin/python "
        f"benchmarks/learned_train_eps.py --comfyui .comfyui/0.3.75 --prediction {family}` and commit its output"
    )
    assert manifest["steps_scale"] == 1.0
    files = lm.FAMILIES[family]
    for name in files.values():
        size = (lm.WEIGHTS_DIR / lm.WEIGHT_FILES[name]).stat().st_size
        assert 50_000 < size < 4_000_000, (name, size)
    strong, weak = (manifest["models"][files[side]]["alone"] for side in ("strong", "weak"))
    assert weak["minority_share"] < strong["minority_share"], "the class-ratio gap is missing"


def test_shipped_distilled_weights_match_their_generating_source():
    manifest = lm.manifest("eps_distilled")
    assert manifest["source_hash"] == lm.source_hash("eps_distilled"), (
        "benchmarks/learned_weights/ (eps_distilled) was distilled from other code or teachers: re-run "
        "`.venv/bin/python benchmarks/learned_distill.py --comfyui .comfyui/0.3.75` and commit its output"
    )
    assert manifest["steps_scale"] == 1.0
    files = lm.FAMILIES["eps_distilled"]
    assert files["lora"] == lm.EPS_LORA
    for side in ("strong", "weak"):
        name = files[side]
        size = (lm.WEIGHTS_DIR / lm.WEIGHT_FILES[name]).stat().st_size
        assert 50_000 < size < 4_000_000, (name, size)
        assert manifest["models"][name]["teacher"] == lm.FAMILIES["eps"][side]
    strong, weak = (manifest["models"][files[side]]["alone"] for side in ("strong", "weak"))
    assert weak["minority_share"] < strong["minority_share"], "the students lost the class-ratio gap"


def test_pairs_on_the_eps_family_use_its_files():
    eps = lm.pairs("eps")
    assert eps["checkpoints"]["strong"] == lm.EPS_STRONG and eps["checkpoints"]["weak"] == lm.EPS_WEAK
    assert eps["lora"]["checkpoint"] == lm.EPS_WEAK and eps["lora"]["lora"] == lm.EPS_LORA
    assert eps["cfg"]["checkpoint"] == lm.EPS_STRONG
    assert lm.pairs("flow") == lm.PAIRS


def test_widened_lora_is_the_widened_weight_delta():
    """widen_unet treats a Kohya LoRA's down / up as the input / output sides of the weight it patches."""
    import torch

    gen = torch.Generator().manual_seed(0)
    for module in ("input_blocks.1.1.transformer_blocks.0.attn1.to_q", "output_blocks.0.1.proj_in"):
        key = "lora_unet_" + module.replace(".", "_")
        down, up = torch.randn(2, 8, generator=gen), torch.randn(8, 2, generator=gen)
        wide = lm.widen_unet({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up}, 3)
        delta = lm.widen_unet({f"{module}.weight": up @ down}, 3)[f"{module}.weight"].float()
        product = wide[f"{key}.lora_up.weight"].float() @ wide[f"{key}.lora_down.weight"].float()
        assert product.shape == (24, 24)
        assert torch.allclose(product, delta, atol=2e-2)
