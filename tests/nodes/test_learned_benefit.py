"""W2SD helps trained models, through the real nodes: the first tests that fail if the pack stops helping.

The models are tools/learned_models.py's digit MMDiTs (trained on scikit-learn's 8x8 digits), the judges
benchmarks/judges.py's classifier. The same seeded samples go through stock KSampler, the W2SD KSampler
(default window) and S2WD; the paired bootstrap interval of (W2SD - stock) must lie above zero for the
pair's target metric, and that of (S2WD - stock) below it. benchmarks/learned.py measures the same with
500+ samples per row and every variant.

Only the CFG gap is asserted so far. Measured with the weights of source_hash edb007c5ef9f33f1:
the checkpoint pair's strong model draws the minority digit 0 at 0.002 [0.000, 0.006] of 500 samples, so
there is no class-ratio gap to move yet; the checkpoint and LoRA pairs join N_SAMPLES once the models have it.
"""

from __future__ import annotations

import pytest
from comfy_server import REPO_ROOT

N_SAMPLES = {"cfg": 200}
"""Samples per row: enough for the paired interval to exclude zero at the effects the benchmark measures."""
STEPS = 10
ROUNDS = 500


@pytest.fixture(scope="module")
def bench(comfyui, one_thread, source_module):
    import learned_models

    learned = source_module("learned_benchmark", REPO_ROOT / "benchmarks" / "learned.py")
    comfyui.models.update(learned_models.install_learned_models(comfyui.base_dir, comfyui.comfyui))
    comfyui.load_pack()
    session = learned.Session(comfyui, learned_models)
    judge = learned.Judge(False, learned_models.MINORITY)
    return learned, session, judge, {p.key: p for p in learned.learned_pairs()}


@pytest.mark.parametrize("key", list(N_SAMPLES))
def test_w2sd_moves_the_target_and_s2wd_the_other_way(bench, key):
    import torch

    learned, session, judge, pairs = bench
    pair = pairs[key]
    with torch.inference_mode():
        setup = pair.build(session)
    n = N_SAMPLES[key]
    stats = {}
    for row in ("stock", "w2sd", "s2wd"):
        run = learned.sample_row(session, setup, learned.ROWS[row], n, "euler", STEPS, n, learned.SEED)
        assert len(run.images) == n
        _, row_stats = judge.figures([pair.metric], run, rounds=1)
        stats[row] = row_stats[pair.metric]
    every = learned.np.arange(n)
    values = {row: f(every) for row, f in stats.items()}
    up = learned.paired_difference(stats["w2sd"], stats["stock"], n, ROUNDS)
    down = learned.paired_difference(stats["s2wd"], stats["stock"], n, ROUNDS)
    report = f"{key} {pair.metric}: {values}; W2SD - stock {up.text()}, S2WD - stock {down.text()}"
    print(report)
    assert up.low > 0, f"W2SD did not raise {pair.metric} beyond the interval: {report}"
    assert down.high < 0, f"S2WD did not lower {pair.metric} beyond the interval: {report}"
