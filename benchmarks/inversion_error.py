"""How far each weak inversion is from exact, measured directly: strong == weak, every step reflected.

With the same model and cfg on both sides, a reflection should go down and back up to the latent it
started from, and W2SD should give back the plain sampler. What is left is the inversion's own error
(the explicit inversion's grows with the step; the fixed-point iteration converges only where the map
`x~ -> x + h * d(x~, sigma)` contracts, i.e. roughly where h/sigma * ||I - dD/dx|| < 1, which large
steps break) plus, for multistep solvers, what restarting their history at every reflected step costs.
`warm_start` is exact at strong == weak at any step size (the weak evaluation is made where the strong
one was, so it undoes the strong step exactly); its column therefore isolates the history restart, and
with `keep_sampler_history` (the sampler runs once, reflecting at its own steps) nothing should be left.

Set-up: the W2SD KSampler with a W2SD Weak/Strong Model Pair at the sampler's cfg on both sides
(strong == weak), `reflect_steps` -1 (every step but the last), against the stock KSampler with the same
seeds, on the strong trained digit model of a family of benchmarks/learned_weights (ComfyUI checkpoints,
8x8 latents; `--family` as benchmarks/learned.py's: flow by default, eps, v, eps_distilled), with euler on
the family's scheduler and dpmpp_2m karras.
Column: ||W2SD - stock|| / ||stock|| over the batch of output latents. For scale, "stock euler, same
schedule" is the distance from the stock sampler to stock euler on the same scheduler: what a multistep
solver that restarted its history at every step (and so took Euler steps) would be off by.

    .venv/bin/python benchmarks/inversion_error.py                     # 4, 8, 10, 20 steps
    .venv/bin/python benchmarks/inversion_error.py --steps 4 8 --batch 8 --no-write
    .venv/bin/python benchmarks/inversion_error.py --family eps        # the SD1.5 EPS UNet

Writes the table to stdout and into benchmarks/results/inversion_error.md (unless --no-write).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tools"), str(ROOT / "tests")]

import learned  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "inversion_error.md"
INVERSIONS = {  # column -> the W2SD KSampler's inversion inputs
    "explicit": {"inversion": "explicit", "inversion_iters": 0},
    "fixed_point 1 (default)": {"inversion": "fixed_point", "inversion_iters": 1},
    "fixed_point 3": {"inversion": "fixed_point", "inversion_iters": 3},
    "fixed_point 10": {"inversion": "fixed_point", "inversion_iters": 10},
    "warm_start": {"inversion": "warm_start", "inversion_iters": 0},
    "warm_start, keep_sampler_history": {
        "inversion": "warm_start", "inversion_iters": 0, "keep_sampler_history": True,
    },
}  # fmt: skip
SAMPLERS = ("euler", "dpmpp_2m_karras")
"""The samplers users pick (learned.py's names: euler on the family's own scheduler)."""


TITLES = {"flow": "Flow", "eps": "EPS", "v": "v-prediction", "eps_distilled": "Distilled EPS"}
"""Section titles per family (a family missing here gets its own name)."""


def rel(a: Any, b: Any) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def measure(s: learned.Session, ckpt: str, steps_list: list[int], batch: int, seed: int) -> list[dict]:
    model, clip, _vae = s.checkpoint(ckpt)
    positive = s.encode(clip, s.names.RAW_PROMPT)
    negative = s.encode(clip, s.names.NEGATIVE_PROMPT)
    cfg = s.names.PAIRS["checkpoints"]["cfg"]
    latent_node = learned.FAMILIES[s.family][0]
    latent = s.c.execute(latent_node, width=learned.SIZE, height=learned.SIZE, batch_size=batch)[0]
    pair = s.c.execute("W2SDModelPair", strong_cfg=cfg, weak_cfg=cfg)[0]
    rows = []
    for steps in steps_list:
        for sampler, scheduler in (learned.sampler_and_scheduler(name, s.family) for name in SAMPLERS):
            stock, euler = (
                s.c.nodes.common_ksampler(
                    model, seed, steps, cfg, name, scheduler, positive, negative, latent
                )[0]["samples"]
                for name in (sampler, "euler")
            )
            row = {
                "steps": steps,
                "sampler": f"{sampler} {scheduler}",
                "stock euler, same schedule": rel(euler, stock),
            }
            for column, inversion in INVERSIONS.items():
                out = s.c.execute(
                    "W2SDKSampler", model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
                    scheduler=scheduler, positive=positive, negative=negative, latent_image=latent,
                    denoise=1.0, pair=pair, mode="W2SD", window="steps", start_percent=0.0,
                    end_percent=0.5, reflect_steps=-1, equal_budget=False, **inversion,
                )[0]["samples"]  # fmt: skip
                row[column] = rel(out, stock)
            rows.append(row)
            print(
                "  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{v}" for k, v in row.items())
            )
    return rows


def table(rows: list[dict]) -> str:
    columns = ["stock euler, same schedule", *INVERSIONS]
    lines = [
        "| steps | sampler | " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for r in rows:
        lines.append(
            f"| {r['steps']} | {r['sampler']} | " + " | ".join(f"{r[c]:.4f}" for c in columns) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 10, 20])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=learned.SEED)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--family", choices=list(learned.FAMILIES), default="flow", help="the learned models")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    s = learned.start_session(stand_in=False, family=args.family)
    ckpt = s.names.pairs(args.family)["checkpoints"]["strong"]
    print(f"{args.family} digits ({ckpt}):", flush=True)
    rows = measure(s, ckpt, args.steps, args.batch, args.seed)
    text = table(rows)
    print(text)
    if args.no_write:
        return
    section = (
        f"## {TITLES.get(args.family, args.family)} digit model ({ckpt}), {', '.join(map(str, args.steps))} steps, batch "
        f"{args.batch}\n\n"
        f"`.venv/bin/python benchmarks/inversion_error.py {' '.join(sys.argv[1:])}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC (ComfyUI {learned.comfyui_version()}, torch "
        f"{torch.__version__}, {platform.machine()} CPU, {os.cpu_count()} cores, {args.threads} thread(s), "
        f"{(time.perf_counter() - started) / 60:.1f} min).\n\n{text}\n"
    )
    head = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Inversion error: W2SD with strong == weak against stock\n\n" + __doc__.split("\n\n")[1] + "\n"
    )
    RESULTS.write_text(head.rstrip("\n") + "\n\n" + section)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
