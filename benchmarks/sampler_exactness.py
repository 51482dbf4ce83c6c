"""Does W2SD give back the plain sampler when strong == weak? Every sampler_name of the core, in-process.

W2SD (Weak-to-Strong Diffusion with Reflection, arXiv 2502.00473) with the same model and cfg on both
sides and an exact inversion is the plain sampler: the reflection goes down and back up to the same
latent. Whatever is left is what cutting the sampler into one-step calls inside the window costs (history
restarts, per-step noise, the sampler's own handling of a short schedule). Set-up (issue 14): the W2SD
KSampler with a W2SD Weak/Strong Model Pair at the sampler's cfg on both sides, `fixed_point` inversion
with 10 iterations, `reflect_steps` -1 (every step but the last), 20 steps, the simple scheduler, against
the stock KSampler with the same seed and settings.

Columns: relative difference of the output latent to stock, ||w2sd - stock|| / ||stock|| over the whole
batch; the batch mean and std of the W2SD latent relative to stock's (the statistics that judge
ancestral/SDE samplers, whose noise inside the window is their own per step, `seed + step`).

Models: the test fixtures (tests/fixtures/checkpoints.py): SD3_MINI (SD3 MMDiT, flow / CONST) and
SD15_MINI (SD1.5-shaped UNet, EPS), random weights, 64 x 64 px.

    .venv/bin/python benchmarks/sampler_exactness.py                 # both models, every sampler
    .venv/bin/python benchmarks/sampler_exactness.py --models sd3 --samplers uni_pc euler --steps 8

Writes the table to stdout and into benchmarks/results/sampler_exactness.md (unless --no-write). tests/nodes/test_sampler_exactness.py pins the bounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "tests", ROOT / "tools", ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from comfy_server import comfyui_dir  # noqa: E402
from common import comfyui  # noqa: E402
from fixtures.checkpoints import SD3_MINI, SD15_MINI, comfyui_version  # noqa: E402

MODELS = {"sd3": (SD3_MINI, 4.0), "sd15": (SD15_MINI, 5.5)}  # checkpoint, cfg
RESULTS = ROOT / "benchmarks" / "results" / "sampler_exactness.md"


def every_sampler_name(comfy_samplers) -> list[str]:  # type: ignore[no-untyped-def]
    return list(comfy_samplers.KSampler.SAMPLERS)


def measure(c, ckpt, cfg, samplers, steps, scheduler, batch, iters, seed=1):  # type: ignore[no-untyped-def]
    import torch

    model, clip, _vae = c.execute("CheckpointLoaderSimple", ckpt_name=ckpt)
    positive = c.execute("CLIPTextEncode", clip=clip, text="a red fox in the snow")[0]
    negative = c.execute("CLIPTextEncode", clip=clip, text="blurry")[0]
    latent = c.execute("EmptyLatentImage", width=64, height=64, batch_size=batch)[0]
    pair = c.execute("W2SDModelPair", strong_cfg=cfg, weak_cfg=cfg)[0]
    rows = []
    for sampler in samplers:
        t0 = time.perf_counter()
        stock = c.nodes.common_ksampler(
            model, seed, steps, cfg, sampler, scheduler, positive, negative, latent
        )[0]["samples"]
        t1 = time.perf_counter()
        w2sd = c.execute(
            "W2SDKSampler", model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
            scheduler=scheduler, positive=positive, negative=negative, latent_image=latent, denoise=1.0,
            pair=pair, mode="W2SD", window="steps", start_percent=0.0, end_percent=0.5, reflect_steps=-1,
            inversion="fixed_point", inversion_iters=iters, equal_budget=False,
        )[0]["samples"]  # fmt: skip
        t2 = time.perf_counter()
        s, w = stock.double(), w2sd.double()
        rel = ((w - s).norm() / s.norm()).item()
        rows.append(
            {
                "sampler": sampler,
                "rel": rel,
                "mean": (w.mean() - s.mean()).item() / s.std().item(),
                "std": w.std().item() / s.std().item() - 1,
                "finite": bool(torch.isfinite(w).all()),
                "stock_s": t1 - t0,
                "w2sd_s": t2 - t1,
            }
        )
        r = rows[-1]
        print(
            f"  {sampler:32s} rel {rel:8.4f}  mean {r['mean']:+.4f}  std {r['std']:+.4f}  "
            f"({r['stock_s']:.1f} s / {r['w2sd_s']:.1f} s)",
            flush=True,
        )
    return rows


def table(results: dict[str, list[dict]]) -> str:
    names = list(results)
    head = "| sampler | " + " | ".join(
        f"{n}: rel. diff. | {n}: mean diff. / std | {n}: std ratio - 1" for n in names
    )
    lines = [head + " |", "|---|" + "---:|" * (3 * len(names))]
    for i, row in enumerate(results[names[0]]):
        cells = []
        for n in names:
            r = results[n][i]
            cells += [f"{r['rel']:.4f}", f"{r['mean']:+.4f}", f"{r['std']:+.4f}"]
        lines.append(f"| {row['sampler']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--samplers", nargs="+", default=None, help="default: every sampler_name of the core")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scheduler", default="simple")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=10, help="fixed-point inversion iterations")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with comfyui.with_fixtures("w2sd_exactness_") as c:
        import comfy.samplers

        samplers = args.samplers or every_sampler_name(comfy.samplers)
        started = time.perf_counter()
        results = {}
        for name in args.models:
            ckpt, cfg = MODELS[name]
            print(f"{name} ({ckpt}, cfg {cfg}):", flush=True)
            results[name] = measure(
                c, ckpt, cfg, samplers, args.steps, args.scheduler, args.batch, args.iters
            )
        elapsed = time.perf_counter() - started
    text = table(results)
    print(text)
    if args.no_write:
        return
    import torch

    section = (
        f"## {', '.join(args.models)}: {len(samplers)} samplers, {args.steps} steps, {args.scheduler}, batch {args.batch}\n\n"
        f"`.venv/bin/python benchmarks/sampler_exactness.py {' '.join(sys.argv[1:])}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d} (ComfyUI {comfyui_version(comfyui_dir())}, torch {torch.__version__}, "
        f"{platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, {args.threads} thread(s), "
        f"{elapsed / 60:.0f} min).\n\n{text}\n"
    )
    write_section(section, f"## {', '.join(args.models)}: {len(samplers)} samplers,")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


HEADER = """# W2SD with strong == weak vs the stock KSampler, every sampler_name

Set-up (issue 14): W2SD KSampler with a W2SD Weak/Strong Model Pair at the sampler's cfg on both sides
(strong == weak), `fixed_point` inversion with 10 iterations, reflect_steps -1 (every step but the last),
against the stock KSampler with the same seed (1) and settings, 64 x 64 px. Models: the test fixtures
with random weights (sd3 = SD3_MINI, flow/CONST, cfg 4; sd15 = SD15_MINI, EPS, cfg 5.5), not trained
models.

rel. diff. = ||W2SD - stock|| / ||stock|| over the batch; mean diff. / std = (mean(W2SD) - mean(stock)) /
std(stock); std ratio - 1 = std(W2SD) / std(stock) - 1. Ancestral/SDE samplers draw their own noise per
step inside the window (`seed + step`), so only their statistics are expected to match; multistep solvers
restart their history each step inside the window; uni_pc / uni_pc_bh2 take UniPC's first-order step
(an Euler step) on every one-step call (ComfyUI's UniPC takes no step on a one-step schedule).
"""


def write_section(section: str, prefix: str) -> None:
    """Replace the section starting with `prefix` in the results file (or append it)."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    parts = text.split("\n## ")
    head, sections = parts[0], ["## " + p for p in parts[1:]]
    sections = [p for p in sections if not p.startswith(prefix)] + [section]
    RESULTS.write_text(head.rstrip("\n") + "\n\n" + "\n".join(p.rstrip("\n") + "\n" for p in sections))


if __name__ == "__main__":
    main()
