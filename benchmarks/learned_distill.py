"""Progressive distillation (Salimans & Ho 2022, arXiv:2202.00512) of the EPS digit UNets to 4-step students.

The miniature of the distilled few-step models users run (SDXL Lightning, DMD2, Hyper-SD: euler, the
`sgm_uniform` schedule, cfg 1). The shipped EPS strong and weak UNets (benchmarks/learned_train_eps.py) are
each the teacher of their own student, in ROUNDS that halve the steps of ComfyUI's sgm_uniform schedule at the
model's sigmas: 16 -> 8 -> 4. sgm_uniform(N)'s sigmas are exactly every other point of sgm_uniform(2N)'s
(both are uniform in timestep from sigma_max's, zero appended; checked in ComfyUI 0.3.75's comfy/samplers.py),
so each round's grid is ComfyUI's own.

In a round, the student (initialised from its teacher, which it then replaces) learns to land ONE euler step
from sigma_i to sigma_{i+2} of the teacher's grid where TWO teacher euler steps land. With k-diffusion's
EPS conventions (x = x0 + sigma eps, euler x' = x + (s' - s)(x - D(x, s)) / s) that is the denoised target
x0* = (x s' - x_teacher s) / (s' - s) (x_teacher itself when s' = 0). The loss is on the denoised output
with the truncated-SNR weight max(1 / sigma^2, 1) (the paper's): the eps loss at sigma <= 1, the x0 loss
above, where an eps loss (weight 1 / sigma^2 on x0) would all but ignore the first, largest step
(1 / 213 at sigma_max against 6 at the smallest start).

Starting points: the training digits (learned_train_eps.Batches: same prompts, prompt dropout, each side's
own class shares, so a student keeps its teacher's class ratio) noised to one of the student grid's sigmas,
drawn uniformly. Conditioned on the training's prompt embeddings at cfg 1. The trainer's machinery: AdamW,
warm-up and cosine decay, the digit channel weighed as much as the other 3, EMA (the student a round hands
on and saves is the average), fixed seeds, 1 torch thread.

After each round `evaluate` samples the student alone as learned_train_eps.evaluate does, at its own steps
with euler / sgm_uniform; each teacher is judged the same way at 4 and at 20 steps. Writes fp16 weights at
EPS_CHANNELS (tools/learned_models.py widens them as the EPS ones) and manifest_eps_distilled.json:

    .venv/bin/python benchmarks/learned_distill.py --comfyui .comfyui/0.3.75
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as learned_train_eps.py: shared cores

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tools"), str(ROOT / "tests")]

import judges  # noqa: E402
import learned_models as lm  # noqa: E402
import learned_train as flow  # noqa: E402
import learned_train_eps as eps_train  # noqa: E402
from fixtures import checkpoints as fx  # noqa: E402

SCHEDULER = "sgm_uniform"
ROUNDS = (16, 8, 4)
"""The teacher's steps in the first round, then each student's: every round halves them."""
STEPS = 1200
"""Training steps per round (2 rounds per model). Measured on the 2-core dev machine, 1 thread at nice 10
beside two benchmark processes: 0.23-0.29 s/step (600 steps; 2 teacher passes and the student's forward and
backward at batch 32) and 1.6 s per judging pass of 200 samples (288 passes). 4 x 1200 steps 1100-1400 s
+ judging 470 s: about 27-31 minutes of one core."""
LR = 3e-4
SEEDS = {"strong": 11, "weak": 12}
TEACHER_STEPS = (4, 20)
"""Steps the teachers are judged at: the students' budget and learned_train_eps.EVAL_STEPS."""
EVAL_SAMPLES = eps_train.EVAL_SAMPLES


def euler_step(
    model: Any, x: torch.Tensor, s: torch.Tensor, s_next: torch.Tensor, cond: torch.Tensor
) -> torch.Tensor:
    """k-diffusion's euler step x + (s' - s)(x - D(x, s)) / s, per sample, through ComfyUI's model."""
    denoised = model.apply_model(x, s, c_crossattn=cond)
    return x + ((s_next - s) / s).view(-1, 1, 1, 1) * (x - denoised)


def distillation_target(
    teacher: Any,
    x: torch.Tensor,
    s: torch.Tensor,
    s_mid: torch.Tensor,
    s_next: torch.Tensor,
    cond: torch.Tensor,
) -> torch.Tensor:
    """The x0* whose euler step s -> s_next lands where the teacher's two (s -> s_mid -> s_next) do:
    x0* = (x s_next - x_teacher s) / (s_next - s), which is x_teacher where s_next = 0."""
    x_teacher = euler_step(teacher, euler_step(teacher, x, s, s_mid, cond), s_mid, s_next, cond)
    s, s_next = s.view(-1, 1, 1, 1), s_next.view(-1, 1, 1, 1)
    return (x * s_next - x_teacher * s) / (s_next - s)


def distillation_loss(
    student: Any, teacher: Any, b: dict[str, torch.Tensor], grid: torch.Tensor
) -> torch.Tensor:
    """The student's denoised output against distillation_target, weighted by the truncated SNR
    max(1 / sigma^2, 1); `b["sigma"]` is one of grid[::2], the student's grid."""
    i = (b["sigma"][:, None] == grid[None, :]).nonzero()[:, 1]
    s = grid[i]
    x = b["x0"] + s.view(-1, 1, 1, 1) * b["noise"]
    with torch.no_grad():
        target = distillation_target(teacher, x, s, grid[i + 1], grid[i + 2], b["cond"])
    denoised = student.apply_model(x, s, c_crossattn=b["cond"])
    err = (1 / s**2).clamp(min=1).view(-1, 1, 1, 1) * (denoised - target) ** 2
    return err[:, 0].mean() + err[:, 1:].mean()


def distill(
    model: Any, batches: eps_train.Batches, side: str, share: float, teacher_steps: int, seed: int
) -> list[float]:
    """One round: `model`, initialised from its teacher, learns the teacher's `teacher_steps`-step euler /
    sgm_uniform sampling in half the steps; it keeps the EMA weights (learned_train.train's schedule)."""
    import comfy.samplers

    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    grid = comfy.samplers.calculate_sigmas(model.model_sampling, SCHEDULER, teacher_steps).float()
    batches.sigmas = grid[:-1:2]  # the student's starting sigmas
    params = [p for p in model.diffusion_model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    losses, started = [], time.monotonic()
    for step in range(STEPS):
        lr = LR * min(1.0, (step + 1) / 20) * (0.55 + 0.45 * math.cos(math.pi * step / STEPS))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = distillation_loss(model, teacher, batches(gen, flow.class_probs(share)), grid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(flow.EMA_DECAY, (1 + step) / (10 + step))
            for e, p in zip(ema, params, strict=True):
                e.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == STEPS:
            elapsed = time.monotonic() - started
            print(
                f"{side} {teacher_steps} -> {teacher_steps // 2} step {step + 1}/{STEPS} "
                f"loss {sum(losses[-100:]) / len(losses[-100:]):.4f} ({elapsed:.0f} s, "
                f"{elapsed / (step + 1):.3f} s/step)",
                flush=True,
            )
    flow.swap(params, ema)
    return losses


@torch.no_grad()
def evaluate(model: Any, batches: eps_train.Batches, label: str, steps: int) -> dict[str, float]:
    """learned_train_eps.evaluate (same seed, samples and judges) at `steps` euler steps of sgm_uniform.
    That function's "normal" schedule is fixed, and its file is hashed into the EPS weights: copied here."""
    import comfy.samplers

    n, gen = EVAL_SAMPLES, torch.Generator().manual_seed(100)
    sigmas = comfy.samplers.calculate_sigmas(model.model_sampling, SCHEDULER, steps).float()
    classes = torch.arange(n) % 10

    def sample(which: torch.Tensor, cfg: float) -> torch.Tensor:
        x = torch.randn(n, 4, 8, 8, generator=gen) * (1 + sigmas[0] ** 2).sqrt()  # ComfyUI's max_denoise
        for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            sig = s.expand(n)
            d = model.apply_model(x, sig, c_crossattn=batches.cond[which])
            if cfg != 1:
                u = model.apply_model(x, sig, c_crossattn=batches.cond[torch.full_like(which, 11)])
                d = u + cfg * (d - u)
            x = x + (s_next - s) * (x - d) / s
        return (x[:, 0] * lm.PIXEL_STD + lm.PIXEL_MEAN).clamp(0, 1)

    model.eval()
    raw = sample(torch.full((n,), 10), 1.0)
    shares = judges.class_shares(raw)
    out = {
        "minority_share": round(float(shares[list(lm.MINORITY)].sum()), 3),
        "frechet": round(judges.frechet_distance(raw), 2),
    }
    for cfg in (1.0, 3.0):
        digits = sample(classes, cfg)
        out[f"accuracy_cfg{cfg:g}"] = round(judges.prompt_accuracy(digits, classes.numpy()), 3)
        out[f"frechet_cfg{cfg:g}"] = round(judges.frechet_distance(digits), 2)
    model.train()
    print(f"{label}: {out}", flush=True)
    return out


def main() -> None:
    global EVAL_SAMPLES, STEPS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI source folder")
    parser.add_argument("--out", type=Path, default=lm.WEIGHTS_DIR)
    parser.add_argument(
        "--steps-scale", type=float, default=1.0, help="scale the steps per round (trial runs)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-samples", type=int, default=EVAL_SAMPLES, help="samples per evaluation")
    args = parser.parse_args()
    EVAL_SAMPLES = args.eval_samples
    STEPS = max(1, int(STEPS * args.steps_scale))
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(args.comfyui.resolve()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_base
    import comfy.sd
    import comfy.supported_models
    import comfy.utils
    import safetensors.torch

    started = time.monotonic()
    teachers, students = lm.FAMILIES["eps"], lm.FAMILIES["eps_distilled"]
    model = comfy.model_base.BaseModel(
        comfy.supported_models.SD15(lm.EPS_UNET_CONFIG), model_type=comfy.model_base.ModelType.EPS
    ).float()

    def load(name: str) -> dict[str, torch.Tensor]:
        return comfy.utils.load_torch_file(str(lm.WEIGHTS_DIR / lm.WEIGHT_FILES[name]))

    # The training's prompt embeddings: the CLIP of the checkpoint the weights become.
    shell, _ = fx._diffusion_model_sd(lm.wide_unet_config())
    wide = lm.widen_unet(load(teachers["strong"]), lm.EPS_WIDEN)
    _, clip, _, _ = comfy.sd.load_state_dict_guess_config(
        fx._checkpoint_sd(shell, wide, fx._clip_l_sd(), fx._taesd_sd(4)), output_vae=False
    )
    with torch.no_grad():
        texts = [lm.prompt(k) for k in range(10)] + [lm.RAW_PROMPT, lm.NEGATIVE_PROMPT]
        embeds = {t: clip.encode_from_tokens(clip.tokenize(t)).float() for t in texts}
    del shell, wide, clip
    batches = eps_train.Batches(embeds, model.model_sampling.sigmas.float())
    print(f"set-up {time.monotonic() - started:.0f} s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {}
    for side, share in (("strong", lm.STRONG_SHARE), ("weak", lm.WEAK_SHARE)):
        model.diffusion_model.load_state_dict({k: v.float() for k, v in load(teachers[side]).items()})
        model.train()
        teacher_alone = {
            f"{SCHEDULER}_{n}": evaluate(model, batches, f"{side} teacher, {n} steps", n)
            for n in TEACHER_STEPS
        }
        rounds = []
        for r, teacher_steps in enumerate(ROUNDS[:-1]):
            round_started = time.monotonic()
            losses = distill(model, batches, side, share, teacher_steps, SEEDS[side] * 100 + r)
            rounds.append(
                {
                    "teacher_steps": teacher_steps,
                    "steps": len(losses),
                    "seconds": round(time.monotonic() - round_started),
                    "final_loss": round(sum(losses[-100:]) / len(losses[-100:]), 5),
                    "alone": evaluate(
                        model, batches, f"{side} student, {teacher_steps // 2} steps", teacher_steps // 2
                    ),
                }
            )
        sd = {
            k: v.detach().to(torch.float16).contiguous()
            for k, v in model.diffusion_model.state_dict().items()
        }
        safetensors.torch.save_file(sd, str(args.out / lm.WEIGHT_FILES[students[side]]))
        record[students[side]] = {
            "teacher": teachers[side],
            "sampling": f"euler {SCHEDULER} {ROUNDS[-1]} steps, cfg 1",
            "alone": rounds[-1]["alone"],
            "teacher_alone": teacher_alone,
            "rounds": rounds,
        }

    manifest = {
        "source_hash": lm.source_hash("eps_distilled"),
        "steps_scale": args.steps_scale,
        "scheduler": SCHEDULER,
        "rounds": list(ROUNDS),
        "steps_per_round": STEPS,
        "models": record,
        "torch": torch.__version__,
        "threads": args.threads,
        "eval_samples": EVAL_SAMPLES,
        "seconds": round(time.monotonic() - started),
        "command": "benchmarks/learned_distill.py --comfyui <ComfyUI 0.3.75>",
    }
    (args.out / lm.MANIFESTS["eps_distilled"]).write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
