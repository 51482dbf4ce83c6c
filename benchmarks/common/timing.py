"""The timed runs of benchmarks/perf.py and perf_h2h.py: per configuration a warm-up with every counter
and a timed run with peak memory, then the other repeats interleaved across configurations."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.counters import Counters, instrument
from common.graph import Config, Graph
from common.memory import PeakMemory
from common.report import load_average


@dataclass
class Result:
    config: Config
    counters: Counters
    times: list[float] = field(default_factory=list)  # wall seconds of the whole sampler node call
    cpu: list[float] = field(default_factory=list)  # process CPU seconds of the same calls
    network: list[float] = field(default_factory=list)  # of which inside BaseModel.apply_model
    peak: int = 0
    before: int = 0  # resident (CPU RSS / CUDA allocated) just before the peak-memory run
    error: str | None = None

    @property
    def wall(self) -> float:
        return statistics.median(self.times)

    @property
    def cpu_time(self) -> float:
        return statistics.median(self.cpu)

    @property
    def network_per_row(self) -> float:
        """CPU seconds inside the network per batch row (median over runs)."""
        return statistics.median(self.network) / self.counters.total_rows

    @property
    def host_per_nfe(self) -> float:
        """CPU seconds outside the network per NFE: sampler, guider, CFG, W2SD bookkeeping (median)."""
        return (
            statistics.median(c - n for c, n in zip(self.cpu, self.network, strict=True))
            / self.counters.total_nfe
        )


def timed(run: Callable[[], Any], device: str) -> tuple[float, float, float]:
    """(wall, process CPU, CPU inside the network) seconds of one run, under inference_mode as ComfyUI's
    executor runs nodes. Only the cheap counters are on (no host-read hooks), the same for every config."""
    import torch

    counters = Counters()
    with instrument(counters):
        cpu, start = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            run()
        if device == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall, cpu, counters.network_cpu


def measure(g: Graph, selected: list[Config], repeats: int, device: str) -> list[Result]:
    """Phase 1, config by config in order: a warm-up run with every counter (models load here, so memory
    is attributed to the first config needing it), then a timed run with peak memory. Phase 2: the
    other repeats interleaved across configs, so a change in machine load hits every config alike."""
    import torch

    memory = PeakMemory(device)
    results: list[Result] = []
    runs: dict[str, Callable[[], Any]] = {}
    for name in ("positive", "negative", "refined", "latent"):
        g.get(name)  # inputs made before any run: their encoding is no part of a sampler's cost
    print(
        "  phase 1: per config in order: warm-up with counters, then a timed run with peak memory", flush=True
    )
    for config in selected:
        result = Result(config, Counters())
        results.append(result)
        try:
            run, required = config.prepare(g)
            result.counters = Counters(required=required)
            with (
                instrument(result.counters, host_reads=True, sync_debug=device == "cuda"),
                torch.inference_mode(),
            ):
                run()
            result.before = memory.current()
            memory.start()
            wall, cpu, network = timed(run, device)
            result.peak = memory.stop()
        except Exception as e:  # a broken config must not hide the others' numbers
            result.error = f"{type(e).__name__}: {e}"
            print(f"    {config.name}: FAILED {result.error}", flush=True)
            continue
        runs[config.name] = run
        result.times.append(wall)
        result.cpu.append(cpu)
        result.network.append(network)
        print(
            f"    {config.name}: {wall:.3f} s wall, {cpu:.3f} s CPU, NFE {result.counters.total_nfe}",
            flush=True,
        )
    for r in range(1, repeats):
        print(f"  round {r + 1}/{repeats} (interleaved), load average {load_average()}", flush=True)
        for result in results:
            if result.error is not None:
                continue
            run = runs[result.config.name]
            if result.config.settle:
                timed(run, device)
            wall, cpu, network = timed(run, device)
            result.times.append(wall)
            result.cpu.append(cpu)
            result.network.append(network)
    return results


def results_table(head: str, results: list[Result], row: Callable[[Result], str]) -> str:
    """A markdown table under `head`: `row(r)` for each measured config, "failed: ..." for one that raised."""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        if r.error is not None:
            lines.append(f"| {r.config.name} | failed: {r.error} |" + " |" * (head.count("|") - 3))
        else:
            lines.append(row(r))
    return "\n".join(lines)
