"""benchmarks/learned.py's guider rows run through the real nodes (issue #26), on the trained digit models.

DualModelGuider needs a core that has it (ComfyUI 0.29.0); ComfyUI-AutoGuidance needs a checkout of that
pack in $W2SD_AUTOGUIDANCE: each test skips with the reason otherwise. What must hold whatever the models:
a guider row samples the seeds stock samples (the same noise and sigmas, through SamplerCustomAdvanced), so
a guider that cannot tell its two models apart gives back stock's latents: DualModelGuider at cfg 1, and
AutoGuidance with its bad model = its good one (for the LoRA pair: the same LoRA scale on two loaders,
swapped in and out of one shared model every step). At weight 2 on the pair's two models both run two
network passes per step and move the samples; AutoGuidance uncapped and in its paper mode compute the same
thing at cfg 1 (the pair's cfg): C + (w - 1)(C - B) = B + w(C - B).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from comfy_server import REPO_ROOT

SAMPLES, STEPS = 6, 4


@pytest.fixture(scope="module")
def bench(comfyui, source_module):
    import learned_models
    import torch

    learned = source_module("learned_benchmark", REPO_ROOT / "benchmarks" / "learned.py")
    comfyui.models.update(learned_models.install_learned_models(comfyui.base_dir, comfyui.comfyui))
    comfyui.load_pack()
    session = learned.Session(comfyui, learned_models)
    pairs = {p.key: p for p in learned.learned_pairs()}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield learned, session, pairs
    torch.set_num_threads(before)


def _sample(learned, session, setup, row):
    import torch

    run = learned.sample_row(session, setup, row, SAMPLES, "euler", STEPS, SAMPLES, learned.SEED)
    assert len(run.latents) == SAMPLES
    return torch.from_numpy(run.latents), run.nfe


def _setup(learned, session, pair):
    import torch

    with torch.inference_mode():
        return pair.build(session)


def test_dual_model_guider_rows(bench, comfyui):
    import torch

    learned, session, pairs = bench
    if "DualModelGuider" not in comfyui.nodes.NODE_CLASS_MAPPINGS:
        pytest.skip(f"ComfyUI at {comfyui.comfyui} has no DualModelGuider (0.29.0 has)")
    setup = _setup(learned, session, pairs["checkpoints"])
    stock, stock_nfe = _sample(learned, session, setup, learned.ROWS["stock"])
    one, two = learned.guider_rows("dmg_sweep", (1.0, 2.0))
    at_one, nfe_one = _sample(learned, session, setup, one)
    at_two, nfe_two = _sample(learned, session, setup, two)
    assert stock_nfe == nfe_one == STEPS and nfe_two == 2 * STEPS
    torch.testing.assert_close(at_one, stock, atol=1e-5, rtol=0)
    assert (at_two - stock).abs().mean() > 1e-2


def test_autoguidance_rows(bench, comfyui):
    import learned_models as lm
    import torch

    learned, session, pairs = bench
    path = os.environ.get("W2SD_AUTOGUIDANCE")
    if not path:
        pytest.skip("no ComfyUI-AutoGuidance checkout: set W2SD_AUTOGUIDANCE to run its rows")
    if learned.AUTOGUIDANCE_NODE not in comfyui.nodes.NODE_CLASS_MAPPINGS:
        learned.comfyui.load_peer(comfyui, Path(path), learned.AUTOGUIDANCE_NODE)
        learned.encode_autoguidance_bad_conds(comfyui)
    paper_2 = learned.guider_rows("ag_paper_sweep", (2.0,))[0]

    # The LoRA at the stock scale on a second loader: the bad side equals the good one.
    spec = lm.PAIRS["lora"]
    lora = _setup(learned, session, pairs["lora"])
    base = session.checkpoint(spec["checkpoint"])[0]
    twin = session.c.execute(
        "LoraLoaderModelOnly", model=base, lora_name=spec["lora"], strength_model=spec["scales"]["main"]
    )[0]
    stock, _ = _sample(learned, session, lora, learned.ROWS["stock"])
    same, _ = _sample(learned, session, dataclasses.replace(lora, guided=(lora.guided[0], twin)), paper_2)
    torch.testing.assert_close(same, stock, atol=1e-4, rtol=0)

    ckpt = _setup(learned, session, pairs["checkpoints"])
    ckpt_stock, _ = _sample(learned, session, ckpt, learned.ROWS["stock"])
    paper, nfe = _sample(learned, session, ckpt, paper_2)
    uncapped, _ = _sample(learned, session, ckpt, learned.guider_rows("ag_uncapped_sweep", (2.0,))[0])
    assert nfe == 2 * STEPS
    torch.testing.assert_close(uncapped, paper, atol=1e-4, rtol=0)
    assert (paper - ckpt_stock).abs().mean() > 1e-2
