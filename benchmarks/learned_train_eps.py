"""Train the learned benchmark's EPS (and v-prediction) digit UNets on the CPU: the SD1.5 family of the miniature.

The recipe is benchmarks/learned_train.py's (same digits, prompts, prompt dropout, class-ratio gap, EMA, LoRA
on weak toward the data's ratio; its helpers are imported; half its steps), with ComfyUI's own SD1.5 UNet (openaimodel
UNetModel, SD15 model config) in place of the MMDiT:

- The UNet is trained at EPS_CHANNELS = 64 channels (one level, a ResBlock and a cross-attention transformer
  in, two ResBlocks and a transformer out; tools/learned_models.py: EPS_UNET_CONFIG) and shipped at that
  width (fp16, ~1.6 MB). ComfyUI detects SD1.5 only at 320 channels, so tools/learned_models.py widens it
  exactly (each channel repeated 5 times; `widen_unet`) when it assembles the checkpoints.
- Latents are SD1.5's 4 x 8 x 8, the digit in channel 0 (model space (p - 0.3) / 0.4, the others 0).
- Training noise: discrete timesteps 0..999 uniform, ComfyUI's scaled-linear sigmas; the loss is on the
  network's output (eps, or v with --prediction v) with the digit's channel weighed as much as the other 3.
- The random CLIP-L's prompt embeddings differ little: the first rows of every cross-attention's to_k and
  to_v start at the whitened directions in which the prompts' embeddings differ (as the MMDiT's context
  embedder does), orthogonal to what all prompts share, and train from there.

After each model, `evaluate` samples it alone (Euler, 20 steps, ComfyUI's "normal" schedule) and judges it;
the manifest keeps the figures. Fixed seeds; 1 torch thread. Writes fp16 weights and manifest_<family>.json
(the source hash they belong to):

    .venv/bin/python benchmarks/learned_train_eps.py --comfyui .comfyui/0.3.75                  # EPS
    .venv/bin/python benchmarks/learned_train_eps.py --comfyui .comfyui/0.3.75 --prediction v   # v-pred
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

# Before torch starts OpenMP: spinning waits make training several times slower on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tools"), str(ROOT / "tests")]

import judges  # noqa: E402
import learned_models as lm  # noqa: E402
import learned_train as flow  # noqa: E402
from fixtures import checkpoints as fx  # noqa: E402

STEPS = {"strong": 2000, "weak": 400, "lora": 200}
"""Half the flow models' steps: what the 2 shared cores allowed (see the manifest's seconds)."""
LR = {"strong": 1e-3, "weak": 1e-3, "lora": 3e-3}
SEEDS = {"strong": 1, "weak": 2, "lora": 3}
WHITENED_ROWS = 32
"""Rows of each cross-attention's to_k / to_v set to the prompts' whitened difference directions."""
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
ZERO_INIT = ("out_layers.3.weight", "proj_out.weight", "out.2.weight")
"""Layers SD's UNet zero-initialises (zero_module): each block starts as the identity, the output at 0."""
EVAL_SAMPLES = 200
"""Samples per figure (the flow models' 500 cost too much CPU time on the shared cores)."""
EVAL_STEPS = 20


class Batches:
    """Random training batches: digits drawn with given class shares, prompts with dropout, discrete noise."""

    def __init__(self, embeds: dict[str, torch.Tensor], sigmas: torch.Tensor) -> None:
        digits = judges.load_digits()
        z = (torch.from_numpy(digits.train_x) - lm.PIXEL_MEAN) / lm.PIXEL_STD
        self.by_class = [z[torch.from_numpy(digits.train_y == k)] for k in range(10)]
        names = [lm.prompt(k) for k in range(10)] + [lm.RAW_PROMPT, lm.NEGATIVE_PROMPT]
        self.cond = torch.cat([embeds[n] for n in names])
        self.sigmas = sigmas

    def __call__(self, gen: torch.Generator, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        n = flow.BATCH
        classes = torch.multinomial(probs, n, replacement=True, generator=gen)
        x0 = torch.zeros(n, 4, 8, 8)
        for i, k in enumerate(classes.tolist()):
            pool = self.by_class[k]
            x0[i, 0] = pool[torch.randint(len(pool), (1,), generator=gen)]
        u = torch.rand(n, generator=gen)
        which = torch.where(u < flow.P_RAW, 10, torch.where(u < flow.P_RAW + flow.P_EMPTY, 11, classes))
        sigma = self.sigmas[torch.randint(len(self.sigmas), (n,), generator=gen)]
        return {
            "x0": x0,
            "noise": torch.randn(x0.shape, generator=gen),
            "sigma": sigma,
            "cond": self.cond[which],
        }


def prediction_loss(model: Any, b: dict[str, torch.Tensor], prediction: str) -> torch.Tensor:
    """Squared error of the network's own output: eps, or v = (eps - sigma x0) / sqrt(1 + sigma^2)."""
    s = b["sigma"].view(-1, 1, 1, 1)
    x_t = b["x0"] + s * b["noise"]  # ComfyUI's sigma space; the model scales its input by 1 / sqrt(1 + s^2)
    denoised = model.apply_model(x_t, b["sigma"], c_crossattn=b["cond"])
    if prediction == "eps":
        out, target = (x_t - denoised) / s, b["noise"]
    else:
        out = (x_t / (1 + s**2) - denoised) * (1 + s**2).sqrt() / s
        target = (b["noise"] - s * b["x0"]) / (1 + s**2).sqrt()
    err = (out - target) ** 2
    return err[:, 0].mean() + err[:, 1:].mean()


@torch.no_grad()
def evaluate(model: Any, batches: Batches, label: str) -> dict[str, float]:
    """The model alone, sampled directly (Euler, EVAL_STEPS, ComfyUI's "normal" schedule, fixed seed) and
    judged as learned_train.evaluate judges the flow models. Printed and returned (the manifest keeps it)."""
    import comfy.samplers

    n, gen = EVAL_SAMPLES, torch.Generator().manual_seed(100)
    sigmas = comfy.samplers.calculate_sigmas(model.model_sampling, "normal", EVAL_STEPS).float()
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


def train(
    model: Any, params: list[torch.Tensor], name: str, batches: Batches, share: float, prediction: str
) -> list[float]:
    """learned_train.train's schedule (warm-up, cosine to 0.1, EMA) with the prediction loss."""
    gen = torch.Generator().manual_seed(SEEDS[name])
    opt = torch.optim.AdamW(params, lr=LR[name], weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    steps, losses, started = STEPS[name], [], time.monotonic()
    for step in range(steps):
        lr = LR[name] * min(1.0, (step + 1) / 20) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = prediction_loss(model, batches(gen, flow.class_probs(share)), prediction)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(flow.EMA_DECAY, (1 + step) / (10 + step))
            for e, p in zip(ema, params, strict=True):
                e.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == steps:
            avg = sum(losses[-100:]) / len(losses[-100:])
            print(
                f"{name} step {step + 1}/{steps} loss {avg:.4f} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    flow.swap(params, ema)  # the model keeps the averaged weights
    return losses


class LoRA(flow.LoRA):
    """learned_train.LoRA on the UNet's transformer blocks (Kohya keys `lora_unet_*_transformer_blocks_*`)."""

    def __init__(self, diffusion_model: torch.nn.Module, gen: torch.Generator) -> None:
        self.modules = {}
        for name, module in diffusion_model.named_modules():
            if (
                ".transformer_blocks." in name
                and name.endswith(LORA_TARGETS)
                and isinstance(module, torch.nn.Linear)
            ):
                down = (
                    torch.randn(flow.LORA_RANK, module.in_features, generator=gen) / module.in_features**0.5
                ).requires_grad_()
                up = torch.zeros(module.out_features, flow.LORA_RANK, requires_grad=True)
                self.modules[name] = (module, down, up)
                module.register_forward_hook(self._hook(down, up))


def main() -> None:
    global EVAL_SAMPLES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI source folder")
    parser.add_argument("--prediction", choices=("eps", "v"), default="eps")
    parser.add_argument("--out", type=Path, default=lm.WEIGHTS_DIR)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="scale every step count (trial runs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-samples", type=int, default=EVAL_SAMPLES, help="samples per evaluation")
    args = parser.parse_args()
    EVAL_SAMPLES = args.eval_samples
    torch.set_num_threads(args.threads)
    for k in STEPS:
        STEPS[k] = max(1, int(STEPS[k] * args.steps_scale))
    sys.path.insert(0, str(args.comfyui.resolve()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_base
    import comfy.sd
    import comfy.supported_models
    import safetensors.torch

    family = lm.FAMILIES[args.prediction]
    started = time.monotonic()
    config = comfy.supported_models.SD15(lm.EPS_UNET_CONFIG)
    model_type = (
        comfy.model_base.ModelType.EPS
        if args.prediction == "eps"
        else comfy.model_base.ModelType.V_PREDICTION
    )
    model = comfy.model_base.BaseModel(config, model_type=model_type).float().train()
    init = fx.deterministic_fill(model.diffusion_model.state_dict())
    init = {k: torch.zeros_like(v) if k.endswith(ZERO_INIT) else v for k, v in init.items()}
    model.diffusion_model.load_state_dict({k: v.float() for k, v in init.items()})
    # The CLIP comes from the checkpoint the shipped weights become (the widened UNet, the fixture's CLIP).
    wide = lm.widen_unet(init, lm.EPS_WIDEN)
    shell, _ = fx._diffusion_model_sd(lm.wide_unet_config())
    ckpt = fx._checkpoint_sd(shell, wide, fx._clip_l_sd(), fx._taesd_sd(4))
    _, clip, _, _ = comfy.sd.load_state_dict_guess_config(ckpt, output_vae=False)
    with torch.no_grad():
        texts = [lm.prompt(k) for k in range(10)] + [lm.RAW_PROMPT, lm.NEGATIVE_PROMPT]
        embeds = {t: clip.encode_from_tokens(clip.tokenize(t)).float() for t in texts}
        contexts = torch.cat(list(embeds.values()))  # (prompts, 77, 768)
        # Without what every prompt shares (each token's mean over the prompts): k and v start from the
        # prompts' differences alone.
        mean = contexts.mean(0)
        basis, _ = torch.linalg.qr(mean.T.double())
        differences = (contexts - mean).reshape(-1, contexts.shape[-1]).double()
        differences = differences - differences @ basis @ basis.T
        for name, module in model.diffusion_model.named_modules():
            if name.endswith(("attn2.to_k", "attn2.to_v")):
                flow.whiten_rows(module.weight, differences, WHITENED_ROWS)
    batches = Batches(embeds, model.model_sampling.sigmas.float())
    print(f"set-up {time.monotonic() - started:.0f} s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.diffusion_model.parameters() if p.requires_grad]
    record: dict[str, Any] = {}

    def save(name: str, sd: dict[str, torch.Tensor], losses: list[float]) -> None:
        out = {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}
        safetensors.torch.save_file(out, str(args.out / lm.WEIGHT_FILES[name]))
        record[name] = {
            "steps": len(losses),
            "final_loss": round(sum(losses[-100:]) / len(losses[-100:]), 4),
            "alone": evaluate(
                model, batches, f"{name} alone (fp32{', LoRA at 1.0' if name == family['lora'] else ''})"
            ),
        }

    for side, share in (("strong", lm.STRONG_SHARE), ("weak", lm.WEAK_SHARE)):
        losses = train(model, params, side, batches, share, args.prediction)
        save(family[side], model.diffusion_model.state_dict(), losses)
    for p in params:
        p.requires_grad_(False)
    lora = LoRA(model.diffusion_model, torch.Generator().manual_seed(SEEDS["lora"]))
    losses = train(model, lora.params(), "lora", batches, lm.LORA_SHARE, args.prediction)
    save(family["lora"], lora.kohya_sd(), losses)

    manifest = {
        "source_hash": lm.source_hash(args.prediction),
        "steps_scale": args.steps_scale,
        "models": record,
        "torch": torch.__version__,
        "threads": args.threads,
        "seconds": round(time.monotonic() - started),
        "command": f"benchmarks/learned_train_eps.py --comfyui <ComfyUI 0.3.75> --prediction {args.prediction}",
    }
    (args.out / lm.MANIFESTS[args.prediction]).write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
