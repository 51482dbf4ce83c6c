"""The graph fuzzer's long run: thousands of hostile W2SD prompts through one real ComfyUI server.

The same generator and oracle as the CI test (tests/graph_fuzz.py, tests/e2e/test_graph_fuzz.py), but
an oracle failure is recorded (its prompt saved as JSON) and the run goes on, so the counts cover the
whole run. Prints the prompts by outcome, why prompts were refused while running, and the server's
resident memory every `--every` prompts with its trend after warm-up (flat, or it is a leak).

    .venv/bin/python benchmarks/fuzz.py                      # 10,000 prompts, seed 0
    .venv/bin/python benchmarks/fuzz.py --prompts 500 --seed 3

Writes its report to stdout and into benchmarks/results/fuzz.md (one section per run, appended), the
failing prompts into out/fuzz_failures/. A failure found here belongs, shrunk, in the CI test's cases
(rerun the CI test with W2SD_FUZZ_EXAMPLES and the failure's seed to let hypothesis shrink it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "tests", REPO / "tools"):
    sys.path.insert(0, str(path))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from comfy_server import ComfyServer, comfyui_dir  # noqa: E402
from fixtures.checkpoints import install_fixtures  # noqa: E402
from graph_fuzz import Judge, OracleFailure, fuzzed_prompts, w2sd_info, write_hostile_files  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "fuzz.md"
FAILURES = REPO / "out" / "fuzz_failures"


def memory_trend(samples: list[tuple[int, float]]) -> float:
    """MiB per 1,000 prompts over the second half of the run (a least-squares line; warm-up left out)."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return float("nan")
    x, y = np.array([p for p, _ in half], float), np.array([m for _, m in half], float)
    return float(np.polyfit(x, y, 1)[0] * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=250, help="memory reading every N prompts")
    parser.add_argument("--time-cap", type=float, default=20.0, help="seconds before a prompt is interrupted")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="w2sd_fuzz_"))
    install_fixtures(base, comfyui_dir())
    server = ComfyServer(base, comfyui_dir()).start()
    started = time.monotonic()
    failures: list[str] = []
    memory: list[tuple[int, float]] = []
    try:
        write_hostile_files(server)
        info = w2sd_info(server)
        judge = Judge(server, info, time_cap=args.time_cap)
        process = psutil.Process(server.proc.pid)
        FAILURES.mkdir(parents=True, exist_ok=True)

        @seed(args.seed)
        @settings(
            max_examples=args.prompts,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def one_prompt(data: st.DataObject) -> None:
            fuzzed = data.draw(fuzzed_prompts(info))
            n = sum(judge.counts.values()) + len(failures)
            try:
                judge.check(fuzzed)
            except OracleFailure as e:
                failures.append(str(e).splitlines()[0])
                (FAILURES / f"seed{args.seed}_{n}.json").write_text(json.dumps(fuzzed.prompt, indent=1))
                print(f"[fuzz] prompt {n}: ORACLE FAILURE {failures[-1]}", flush=True)
            if (n + 1) % args.every == 0:
                memory.append((n + 1, process.memory_info().rss / 2**20))
                print(
                    f"[fuzz] {n + 1} prompts, {time.monotonic() - started:.0f} s, {dict(judge.counts)}, "
                    f"server RSS {memory[-1][1]:.0f} MiB",
                    flush=True,
                )

        one_prompt()
    finally:
        alive = server.proc is not None and server.proc.poll() is None
        server.stop()
    seconds = time.monotonic() - started
    tried = sum(judge.counts.values()) + len(failures)
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {tried} prompts, seed {args.seed}",
        "",
        f"`.venv/bin/python benchmarks/fuzz.py --prompts {args.prompts} --seed {args.seed}`; ComfyUI "
        f"{comfyui_dir().name}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{seconds / 60:.1f} min.",
        "",
        "| outcome | prompts |",
        "|---|---|",
        f"| refused before running, naming the node and input | {judge.counts['refused']} |",
        f"| refused while running with the pack's own message | {judge.counts['refused_running']} |",
        f"| ran: finite latents of the right shape | {judge.counts['ran']} |",
        f"| interrupted after {args.time_cap:g} s (huge step counts), then stopped | {judge.counts['interrupted']} |",
        f"| oracle failures (server death, raw error, bad latent, stock image changed) | {len(failures)} |",
        "",
        f"Server alive at the end: {'yes' if alive else 'NO'}. Stock image checked bit for bit after each of "
        f"the {tried - judge.counts['refused']} prompts that executed: "
        f"{'no change' if not any('stock' in f for f in failures) else 'CHANGED'}.",
        "",
        "Server resident memory (MiB) by prompts: "
        + ", ".join(f"{n}: {m:.0f}" for n, m in memory)
        + f". Trend over the second half: {memory_trend(memory):+.1f} MiB per 1,000 prompts.",
        "",
        "Refused while running, by message:",
        "",
        *(f"- {n} x {reason} ..." for reason, n in judge.reasons.most_common(20)),
        "",
        *(["Oracle failures:", "", *(f"- {f}" for f in failures), ""] if failures else []),
    ]
    report = "\n".join(lines)
    print(report)
    previous = (
        RESULTS.read_text() if RESULTS.exists() else "# Graph fuzzer: long runs (benchmarks/fuzz.py)\n\n"
    )
    RESULTS.write_text(previous.rstrip("\n") + "\n\n" + report)


if __name__ == "__main__":
    main()
