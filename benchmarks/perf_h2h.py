"""W2SD or autoguidance: what each costs on the same graphs, side by side in one run (issue #26).

The same full-size random-weight UNet, prompt, seed, steps and cfg as benchmarks/perf.py (the models,
counters and timing of benchmarks/common/, shared with it), for the two-model set-ups a user would
otherwise wire to a guider:

- a LoRA on one side: W2SD's LoRA split (W2SDLoraSplit, one base, its scales injected per evaluation)
  against ComfyUI-AutoGuidance (good = base + LoraLoaderModelOnly 0.8, bad = the base) in each of its
  three swap modes: shared_safe_low_vram and shared_fast_extra_vram swap the LoRA's weights in and out of
  the one shared model every step; dual_models_2x_vram needs two model instances, so its good side is a
  second load of the UNet with the LoRA; and the core's DualModelGuider (ComfyUI 0.29.0) on the same pair;
- two checkpoints (a second load of the UNet: a separate model in memory): W2SDModelPair against
  AutoGuidance (dual_models_2x_vram) and DualModelGuider.

Reported per config: wall time (median), network passes and rows (batch elements through the UNet), time
per pass and per row, each as a ratio to its stock baseline (stock KSampler; stock + LoraLoader for the LoRA
rows), peak memory, weight patches (`comfy.lora.calculate_weight`) and model loads / weight moves before
and inside the sampling loop. W2SD reflects every step but the last (the paper code's window); both
guiders run at weight 2 (AutoGuidance w_autoguide 2, its default sequential_delta mode).

    .venv/bin/python benchmarks/perf_h2h.py --autoguidance PATH                    # sd15, CPU, 3 steps, 256 px
    W2SD_COMFYUI_VERSION=0.29.0 .venv-0.29.0/bin/python benchmarks/perf_h2h.py --autoguidance PATH  # + DualModelGuider

A guider that is not installed (no --autoguidance / $W2SD_AUTOGUIDANCE; a core without DualModelGuider) is
skipped with a message. Writes its section into benchmarks/results/perf_h2h.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "tests", ROOT / "tools", ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from common import comfyui  # noqa: E402
from common.graph import CFG, LORA_SCALES, SEED, Config, Graph  # noqa: E402
from common.graph import configs as perf_configs  # noqa: E402
from common.memory import PeakMemory  # noqa: E402
from common.report import code_version, load_average, machine, mib, write_section  # noqa: E402
from common.timing import Result, measure, results_table  # noqa: E402
from fixtures.checkpoints import comfyui_version  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "perf_h2h.md"
HEADER = (
    "# W2SD or autoguidance: what each costs on the same graphs\n\n"
    "Made by `benchmarks/perf_h2h.py` (see its docstring). Every table is one run; ratios are "
    "taken within the run. Sections are replaced when the same model/device/core is re-run.\n\n"
)
AUTOGUIDANCE = "AutoGuidanceCFGGuider"
SWAP_MODES = ("shared_safe_low_vram", "shared_fast_extra_vram", "dual_models_2x_vram")
WEIGHT = 2.0
STOCK, STOCK_LORA = "stock KSampler", "stock KSampler + LoraLoader 0.8"


def second_lora(g: Graph) -> Any:
    """The LoRA at the stock scale on the second model instance (what dual_models_2x_vram needs)."""
    return g.cached(
        "second_lora",
        lambda: g.c.execute(
            "LoraLoaderModelOnly", model=g.get("second"), lora_name=g.lora_name,
            strength_model=LORA_SCALES["main"],
        )[0],
    )  # fmt: skip


def autoguidance(g: Graph, good: Any, bad: Any, swap_mode: str) -> Any:
    guider = g.c.execute(
        AUTOGUIDANCE, good_model=good, bad_model=bad, positive=g.get("positive"), negative=g.get("negative"),
        cfg=CFG, w_autoguide=WEIGHT, swap_mode=swap_mode, debug_swap=False, debug_metrics=False,
    )[0]  # fmt: skip
    return g.guided(good, guider)


def dual_model(g: Graph, good: Any, bad: Any) -> Any:
    guider = g.c.execute(
        "DualModelGuider", model=good, model_negative=bad, positive=g.get("positive"),
        negative=g.get("negative"), cfg=WEIGHT,
    )[0]  # fmt: skip
    return g.guided(good, guider)


def configs(ag: bool, dmg: bool) -> list[Config]:
    """Baselines first, then each set-up's W2SD row beside the guiders' rows."""
    stock, stock_lora, w2sd_lora, w2sd_two = (
        next(c for c in perf_configs() if c.name == name)
        for name in (
            STOCK, STOCK_LORA, "W2SD LoRA split +1.5/-1.5, lambda=T-1", "W2SD two checkpoints, lambda=T-1"
        )
    )  # fmt: skip
    out = [stock, stock_lora, w2sd_lora]

    def ag_lora(swap: str):
        def prepare(g: Graph):
            good = second_lora(g) if swap == "dual_models_2x_vram" else g.get("stock_lora")
            bad = g.get("base")
            return (lambda: autoguidance(g, good, bad, swap)), (good.model, bad.model)

        return prepare

    def ag_two(g: Graph):
        good, bad = g.get("second"), g.get("base")
        return (lambda: autoguidance(g, good, bad, "dual_models_2x_vram")), (good.model, bad.model)

    def dmg_lora(g: Graph):
        good, bad = g.get("stock_lora"), g.get("base")
        return (lambda: dual_model(g, good, bad)), (good.model,)

    def dmg_two(g: Graph):
        good, bad = g.get("second"), g.get("base")
        return (lambda: dual_model(g, good, bad)), (good.model, bad.model)

    if ag:
        out += [
            Config(f"AutoGuidance LoRA 0.8 / base, {swap}", STOCK_LORA, ag_lora(swap), settle=True)
            for swap in SWAP_MODES
        ]
    if dmg:
        out.append(Config("DualModelGuider LoRA 0.8 / base", STOCK_LORA, dmg_lora, settle=True))
    out.append(w2sd_two)
    if ag:
        out.append(Config("AutoGuidance two checkpoints, dual_models_2x_vram", STOCK, ag_two))
    if dmg:
        out.append(Config("DualModelGuider two checkpoints", STOCK, dmg_two))
    return out


def table(results: list[Result]) -> str:
    by_name = {r.config.name: r for r in results}
    head = (
        "| config | wall s median | vs its baseline | network passes (x batch) | rows | ms / pass | ms / row "
        "| per row vs baseline | peak MiB | weight patches: setup / loop | load_models_gpu: setup / loop "
        "| weight (re)loads / unloads in loop |"
    )

    def row(r: Result) -> str:
        c = r.counters
        passes = sum(c.passes.values())
        base = by_name.get(r.config.baseline or "")
        if base is None or base.error is not None:
            wall_ratio = row_ratio = "baseline"
        else:
            wall_ratio = f"{r.wall / base.wall:.2f}x"
            row_ratio = f"{(r.wall / c.total_rows) / (base.wall / base.counters.total_rows):.3f}"
        batches = ", ".join(f"{n}x{b}" for (_, b), n in sorted(c.passes.items()))
        return (
            f"| {r.config.name} | {r.wall:.2f} | {wall_ratio} | {passes} ({batches}) | {c.total_rows} "
            f"| {1000 * r.wall / passes:.0f} | {1000 * r.wall / c.total_rows:.0f} | {row_ratio} "
            f"| {mib(r.peak)} | {c.weight_patches['setup']} / {c.weight_patches['loop']} "
            f"| {c.load_calls['setup']} / {c.load_calls['loop']} | {c.weight_moves['loop']} |"
        )

    return results_table(head, results, row)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("tiny", "sd15", "sdxl"), default="sd15")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--steps", type=int, default=None, help="default: 3 on the CPU (full size), 20 on CUDA")
    p.add_argument("--size", type=int, default=None, help="default: 256 px on the CPU, 512 on CUDA")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lora-rank", type=int, default=32)
    p.add_argument(
        "--configs", help="regular expression: only configs whose name matches (baselines always run)"
    )
    p.add_argument(
        "--autoguidance", type=Path, default=os.environ.get("W2SD_AUTOGUIDANCE"),
        help="a ComfyUI-AutoGuidance checkout, loaded as a custom node ($W2SD_AUTOGUIDANCE)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    cpu = args.device == "cpu" and args.model != "tiny"
    steps = args.steps or (3 if cpu else 20)
    size = args.size or (256 if cpu else 512 if args.model != "tiny" else 64)
    with comfyui.with_fixtures("w2sd_perf_h2h_", args.device, fp32_text_enc=False) as c:
        notes, peers = [], []
        ag = args.autoguidance is not None
        if ag:
            peers.append(comfyui.load_peer(c, args.autoguidance, AUTOGUIDANCE))  # raises if it does not load
        else:
            notes.append("AutoGuidance rows skipped: no ComfyUI-AutoGuidance checkout (--autoguidance PATH).")
        dmg = "DualModelGuider" in c.nodes.NODE_CLASS_MAPPINGS
        version = comfyui_version(c.comfyui)
        if not dmg:
            notes.append(f"DualModelGuider rows skipped: ComfyUI {version} has no DualModelGuider node.")
        for note in notes:
            print(f"[W2SD] {note}", flush=True)
        selected = [
            cfg for cfg in configs(ag, dmg)
            if cfg.baseline is None or args.configs is None or re.search(args.configs, cfg.name)
        ]  # fmt: skip
        g = Graph(c, args.model, size, steps, args.lora_rank, "euler", "karras")
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        load_before = load_average()
        results = measure(g, selected, args.repeats, args.device)
        text = "\n".join(
            [
                f"## {args.model} on {args.device}, {steps} steps, {size} px",
                "",
                f"euler/karras, batch 1, cfg {CFG}, seed {SEED}, guider weight {WEIGHT:g}; median of "
                f"{args.repeats} timed runs after one warm-up per config (repeats interleaved across configs).",
                f"Machine: {machine(args.device, args.threads)}; ComfyUI {version}; {code_version()}; "
                f"{'; '.join(peers) or 'no AutoGuidance'}. Load average {load_before} before, "
                f"{load_average()} after. {started}. Peak memory: {PeakMemory(args.device).method}, "
                "in order (models loaded when first needed).",
                f"Command: `benchmarks/perf_h2h.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
                *([""] + [f"- {n}" for n in notes] if notes else []),
                "",
                table(results),
            ]
        )
        print("\n" + text, flush=True)
        if not args.no_write:
            write_section(args.out, f"{args.model}:{args.device}:{version}", text, HEADER)
            print(f"\nwritten to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
