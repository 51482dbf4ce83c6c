"""What W2SD costs beyond its model evaluations: stock KSampler vs the W2SD KSampler, in-process ComfyUI.

W2SD (Weak-to-Strong Diffusion with Reflection, arXiv 2502.00473) needs `T + 2*lambda` model evaluations
(NFE) instead of `T`. That price is inherent; this script measures everything beyond it, for one graph,
seed and step count, every configuration in the same process and run:

- stock KSampler (and stock KSampler + LoraLoaderModelOnly, the baseline of the LoRA pair);
- W2SD with lambda = T-1 (the paper code's window) and equal-budget W2SD, for the CFG gap (Z-Sampling),
  the LoRA-scale split, two checkpoints, and a prompt pair (sides at the sampler's model and cfg, so
  every evaluation is exactly stock's work: the purest overhead probe).

Columns: wall time (median of N repeats, the whole sampler node call), NFE and network passes (counted
by hooks on `CFGGuider.outer_predict_noise` and `BaseModel.apply_model`, never assumed), time per NFE and
per network row (one batch element through the UNet) relative to the stock baseline, peak memory (CPU:
the process's peak RSS during the run, reset through /proc/self/clear_refs; GPU: torch max allocated),
weight patch operations (`comfy.lora.calculate_weight` calls) and model loads (`load_models_gpu` calls,
weight (re)loads/unloads of a ModelPatcher) before the first evaluation and inside the sampling loop, and
host reads (`.item()`, `.tolist()`, `.cpu()`, `.numpy()`, `bool()`/`float()`/`int()` of a tensor) inside the
loop, with those made from the pack's own files apart. On CUDA the loop also runs under
`torch.cuda.set_sync_debug_mode("warn")` and the synchronising calls it reports are counted.

Models: `tiny` = the test fixtures (SD1.5-shaped mini UNet, its fine-tune and LoRA; see
tests/fixtures/checkpoints.py); `sd15` / `sdxl` = full-size UNets with random weights, built once with
ComfyUI's own classes (deterministic fill, no download) into `.cache/perf/<key>/` with a random LoRA of
`--lora-rank` for the attention/ff/proj layers, loaded through the stock UNETLoader. The second
"checkpoint" of a full-size model is a second load of the same file: a separate model in memory, the
same cost as a real fine-tune. Timing does not depend on the weights.

    .venv/bin/python benchmarks/perf.py                  # CPU: tiny (20 steps, 64 px) + sd15 (3 steps, 256 px)
    .venv/bin/python benchmarks/perf.py --quick          # tiny only, 8 steps, 3 repeats
    .venv/bin/python benchmarks/perf.py --model sd15 --steps 4 --size 512 --threads 2
    .venv/bin/python benchmarks/perf.py --device cuda    # sd15 (512 px) + sdxl (1024 px), 20 steps

A full-size SD1.5 pass at 512 px costs about 40 CPU-seconds on one core of the 2-core dev machine (4 steps
of the whole matrix: hours), hence the CPU default of 3 steps at 256 px. Equal-budget rows are left out
when floor(T/4) = 0 (no step would reflect).

Writes the table to stdout and into benchmarks/results/perf.md (one section per model and device,
replaced on a re-run). It is a benchmark, not a test: tests/nodes/test_perf_counters.py pins the counters.

What it measures lives in benchmarks/common/, shared with perf_h2h.py and learned.py: counters.py (NFE,
passes, weight patches, loads, host reads), memory.py (peak memory), timing.py (the timed runs),
graph.py (the models, conds and configurations), random_models.py (the full-size random weights). This
file adds the single-pass probes (batching, LoRA injection) and the report.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "tests", ROOT / "tools", ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from common import comfyui  # noqa: E402
from common.counters import ROLE_KEY  # noqa: E402
from common.graph import CFG, SEED, Graph, configs  # noqa: E402
from common.memory import PeakMemory  # noqa: E402
from common.random_models import UNET_CONFIGS, build_full_size  # noqa: E402
from common.report import code_version, load_average, machine, mib, write_section  # noqa: E402
from common.timing import Result, measure, results_table  # noqa: E402
from fixtures.checkpoints import comfyui_version  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "perf.md"
HEADER = (
    "# W2SD performance: what it costs beyond its model evaluations\n\n"
    "Made by `benchmarks/perf.py` (see its docstring for what each column counts). Every table is one run; "
    "ratios are taken within the run. Sections are replaced when the same model/device is re-run.\n\n"
)


# ---------------------------------------------------------------------------------------------------
# Single network passes
# ---------------------------------------------------------------------------------------------------


@dataclass
class Probes:
    """Single network passes, timed in isolation (CPU: process CPU time; CUDA: wall with synchronize)."""

    batch2: float  # one pass of batch 2 (cond + uncond together)
    two_batch1: float  # two passes of batch 1
    lora: dict[str, float]  # one batch-2 pass: base, LoRA merged by LoraLoader, the split at a role's scale


def probes(g: Graph, repeats: int, device: str, lora: bool) -> Probes:
    """Batching (one batch-2 pass vs two batch-1 passes) and the LoRA split's forward-injection cost (a
    batch-2 pass of the base, of LoraLoader's merged weights and of the split at its main and strong
    scales), interleaved over `repeats` rounds so that machine load hits every variant alike."""
    import comfy.model_management
    import comfy.patcher_extension
    import torch

    base = g.get("base")
    dev = base.load_device
    latent = g.get("latent")["samples"]
    x = torch.randn((2, *latent.shape[1:]), generator=torch.Generator().manual_seed(0)).to(dev)
    context = torch.cat([g.get("positive")[0][0], g.get("negative")[0][0]]).to(dev)
    extra: dict[str, Any] = {"y": torch.zeros((2, 2816), device=dev)} if g.model == "sdxl" else {}
    sigma = torch.full((2,), 5.0, device=dev)

    def one(patcher: Any, n: int = 2, role: str | None = None) -> None:
        options: dict[str, Any] = {"wrappers": comfy.patcher_extension.copy_nested_dicts(patcher.wrappers)}
        if role is not None:
            options[ROLE_KEY] = role
        patcher.model.apply_model(
            x[:n], sigma[:n], c_crossattn=context[:n], transformer_options=options,
            **{k: v[:n] for k, v in extra.items()},
        )  # fmt: skip

    def clock(fn: Callable[[], None]) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            return time.perf_counter() - start
        start = time.process_time()
        fn()
        return time.process_time() - start

    variants: dict[str, tuple[Any, str | None]] = {"base": (base, None)}
    if lora:
        split, _ = g.get("lora_split")
        variants["LoraLoader (merged)"] = (g.get("stock_lora"), None)
        variants["split, main scale"] = (split, "main")
        variants["split, strong scale"] = (split, "strong")
    times: dict[str, list[float]] = {name: [] for name in variants}
    batch2, batch1 = [], []
    with torch.inference_mode():
        for round_ in range(9 if g.model == "tiny" else max(repeats, 3)):
            comfy.model_management.load_models_gpu([base])
            if round_ == 0:
                one(base), one(base, 1)  # warm-up
            batch2.append(clock(lambda: one(base)))
            batch1.append(clock(lambda: (one(base, 1), one(base, 1))))
            for name, (patcher, role) in variants.items():
                comfy.model_management.load_models_gpu([patcher])  # patching / injecting here, untimed
                times[name].append(clock(lambda patcher=patcher, role=role: one(patcher, 2, role)))
    return Probes(
        statistics.median(batch2),
        statistics.median(batch1),
        {name: statistics.median(t) for name, t in times.items()},
    )


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------


def ratios(r: Result, base: Result) -> tuple[float, float, float, float]:
    """(wall per NFE, CPU per NFE, wall per row, CPU per row) of `r` over `base`."""
    c, b = r.counters, base.counters
    return (
        (r.wall / c.total_nfe) / (base.wall / b.total_nfe),
        (r.cpu_time / c.total_nfe) / (base.cpu_time / b.total_nfe),
        (r.wall / c.total_rows) / (base.wall / b.total_rows),
        (r.cpu_time / c.total_rows) / (base.cpu_time / b.total_rows),
    )


def table(results: list[Result]) -> str:
    by_name = {r.config.name: r for r in results}
    stock = by_name.get("stock KSampler")
    head = (
        "| config | wall s median (min) | CPU s | NFE | network passes (role: passes x batch) | wall ms / NFE "
        "| per NFE vs baseline: wall / CPU | per row vs baseline: wall / CPU "
        "| CPU ms in the network per row | CPU ms outside the network per NFE | peak MiB (vs stock) "
        "| weight patches: setup / loop | load_models_gpu: setup / loop; weight (re)loads in loop "
        "| host reads in loop (from w2sd code) |"
    )

    def row(r: Result) -> str:
        c = r.counters
        base = by_name.get(r.config.baseline) if r.config.baseline else (None if r is stock else stock)
        if base is None or base.error is not None:
            rel_nfe = rel_row = "1 (baseline)"
        else:
            w_nfe, c_nfe, w_row, c_row = ratios(r, base)
            tag = "" if base is stock else " (vs +LoRA)"
            rel_nfe, rel_row = f"{w_nfe:.3f} / {c_nfe:.3f}{tag}", f"{w_row:.3f} / {c_row:.3f}{tag}"
        delta = "" if stock is None or stock.error else f" ({(r.peak - stock.peak) / 2**20:+,.0f})"
        return (
            f"| {r.config.name} | {r.wall:.3f} ({min(r.times):.3f}) | {r.cpu_time:.3f} | {c.total_nfe} "
            f"| {c.passes_text()} | {1000 * r.wall / c.total_nfe:.1f} | {rel_nfe} | {rel_row} "
            f"| {1000 * r.network_per_row:.1f} | {1000 * r.host_per_nfe:.2f} "
            f"| {mib(r.peak)}{delta} | {c.weight_patches['setup']} / {c.weight_patches['loop']} "
            f"| {c.load_calls['setup']} / {c.load_calls['loop']}; {c.weight_moves['loop']} "
            f"| {c.host_reads_in_loop()} ({c.host_reads_in_loop('w2sd')}) |"
        )

    return results_table(head, results, row)


def findings(g: Graph, results: list[Result], probe: Probes, device: str) -> list[str]:
    ok = [r for r in results if r.error is None]
    by_name = {r.config.name: r for r in ok}
    out: list[str] = []
    stock = by_name["stock KSampler"]
    mismatches = [
        f"{r.config.name} counted {r.counters.total_nfe}, planned {r.config.planned_nfe(g.steps)}"
        for r in ok
        if r.config.planned_nfe is not None and r.config.planned_nfe(g.steps) != r.counters.total_nfe
    ]
    out.append(
        "- NFE: counted = planned for every row (T + 2*lambda with lambda = T-1; equal budget "
        "floor(T/2) + 2*floor(T/4) <= T)."
        if not mismatches
        else "- NFE MISMATCH: " + "; ".join(mismatches) + "."
    )
    lines = []
    for r in ok:
        if not r.config.name.startswith("W2SD") or r.config.baseline not in by_name:
            continue
        w_nfe, c_nfe, w_row, c_row = ratios(r, by_name[r.config.baseline])
        lines.append(f"{r.config.name}: per NFE {w_nfe:.3f} / {c_nfe:.3f}, per row {w_row:.3f} / {c_row:.3f}")
    out.append(
        "- Time per NFE and per network row vs the baseline (wall / CPU), target <= 1.05: "
        + "; ".join(lines)
        + "."
    )
    # The same split by CPU time: inside the network (per row) and outside it (per NFE), vs stock.
    s_net, s_host = stock.network_per_row, stock.host_per_nfe
    s_nfe_cpu = stock.cpu_time / stock.counters.total_nfe
    out.append(
        f"- Where the time goes (CPU): stock {1000 * s_net:.1f} ms in the network per row, {1000 * s_host:.2f} ms "
        "outside it per NFE. W2SD rows, outside-the-network CPU per NFE minus stock's (as a share of stock's CPU "
        "per NFE) and network CPU per row vs stock: "
        + "; ".join(
            f"{r.config.name}: {1000 * (r.host_per_nfe - s_host):+.2f} ms ({(r.host_per_nfe - s_host) / s_nfe_cpu:+.1%}), "
            f"network {r.network_per_row / s_net:.3f}"
            for r in ok
            if r.config.name.startswith("W2SD")
        )
        + "."
    )
    lora = [r for r in ok if r.config.name.startswith("W2SD LoRA")]
    stock_lora = by_name.get("stock KSampler + LoraLoader 0.8")
    if lora:
        lora_bytes = g.lora_bytes()
        out.append(
            "- LoRA pair: weight patch operations per run "
            + ", ".join(f"{sum(r.counters.weight_patches.values())}" for r in lora)
            + (
                ""
                if stock_lora is None
                else f" (stock LoraLoader: {stock_lora.counters.weight_patches['setup']} at load)"
            )
            + f"; peak over stock {', '.join(mib(r.peak - stock.peak) for r in lora)} MiB (resident before the run "
            + ", ".join(f"{(r.before - stock.before) / 2**20:+,.0f}" for r in lora)
            + f" MiB, the run's own rise {', '.join(mib(r.peak - r.before) for r in lora)} MiB vs stock's "
            + f"{mib(stock.peak - stock.before)} MiB); its UNet tensors are "
            f"{mib(lora_bytes)} MiB as stored ({mib(lora_bytes * 2)} MiB cast to fp32 for the CPU); 5% of stock's "
            f"peak is {mib(0.05 * stock.peak)} MiB."
        )
    two = [r for r in ok if r.config.name.startswith("W2SD two")]
    if two:
        out.append(
            f"- Two checkpoints: the second model's weights are {mib(g.second_bytes())} MiB; peak over stock "
            + ", ".join(mib(r.peak - stock.peak) for r in two)
            + " MiB (resident before the run "
            + ", ".join(f"{(r.before - stock.before) / 2**20:+,.0f}" for r in two)
            + " MiB); load_models_gpu calls before / in the loop "
            + ", ".join(f"{r.counters.load_calls['setup']} / {r.counters.load_calls['loop']}" for r in two)
            + "; weight (re)loads or unloads in the loop "
            + ", ".join(str(r.counters.weight_moves["loop"]) for r in two)
            + "; passes during which a side's model was not loaded "
            + ", ".join(str(r.counters.resident_missing) for r in two)
            + "."
        )
    gap = by_name.get("W2SD CFG gap 5.5/0, lambda=T-1")
    if gap is not None:
        out.append(
            f"- Pass skipping: CFG gap {gap.counters.passes_text()}: the cfg-0 weak side is one batch-1 pass "
            "(the unconditional prediction alone); cfg > 1 sides are one batch of 2 (cond + uncond together)."
        )
    sites: Counter = Counter()
    for r in ok:
        sites.update(r.counters.host_read_sites)
    out.append(
        f"- Host reads inside the loop: stock {stock.counters.host_reads_in_loop()}; "
        + ", ".join(
            f"{r.config.name} {r.counters.host_reads_in_loop()} ({r.counters.host_reads_in_loop('w2sd')} from w2sd code)"
            for r in ok
            if r.config.name.startswith("W2SD")
        )
        + ("" if not sites else "; w2sd sites: " + ", ".join(f"{k} x{v}" for k, v in sites.most_common()))
        + "."
    )
    if device == "cuda":
        out.append(
            "- CUDA sync debug mode warnings per run (setup and loop): "
            + ", ".join(f"{r.config.name} {r.counters.sync_warnings}" for r in ok)
            + "."
        )
    unit = "wall" if device == "cuda" else "CPU"
    if len(probe.lora) > 1:
        merged = probe.lora["LoraLoader (merged)"]
        out.append(
            f"- LoRA forward injection, one batch-2 pass ({unit}): "
            + ", ".join(f"{name} {1000 * t:.1f} ms" for name, t in probe.lora.items())
            + f"; the split costs {probe.lora['split, main scale'] / merged:.3f}x (main scale) and "
            f"{probe.lora['split, strong scale'] / merged:.3f}x (strong scale) of LoraLoader's merged weights."
        )
    out.append(
        f"- Batching: one pass of batch 2 (cond + uncond) {1000 * probe.batch2:.1f} ms vs two passes of batch 1 "
        f"{1000 * probe.two_batch1:.1f} ms ({unit}, {probe.two_batch1 / probe.batch2:.2f}x): ComfyUI batches a side's cond and uncond. Across "
        "roles nothing can share a batch: the weak inversion's input is the strong step's output and the main "
        "step starts from the reflected latent, so strong -> weak -> main are sequential in every window step."
    )
    out.append(
        f"- Stock: {1000 * stock.wall / stock.counters.total_nfe:.1f} ms wall per NFE, "
        f"{1000 * stock.wall / stock.counters.total_rows:.1f} ms per network row."
    )
    return out


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--model", nargs="+", choices=("tiny", "sd15", "sdxl"), help="default: CPU tiny sd15; CUDA sd15 sdxl"
    )
    parser.add_argument(
        "--steps", type=int, help="sampling steps T (default: tiny 20; full size 3 on CPU, 20 on CUDA)"
    )
    parser.add_argument(
        "--size",
        type=int,
        help="image size in px (default: tiny 64; full size 256 on CPU; CUDA sd15 512, sdxl 1024)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="timed runs per config, median reported (default: tiny 5, full size 2 on CPU / 5 on CUDA)",
    )
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch.set_num_threads for the whole run (default 1: on the shared 2-core dev machine two threads ran "
        "up to 9x slower; use all cores on a quiet machine)",
    )  # fmt: skip
    parser.add_argument("--lora-rank", type=int, default=32, help="rank of the full-size random LoRA")
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--scheduler", default="karras")
    parser.add_argument(
        "--configs", help="regular expression: only configs whose name matches (stock rows always run)"
    )
    parser.add_argument(
        "--previews", action="store_true",
        help="latent2rgb previews on (ComfyUI's default is none): the progress callback then decodes one per evaluation",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny only, 8 steps, 3 repeats")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--build", choices=tuple(UNET_CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--build-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.build:
        build_full_size(args.build, args.build_out, args.lora_rank)
        return 0

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Before torch starts OpenMP: idle threads sleep instead of spinning against other processes.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    models = args.model or (
        ["tiny"] if args.quick else (["tiny", "sd15"] if args.device == "cpu" else ["sd15", "sdxl"])
    )
    command = "python benchmarks/perf.py " + " ".join(argv if argv is not None else sys.argv[1:])

    # ComfyUI's own text-encoder dtype: the conds (and the memory they hold) as a user's run has them.
    with comfyui.with_fixtures("w2sd_perf_", args.device, fp32_text_enc=False) as c:
        if args.previews:
            import comfy.cli_args

            comfy.cli_args.args.preview_method = comfy.cli_args.LatentPreviewMethod.Latent2RGB
        for model in models:
            full_cpu = model != "tiny" and args.device == "cpu"
            steps = args.steps or (8 if args.quick else 3 if full_cpu else 20)
            size = args.size or (256 if full_cpu else {"tiny": 64, "sd15": 512, "sdxl": 1024}[model])
            repeats = args.repeats or (3 if args.quick else 2 if full_cpu else 5)
            selected = [
                cfg for cfg in configs()
                if (cfg.baseline is None or args.configs is None or re.search(args.configs, cfg.name))
                and not ("equal budget" in cfg.name and steps // 4 == 0)
            ]  # fmt: skip
            load_before = load_average()
            started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            print(
                f"\n== {model}, {args.device}, {steps} steps, {size} px, {repeats} repeats; load average {load_before}",
                flush=True,
            )
            g = Graph(c, model, size, steps, args.lora_rank, args.sampler, args.scheduler)
            results = measure(g, selected, repeats, args.device)
            probe = probes(
                g, repeats, args.device, lora=any(r.config.name.startswith("W2SD LoRA") for r in results)
            )
            load_after = load_average()
            title = {
                "tiny": "tiny fixtures (SD1.5-shaped mini UNet 26M params, its fine-tune, rank-4 LoRA)",
                "sd15": f"full-size SD1.5 UNet, random weights (860M params), rank-{args.lora_rank} LoRA",
                "sdxl": f"full-size SDXL UNet, random weights (2.6B params), rank-{args.lora_rank} LoRA",
            }[model]
            text = "\n".join(
                [
                    f"## {model} on {args.device}: {title}",
                    "",
                    f"{steps} steps ({args.sampler}/{args.scheduler}), {size}x{size} px (latent {size // 8}x{size // 8}), "
                    f"batch 1, cfg {CFG}, seed {SEED}, previews {'latent2rgb' if args.previews else 'off'}; "
                    f"median of {repeats} timed runs after one warm-up per config.",
                    f"Machine: {machine(args.device, args.threads)}; ComfyUI {comfyui_version(c.comfyui)}; {code_version()}. "
                    f"Load average (1/5/15 min) {load_before} before, {load_after} after. {started}.",
                    f"Peak memory: {PeakMemory(args.device).method}, measured in order (models loaded when first needed). "
                    f"Command: `{command}`",
                    "",
                    table(results),
                    "",
                    *findings(g, results, probe, args.device),
                ]
            )
            print("\n" + text, flush=True)
            if not args.no_write:
                write_section(args.out, f"{model}:{args.device}", text, HEADER)
                print(f"\nwritten to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
