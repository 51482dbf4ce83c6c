"""W2SD helps trained models, through the real nodes: the first tests that fail if the pack stops helping.

The models are tools/learned_models.py's digit models (trained on scikit-learn's 8x8 digits): the flow
MMDiTs (SD3 family) and the SD1.5-family EPS UNets; the judge is benchmarks/judges.py's classifier. The
same seeded samples go through stock KSampler, the W2SD KSampler and S2WD at the node's defaults (every
step but the last, the warm_start inversion, the sampler's history kept); the paired bootstrap interval of
(W2SD - stock) must lie above zero for the pair's target metric, and that of (S2WD - stock) below it.
benchmarks/learned.py measures the same with 500 samples per row, more rows and samplers
(benchmarks/results/learned.md, "The defaults question").

The flow models with euler (10 steps, `simple`), the EPS UNets with dpmpp_2m / karras (10 steps): the
sampler that keeps a history, where the one-step calls of the defaults before 0.2.0 cost quality.

The CFG gap's gain is not asserted beyond the interval: these models already follow the class prompt at
cfg 1 (prompt accuracy 0.99 on this test's 100 samples, 0.96-0.99 over 500), so there is no room above
stock; W2SD must not lower it and S2WD must.
"""

from __future__ import annotations

import pytest
from comfy_server import REPO_ROOT

CASES = {
    "checkpoints": ("flow", "euler", 200),
    "lora": ("flow", "euler", 100),
    "cfg": ("flow", "euler", 100),
    "eps checkpoints": ("eps", "dpmpp_2m_karras", 200),
}
"""Case -> (model family, sampler, samples per row): enough for the paired interval to exclude zero at the
effects the benchmark measures (the checkpoint pairs' are the smallest)."""
AT_CEILING = {"cfg"}
"""Pairs whose stock target is already near its maximum: W2SD must keep it (interval reaching 0), not raise it."""
THREADS = 2
"""Batches of 100-200 samples are no tiny tensors: two threads sample them about 1.5x faster than one."""
STEPS = 10
ROUNDS = 500


@pytest.fixture(scope="module")
def bench(comfyui, source_module):
    import learned_models
    import torch

    learned = source_module("learned_benchmark", REPO_ROOT / "benchmarks" / "learned.py")
    comfyui.models.update(learned_models.install_learned_models(comfyui.base_dir, comfyui.comfyui))
    comfyui.load_pack()
    sessions = {family: learned.Session(comfyui, learned_models, family) for family in ("flow", "eps")}
    judge = learned.Judge(False, learned_models.MINORITY)
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield learned, sessions, judge
    torch.set_num_threads(before)


def test_the_benchmark_rows_named_defaults_are_the_nodes_defaults(bench, comfyui):
    learned, _, _ = bench
    declared = comfyui.node_class("W2SDKSampler").INPUT_TYPES()
    inputs = {**declared["required"], **declared["optional"]}
    assert {name: inputs[name][1]["default"] for name in learned.NODE_DEFAULTS} == learned.NODE_DEFAULTS


@pytest.mark.parametrize("case", list(CASES))
def test_w2sd_moves_the_target_and_s2wd_the_other_way(bench, case):
    import torch

    learned, sessions, judge = bench
    family, sampler, n = CASES[case]
    key = case.split()[-1]
    pair = {p.key: p for p in learned.learned_pairs(family=family)}[key]
    with torch.inference_mode():
        setup = pair.build(sessions[family])
    stats = {}
    for row in ("stock", "defaults", "s2wd_defaults"):
        run = learned.sample_row(
            sessions[family], setup, learned.ROWS[row], n, sampler, STEPS, n, learned.SEED
        )
        assert len(run.images) == n
        _, row_stats = judge.figures([pair.metric], run, rounds=1)
        stats[row] = row_stats[pair.metric]
    every = learned.np.arange(n)
    values = {row: f(every) for row, f in stats.items()}
    up = learned.paired_difference(stats["defaults"], stats["stock"], n, ROUNDS)
    down = learned.paired_difference(stats["s2wd_defaults"], stats["stock"], n, ROUNDS)
    report = f"{case} {sampler} {pair.metric}: {values}; W2SD - stock {up.text()}, S2WD - stock {down.text()}"
    print(report)
    if key in AT_CEILING:
        assert values["stock"] >= 0.95 and up.low >= 0 and up.value >= 0, (
            f"W2SD lowered {pair.metric}: {report}"
        )
    else:
        assert up.low > 0, f"W2SD did not raise {pair.metric} beyond the interval: {report}"
    assert down.high < 0, f"S2WD did not lower {pair.metric} beyond the interval: {report}"
