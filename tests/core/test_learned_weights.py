"""The shipped trained weights (benchmarks/learned_weights/) still belong to the code that made them.

manifest.json records learned_models.source_hash() of the training run: the training script, the train
split, the set-up constants and the fixture code behind the CLIP and the initial weights. Change any of
them and this fails until `benchmarks/learned_train.py` is run again and its output committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
    for name in lm.WEIGHT_FILES.values():
        assert (lm.WEIGHTS_DIR / name).stat().st_size > 50_000, name


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
