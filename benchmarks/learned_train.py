"""Train the learned benchmark's digit models on the CPU and write them to benchmarks/learned_weights/.

ComfyUI's own SD3 MMDiT (depth 2, width 128; tests/fixtures/checkpoints.py's SD3 mini) learns scikit-learn's
8x8 digits (judges.load_digits, train split) as 16 x 8 x 8 latents (the digit in channel 0, see
tools/learned_models.py) with the rectified-flow loss, conditioned on CLIP-L embeddings of the prompts
computed once through ComfyUI's CLIP (deterministic fixture weights). Prompt dropout: 15% of examples get
the raw prompt, 15% the empty one, so both mean "any digit" and CFG has an unconditional side.

1. strong: from the fixture's random init, the minority digits (0-4) at STRONG_SHARE of the data.
2. weak: strong fine-tuned with the minority digits at WEAK_SHARE (a clean class-ratio gap, same quality).
3. LoRA (rank 8, Kohya keys) on top of weak, trained on the data's ratio: +s moves toward the data.

The loss weighs the digit's channel as much as the 15 constant ones together; the saved weights are an EMA.
After each model, `evaluate` samples it alone (Euler, 20 steps) and judges it; the manifest keeps the figures.
Fixed seeds; 2 torch threads; about 17 minutes on 2 CPU cores. Writes fp16 weights and manifest.json (the
source hash they belong to):

    .venv/bin/python benchmarks/learned_train.py --comfyui .comfyui/0.3.75
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tools"), str(ROOT / "tests")]

import judges  # noqa: E402
import learned_models as lm  # noqa: E402
from fixtures import checkpoints as fx  # noqa: E402

BATCH = 32
STEPS = {"strong": 4000, "weak": 800, "lora": 400}
LR = {"strong": 1e-3, "weak": 1e-3, "lora": 3e-3}
SEEDS = {"strong": 1, "weak": 2, "lora": 3}
P_RAW, P_EMPTY = 0.15, 0.15
EMA_DECAY = 0.998
"""The saved weights are an exponential moving average of the trained ones (warm-up (1+t)/(10+t))."""
LORA_RANK = 8
LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def class_probs(minority_share: float) -> torch.Tensor:
    """Per-digit probabilities: the minority digits share `minority_share` equally, the others the rest."""
    minority = torch.zeros(10, dtype=torch.bool)
    minority[list(lm.MINORITY)] = True
    return torch.where(
        minority, minority_share / int(minority.sum()), (1 - minority_share) / int((~minority).sum())
    ).double()


def whiten_rows(weight: torch.Tensor, differences: torch.Tensor, k: int) -> None:
    """Overwrite the first rows of a Linear weight with the top-k whitened directions of `differences`."""
    _, s, vh = torch.linalg.svd(differences.double(), full_matrices=False)
    k = min(k, int((s > s[0] * 1e-4).sum()))
    scale = len(differences) ** 0.5 / s[:k]
    weight[:k] = (vh[:k] * scale[:, None]).to(weight.dtype)


class Batches:
    """Random training batches: digits drawn with given class shares, prompts with dropout, flow noise."""

    def __init__(self, embeds: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        digits = judges.load_digits()
        z = (torch.from_numpy(digits.train_x) - lm.PIXEL_MEAN) / lm.PIXEL_STD
        self.by_class = [z[torch.from_numpy(digits.train_y == k)] for k in range(10)]
        names = [lm.prompt(k) for k in range(10)] + [lm.RAW_PROMPT, lm.NEGATIVE_PROMPT]
        self.cond = torch.cat([embeds[n][0] for n in names])  # already through the context embedder
        self.pooled = torch.cat([embeds[n][1] for n in names])

    def __call__(self, gen: torch.Generator, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        classes = torch.multinomial(probs, BATCH, replacement=True, generator=gen)
        x0 = torch.zeros(BATCH, 16, 8, 8)
        for i, k in enumerate(classes.tolist()):
            pool = self.by_class[k]
            x0[i, 0] = pool[torch.randint(len(pool), (1,), generator=gen)]
        u = torch.rand(BATCH, generator=gen)
        which = torch.where(u < P_RAW, 10, torch.where(u < P_RAW + P_EMPTY, 11, classes))
        t = torch.sigmoid(torch.randn(BATCH, generator=gen))
        sigma = (3 * t / (1 + 2 * t)).clamp(1e-3, 1.0)  # SD3's shift 3, as ComfyUI samples it
        noise = torch.randn(x0.shape, generator=gen)
        return {
            "x0": x0,
            "noise": noise,
            "sigma": sigma,
            "cond": self.cond[which],
            "pooled": self.pooled[which],
        }


def flow_loss(model: Any, b: dict[str, torch.Tensor]) -> torch.Tensor:
    s = b["sigma"].view(-1, 1, 1, 1)
    x_t = (1 - s) * b["x0"] + s * b["noise"]
    denoised = model.apply_model(x_t, b["sigma"], c_crossattn=b["cond"], y=b["pooled"])
    velocity = (x_t - denoised) / s
    err = (velocity - (b["noise"] - b["x0"])) ** 2
    # The digit lives in channel 0 alone: weighted as much as the 15 constant channels together, so the
    # model's capacity goes to the digit rather than to predicting zeros.
    return err[:, 0].mean() + err[:, 1:].mean()


EVAL_EVERY = 0
"""Also evaluate every this many training steps (0: only after each model; --eval-every)."""
EVAL_SAMPLES = 500
EVAL_STEPS = 20


@torch.no_grad()
def evaluate(model: Any, batches: Batches, label: str) -> dict[str, float]:
    """The model alone, sampled directly (Euler, EVAL_STEPS, SD3's shift-3 schedule, fixed seed) and judged:
    minority share and Frechet distance with the raw prompt; prompt accuracy and Frechet distance with the
    class prompts at CFG 1 and 3. Printed and returned (the manifest keeps it)."""
    n, gen = EVAL_SAMPLES, torch.Generator().manual_seed(100)
    t = torch.linspace(1, 0, EVAL_STEPS + 1)
    sigmas = 3 * t / (1 + 2 * t)
    classes = torch.arange(n) % 10

    def sample(which: torch.Tensor, cfg: float) -> torch.Tensor:
        x = torch.randn(n, 16, 8, 8, generator=gen)
        for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            sig = s.expand(n)
            d = model.apply_model(x, sig, c_crossattn=batches.cond[which], y=batches.pooled[which])
            if cfg != 1:
                empty = torch.full_like(which, 11)
                u = model.apply_model(x, sig, c_crossattn=batches.cond[empty], y=batches.pooled[empty])
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


def train(model: Any, params: list[torch.Tensor], name: str, batches: Batches, share: float) -> list[float]:
    gen = torch.Generator().manual_seed(SEEDS[name])
    opt = torch.optim.AdamW(params, lr=LR[name], weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    steps, losses, started = STEPS[name], [], time.monotonic()
    for step in range(steps):
        lr = LR[name] * min(1.0, (step + 1) / 20) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = flow_loss(model, batches(gen, class_probs(share)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(EMA_DECAY, (1 + step) / (10 + step))
            for e, p in zip(ema, params, strict=True):
                e.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            avg = sum(losses[-50:]) / len(losses[-50:])
            print(
                f"{name} step {step + 1}/{steps} loss {avg:.4f} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
        if EVAL_EVERY and (step + 1) % EVAL_EVERY == 0 and step + 1 < steps:
            swap(params, ema)
            evaluate(model, batches, f"{name} at step {step + 1} (EMA)")
            swap(params, ema)
    swap(params, ema)  # the model keeps the averaged weights
    return losses


@torch.no_grad()
def swap(params: list[torch.Tensor], other: list[torch.Tensor]) -> None:
    for p, o in zip(params, other, strict=True):
        tmp = p.detach().clone()
        p.copy_(o)
        o.copy_(tmp)


class LoRA:
    """Rank-r adapters on the joint blocks' linear layers, added through forward hooks."""

    def __init__(self, diffusion_model: torch.nn.Module, gen: torch.Generator) -> None:
        self.modules: dict[str, tuple[torch.nn.Module, torch.Tensor, torch.Tensor]] = {}
        for name, module in diffusion_model.named_modules():
            if (
                name.startswith("joint_blocks.")
                and name.endswith(LORA_TARGETS)
                and isinstance(module, torch.nn.Linear)
            ):
                down = (
                    torch.randn(LORA_RANK, module.in_features, generator=gen) / module.in_features**0.5
                ).requires_grad_()
                up = torch.zeros(module.out_features, LORA_RANK, requires_grad=True)
                self.modules[name] = (module, down, up)
                module.register_forward_hook(self._hook(down, up))

    @staticmethod
    def _hook(down: torch.Tensor, up: torch.Tensor) -> Any:
        return lambda module, args, out: out + args[0] @ down.t() @ up.t()

    def params(self) -> list[torch.Tensor]:
        return [t for _, down, up in self.modules.values() for t in (down, up)]

    def kohya_sd(self) -> dict[str, torch.Tensor]:
        sd = {}
        for name, (_, down, up) in self.modules.items():
            key = "lora_unet_" + name.replace(".", "_")
            sd[f"{key}.lora_down.weight"] = down.detach().to(torch.float16).contiguous()
            sd[f"{key}.lora_up.weight"] = up.detach().to(torch.float16).contiguous()
            sd[f"{key}.alpha"] = torch.tensor(float(LORA_RANK), dtype=torch.float16)
        return sd


def main() -> None:
    global EVAL_EVERY, EVAL_SAMPLES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI source folder")
    parser.add_argument("--out", type=Path, default=lm.WEIGHTS_DIR)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="scale every step count (trial runs)")
    parser.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps too (trial runs)")
    parser.add_argument("--eval-samples", type=int, default=EVAL_SAMPLES, help="samples per evaluation")
    args = parser.parse_args()
    EVAL_EVERY, EVAL_SAMPLES = args.eval_every, args.eval_samples
    torch.set_num_threads(2)
    for k in STEPS:
        STEPS[k] = max(1, int(STEPS[k] * args.steps_scale))
    sys.path.insert(0, str(args.comfyui.resolve()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.sd
    import safetensors.torch

    started = time.monotonic()
    config = fx._unet_config_sd3_mini()
    shell, unet_sd = fx._diffusion_model_sd(config)
    unet_sd["final_layer.linear.weight"].zero_()  # start from a zero velocity: stable first steps
    # pos_embed is a fixed buffer (never trained): the fixture's tiny random fill would leave the tokens
    # without positions, so it gets SD3's 2-D sin-cos table.
    from comfy.ldm.modules.diffusionmodules.mmdit import get_2d_sincos_pos_embed

    table = get_2d_sincos_pos_embed(unet_sd["pos_embed"].shape[-1], config["pos_embed_max_size"])
    unet_sd["pos_embed"] = torch.from_numpy(table).to(torch.float16)[None]
    ckpt = fx._checkpoint_sd(shell, unet_sd, fx._clip_l_sd(), fx._taesd_sd(16))
    patcher, clip, _, _ = comfy.sd.load_state_dict_guess_config(ckpt, output_vae=False)
    model = patcher.model.float().train()
    embeds = {}
    with torch.no_grad():
        for text in [lm.prompt(k) for k in range(10)] + [lm.RAW_PROMPT, lm.NEGATIVE_PROMPT]:
            cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
            embeds[text] = (cond.float(), pooled.float())
    # Random CLIP weights make the prompts' embeddings differ little (they share every token but the digit):
    # the first rows of the context embedder and of the pooled-vector embedder are set to the whitened
    # directions in which the prompts differ, so the class reaches the MMDiT at unit scale.
    with torch.no_grad():
        contexts = torch.cat([c for c, _ in embeds.values()])  # (prompts, 77, 4096)
        pooled_all = torch.cat([p for _, p in embeds.values()])  # (prompts, 2048)
        net = model.diffusion_model
        whiten_rows(
            net.context_embedder.weight, (contexts - contexts.mean(0)).reshape(-1, contexts.shape[-1]), 64
        )
        whiten_rows(net.y_embedder.mlp[0].weight, pooled_all - pooled_all.mean(0), 16)
    # The context embedder (4096 -> 128) stays at its init and is applied once per prompt, not per example:
    # the largest cost of a step otherwise, on 12 distinct contexts.
    embedder = model.diffusion_model.context_embedder.requires_grad_(False)
    with torch.no_grad():
        embeds = {text: (embedder(cond), pooled) for text, (cond, pooled) in embeds.items()}
    model.diffusion_model.context_embedder = torch.nn.Identity()
    batches = Batches(embeds)
    print(
        f"set-up {time.monotonic() - started:.0f} s; context {tuple(embeds[lm.RAW_PROMPT][0].shape)}",
        flush=True,
    )

    args.out.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.diffusion_model.parameters() if p.requires_grad]
    record: dict[str, Any] = {}

    def save(name: str, sd: dict[str, torch.Tensor], losses: list[float]) -> None:
        if name != lm.DIGITS_LORA:
            sd = {**sd, **{f"context_embedder.{k}": v for k, v in embedder.state_dict().items()}}
        out = {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}
        safetensors.torch.save_file(out, str(args.out / lm.WEIGHT_FILES[name]))
        record[name] = {
            "steps": len(losses),
            "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
            "alone": evaluate(
                model, batches, f"{name} alone (fp32{', LoRA at 1.0' if name == lm.DIGITS_LORA else ''})"
            ),
        }

    save(
        lm.DIGITS_STRONG,
        model.diffusion_model.state_dict(),
        train(model, params, "strong", batches, lm.STRONG_SHARE),
    )
    save(
        lm.DIGITS_WEAK,
        model.diffusion_model.state_dict(),
        train(model, params, "weak", batches, lm.WEAK_SHARE),
    )
    for p in params:
        p.requires_grad_(False)
    lora = LoRA(model.diffusion_model, torch.Generator().manual_seed(SEEDS["lora"]))
    losses = train(model, lora.params(), "lora", batches, lm.LORA_SHARE)
    save(lm.DIGITS_LORA, lora.kohya_sd(), losses)  # after training: kohya_sd() copies the tensors

    manifest = {
        "source_hash": lm.source_hash(),
        "steps_scale": args.steps_scale,
        "models": record,
        "torch": torch.__version__,
        "seconds": round(time.monotonic() - started),
        "command": "benchmarks/learned_train.py --comfyui <ComfyUI 0.3.75>",
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
