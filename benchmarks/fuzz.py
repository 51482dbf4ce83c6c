"""The graph fuzzer's long run: thousands of hostile W2SD prompts through one real ComfyUI server.

The same generator and oracle as the CI test (tests/graph_fuzz.py, tests/e2e/test_graph_fuzz.py), but
an oracle failure is recorded (its prompt saved as JSON) and the run goes on, so the counts cover the
whole run. Prints the prompts by outcome, why prompts were refused while running, and the server's
resident memory every `--every` prompts with its trend after warm-up (flat, or it is a leak).

Resident memory alone cannot tell a leak from memory the C allocator keeps after a large prompt freed
it (glibc returns a freed heap to the system only from its top). So the server also loads a small probe
(written into its custom_nodes for this run only, not part of the pack) that, at each reading, calls
glibc's `malloc_trim(0)` inside the server and reports the memory after it: what the process still
holds live. Every prompt after which resident memory rose more than `--step-mib` above its highest
reading so far is saved (out/fuzz_memory/) and listed; `--replay FILE...` runs saved prompts again
`--repeat` times each in a fresh server (the seeds changed each time, so nothing is served from the
cache) and prints the memory after each run, then once more after the server has been idle long enough
for its own full garbage collection: a step that does not grow with repeats is a high-water mark, and
growth that this collection returns is garbage in reference cycles (a node's exception keeps its prompt's
inputs in one: ComfyUI's execute() holds the traceback in a local of the frame it references), not a leak.

    .venv/bin/python benchmarks/fuzz.py                      # 10,000 prompts, seed 0
    .venv/bin/python benchmarks/fuzz.py --prompts 500 --seed 3
    .venv/bin/python benchmarks/fuzz.py --replay out/fuzz_memory/seed2_2051.json --repeat 20

Writes its report to stdout and into benchmarks/results/fuzz.md (one section per run, appended), the
failing prompts into out/fuzz_failures/. A failure found here belongs, shrunk, in the CI test's cases
(rerun the CI test with W2SD_FUZZ_EXAMPLES and the failure's seed to let hypothesis shrink it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "tests", REPO / "tools"):
    sys.path.insert(0, str(path))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from comfy_server import ComfyServer, comfyui_dir  # noqa: E402
from fixtures.checkpoints import install_fixtures  # noqa: E402
from graph_fuzz import Fuzzed, Judge, OracleFailure, fuzzed_prompts, w2sd_info, write_hostile_files  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "fuzz.md"
FAILURES = REPO / "out" / "fuzz_failures"
MEMORY_STEPS = REPO / "out" / "fuzz_memory"
PROBE = '''"""Benchmark-only probe (benchmarks/fuzz.py): the server's memory, after glibc's malloc_trim."""
import ctypes

import psutil
from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS = {}
_libc = ctypes.CDLL("libc.so.6")


@PromptServer.instance.routes.get("/w2sd_fuzz_probe/trimmed_memory")
async def trimmed_memory(request):
    before = psutil.Process().memory_info().rss
    _libc.malloc_trim(0)
    return web.json_response({"rss_before": before, "rss_after": psutil.Process().memory_info().rss})
'''


def memory_trend(samples: list[tuple[int, float]]) -> float:
    """MiB per 1,000 prompts over the second half of the run (a least-squares line; warm-up left out)."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return float("nan")
    x, y = np.array([p for p, _ in half], float), np.array([m for _, m in half], float)
    return float(np.polyfit(x, y, 1)[0] * 1000)


MIB = 2**20
SERVER_GC_INTERVAL = 10.0
"""ComfyUI's prompt worker runs gc.collect() between prompts at most this often (main.py, 0.3.52 to 0.29.0),
and once the queue has been idle this long."""


def start_server() -> tuple[ComfyServer, Path]:
    """A fresh server with the fixtures, the hostile files and the memory probe."""
    base = Path(tempfile.mkdtemp(prefix="w2sd_fuzz_"))
    install_fixtures(base, comfyui_dir())
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / "w2sd_fuzz_probe.py").write_text(PROBE)
    server = ComfyServer(base, comfyui_dir()).start()
    write_hostile_files(server)
    return server, base


def trimmed_memory(server: ComfyServer) -> tuple[float, float]:
    """The server's resident MiB before and after glibc's malloc_trim(0) (the probe above)."""
    answer = server.request("/w2sd_fuzz_probe/trimmed_memory")
    return answer["rss_before"] / MIB, answer["rss_after"] / MIB


def reseeded(prompt: dict[str, Any], k: int) -> dict[str, Any]:
    """The prompt with every integer seed input changed, so ComfyUI runs it again instead of its cache."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        for name in ("seed", "noise_seed"):
            if isinstance(node.get("inputs", {}).get(name), int):
                node["inputs"][name] = (node["inputs"][name] + k) % 2**32
    return prompt


def replay(paths: list[Path], repeat: int, time_cap: float) -> None:
    """Each saved prompt `repeat` times in one fresh server; resident memory after each run."""
    server, _ = start_server()
    try:
        judge = Judge(server, w2sd_info(server), time_cap=time_cap)
        print(f"[replay] after start-up and the stock reference: {trimmed_memory(server)[0]:.0f} MiB")
        for path in paths:
            prompt = json.loads(path.read_text())
            outputs = {k: () for k, v in prompt.items() if v["class_type"] == "SaveLatent"}
            readings = []
            for k in range(repeat):
                try:
                    outcome = judge.check(Fuzzed(reseeded(prompt, k), outputs={}))
                except OracleFailure as e:
                    outcome = f"oracle failure: {str(e).splitlines()[0]}"
                before, after = trimmed_memory(server)
                readings.append(f"{before:.0f}/{after:.0f}")
                print(
                    f"[replay] {path.name} run {k + 1}: {outcome}, {before:.0f} MiB, after trim {after:.0f} MiB"
                )
            print(
                f"[replay] {path.name} ({len(outputs)} outputs), MiB before/after trim per run: {', '.join(readings)}"
            )
            time.sleep(SERVER_GC_INTERVAL + 5)
            print(
                f"[replay] {path.name}: after {SERVER_GC_INTERVAL + 5:.0f} s idle (the server's own full garbage "
                f"collection): {trimmed_memory(server)[1]:.0f} MiB after trim"
            )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=250, help="memory reading every N prompts")
    parser.add_argument("--time-cap", type=float, default=20.0, help="seconds before a prompt is interrupted")
    parser.add_argument(
        "--step-mib", type=float, default=300.0, help="a rise above the highest reading to save"
    )
    parser.add_argument("--replay", type=Path, nargs="*", help="saved prompts to run again (no fuzzing)")
    parser.add_argument("--repeat", type=int, default=10, help="runs of each --replay prompt")
    args = parser.parse_args()
    if args.replay:
        replay(args.replay, args.repeat, args.time_cap)
        return

    server, _ = start_server()
    started = time.monotonic()
    failures: list[str] = []
    memory: list[tuple[int, float, float]] = []  # prompts, resident MiB, MiB after malloc_trim
    steps: list[str] = []
    try:
        info = w2sd_info(server)
        judge = Judge(server, info, time_cap=args.time_cap)
        process = psutil.Process(server.proc.pid)
        highest = process.memory_info().rss / MIB
        FAILURES.mkdir(parents=True, exist_ok=True)
        MEMORY_STEPS.mkdir(parents=True, exist_ok=True)

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
            nonlocal highest
            fuzzed = data.draw(fuzzed_prompts(info))
            n = sum(judge.counts.values()) + len(failures)
            try:
                outcome = judge.check(fuzzed)
            except OracleFailure as e:
                outcome = "oracle failure"
                failures.append(str(e).splitlines()[0])
                (FAILURES / f"seed{args.seed}_{n}.json").write_text(json.dumps(fuzzed.prompt, indent=1))
                print(f"[fuzz] prompt {n}: ORACLE FAILURE {failures[-1]}", flush=True)
            rss = process.memory_info().rss / MIB
            if rss > highest + args.step_mib:
                name = f"seed{args.seed}_{n}.json"
                steps.append(
                    f"prompt {n} ({outcome}): {highest:.0f} -> {rss:.0f} MiB, saved as {name}: "
                    f"{fuzzed.w2sd_summary()}; latents {sorted(set(fuzzed.outputs.values()))}"
                )
                (MEMORY_STEPS / name).write_text(json.dumps(fuzzed.prompt, indent=1))
                print(f"[fuzz] memory step: {steps[-1]}", flush=True)
            highest = max(highest, rss)
            if (n + 1) % args.every == 0:
                before, after = trimmed_memory(server)
                memory.append((n + 1, before, after))
                print(
                    f"[fuzz] {n + 1} prompts, {time.monotonic() - started:.0f} s, {dict(judge.counts)}, "
                    f"server RSS {before:.0f} MiB, after malloc_trim {after:.0f} MiB",
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
        "Server resident memory (MiB) by prompts, as the allocator holds it / after malloc_trim (what stays "
        "live): "
        + ", ".join(f"{n}: {m:.0f}/{t:.0f}" for n, m, t in memory)
        + f". Trend over the second half: {memory_trend([(n, m) for n, m, _ in memory]):+.1f} MiB per "
        f"1,000 prompts as held, {memory_trend([(n, t) for n, _, t in memory]):+.1f} after malloc_trim.",
        "",
        f"Prompts after which resident memory rose more than {args.step_mib:g} MiB above its highest "
        f"reading so far: {len(steps)}",
        "",
        *(f"- {line}" for line in steps),
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
