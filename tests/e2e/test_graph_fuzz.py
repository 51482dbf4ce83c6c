"""The graph fuzzer's seeded, bounded run through a real server (tests/graph_fuzz.py; issue #25).

Every prompt is generated from the server's /object_info for the W2SD nodes and judged by the oracle
(server alive, named refusals, the pack's own errors, finite latents of the right shape, interrupts
that stop, the stock image unchanged). Derandomized: the same prompts on every run; a failure is
shrunk by hypothesis to a minimal prompt, which belongs in tests/e2e/test_bad_input.py as a case.
The long run (10,000 prompts, counts and memory) is benchmarks/fuzz.py.
"""

from __future__ import annotations

import os

import pytest
from graph_fuzz import Judge, fuzzed_prompts, w2sd_info, write_hostile_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("W2SD_FUZZ_EXAMPLES", "150"))


@pytest.fixture(scope="module")
def judge(server, info):
    names = write_hostile_files(server)
    yield Judge(server, info)
    for name in names:
        (server.base_dir / "models" / "loras" / name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def info(server):
    return w2sd_info(server)


def test_hostile_graphs_never_break_the_server(judge, info):
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def one_prompt(data):
        judge.check(data.draw(fuzzed_prompts(info)))

    one_prompt()
    print(f"graph fuzzer, {EXAMPLES} prompts: {dict(judge.counts)}")
    for reason, n in judge.reasons.most_common():
        print(f"  {n:4d} refused while running: {reason}")
    # The generator must reach every outcome, or it no longer tests what it claims to.
    assert judge.counts["refused"] > 0 and judge.counts["ran"] > 0 and judge.counts["refused_running"] > 0
