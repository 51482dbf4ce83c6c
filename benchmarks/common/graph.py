"""The graph benchmarks/perf.py and perf_h2h.py time: one model family at one size, its shared inputs,
the stock, W2SD and guider sampler calls through the nodes, and the configurations compared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from comfy_inprocess import InProcessComfy
from fixtures.checkpoints import SD15_MINI, SD15_MINI_FINETUNE, SD15_MINI_LORA

from common.random_models import ensure_full_size, model_files
from common.sampling import custom_sample

SEED = 7
CFG = 5.5
LORA_SCALES = {"main": 0.8, "strong": 1.5, "weak": -1.5}
PROMPT, REFINED, NEGATIVE = (
    "a red fox in the snow",
    "a red fox in the snow, detailed fur, sharp focus, golden hour",
    "blurry",
)


class Graph:
    """One model family at one size: the shared inputs, built lazily so that memory is attributed to the
    configuration that first needs it (configs run in order for the memory measurement)."""

    def __init__(
        self,
        c: InProcessComfy,
        model: str,
        size: int,
        steps: int,
        lora_rank: int,
        sampler: str,
        scheduler: str,
    ):
        self.c, self.model, self.size, self.steps = c, model, size, steps
        self.sampler, self.scheduler = sampler, scheduler
        self.lora_rank = lora_rank
        self._cache: dict[str, Any] = {}
        self.notes: list[str] = []
        if model != "tiny":
            folder = ensure_full_size(model, lora_rank, c.comfyui)
            unet, lora = model_files(model, lora_rank)
            for name, sub in ((unet, "diffusion_models"), (lora, "loras")):
                target = c.base_dir / "models" / sub / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(folder / name)
            import folder_paths

            folder_paths.add_model_folder_path(
                "diffusion_models", str(c.base_dir / "models" / "diffusion_models"), is_default=True
            )
            folder_paths.add_model_folder_path("loras", str(c.base_dir / "models" / "loras"), is_default=True)
            self.unet_name, self.lora_name = unet, lora
        else:
            self.lora_name = SD15_MINI_LORA

    def get(self, name: str) -> Any:
        return self.cached(name, getattr(self, f"_make_{name}"))

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """`make()` once per graph (an input another script adds, e.g. perf_h2h.py's second LoRA)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _unet_of(self, name: str) -> Any:
        """The MODEL of a tiny checkpoint without its CLIP and VAE (CheckpointLoaderSimple's loader), so
        that a checkpoint's memory is its UNet's."""
        import comfy.sd
        import folder_paths

        path = folder_paths.get_full_path_or_raise("checkpoints", name)
        return comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False)[0]

    def _make_base(self) -> Any:
        if self.model == "tiny":
            return self._unet_of(SD15_MINI)
        return self.c.execute("UNETLoader", unet_name=self.unet_name, weight_dtype="default")[0]

    def _make_second(self) -> Any:
        if self.model == "tiny":
            return self._unet_of(SD15_MINI_FINETUNE)
        # A second, separate model in memory (a fine-tune costs the same).
        return self.c.execute("UNETLoader", unet_name=self.unet_name, weight_dtype="default")[0]

    def second_bytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.get("second").model.state_dict().values())

    def _make_clip(self) -> Any:
        # SD1.5's text encoder is CLIP-L, exactly the tiny checkpoint's: real text conds for tiny and sd15.
        return self.c.execute("CheckpointLoaderSimple", ckpt_name=SD15_MINI)[1]

    def _encode(self, text: str) -> Any:
        if self.model == "sdxl":
            import torch

            g = torch.Generator().manual_seed(len(text))
            return [
                [torch.randn(1, 77, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]
            ]
        return self.c.execute("CLIPTextEncode", clip=self.get("clip"), text=text)[0]

    def _make_positive(self) -> Any:
        return self._encode(PROMPT)

    def _make_negative(self) -> Any:
        return self._encode(NEGATIVE)

    def _make_refined(self) -> Any:
        return self._encode(REFINED)

    def _make_latent(self) -> Any:
        return self.c.execute("EmptyLatentImage", width=self.size, height=self.size, batch_size=1)[0]

    def _make_lora_split(self) -> Any:
        model, pair, _ = self.c.execute(
            "W2SDLoraSplit", model=self.get("base"), lora_name=self.lora_name, main_scale=LORA_SCALES["main"],
            strong_scale=LORA_SCALES["strong"], weak_scale=LORA_SCALES["weak"], clip=None,
        )  # fmt: skip
        return model, pair

    def _make_stock_lora(self) -> Any:
        return self.c.execute(
            "LoraLoaderModelOnly",
            model=self.get("base"),
            lora_name=self.lora_name,
            strength_model=LORA_SCALES["main"],
        )[0]

    def lora_bytes(self) -> int:
        """The UNet part of the LoRA file (its own tensors, as stored)."""
        import comfy.utils
        import folder_paths

        sd = comfy.utils.load_torch_file(folder_paths.get_full_path("loras", self.lora_name))
        return sum(
            v.numel() * v.element_size()
            for k, v in sd.items()
            if k.startswith("lora_unet_") and not k.endswith(".alpha")
        )

    # --- runs ---------------------------------------------------------------------------------------
    def stock(self, model: Any) -> Any:
        return self.c.execute(
            "KSampler", model=model, seed=SEED, steps=self.steps, cfg=CFG, sampler_name=self.sampler,
            scheduler=self.scheduler, positive=self.get("positive"), negative=self.get("negative"),
            latent_image=self.get("latent"), denoise=1.0,
        )[0]  # fmt: skip

    def w2sd(self, model: Any, pair: Any, equal_budget: bool) -> Any:
        return self.c.execute(
            "W2SDKSampler", model=model, seed=SEED, steps=self.steps, cfg=CFG, sampler_name=self.sampler,
            scheduler=self.scheduler, positive=self.get("positive"), negative=self.get("negative"),
            latent_image=self.get("latent"), denoise=1.0, pair=pair, mode="W2SD", window="steps",
            start_percent=0.0, end_percent=1.0, reflect_steps=-1, inversion="explicit", inversion_iters=0,
            equal_budget=equal_budget,
        )[0]  # fmt: skip

    def guided(self, model: Any, guider: Any) -> Any:
        """`guider` through SamplerCustomAdvanced with KSampler's noise and sigmas for this seed."""
        return custom_sample(
            self.c, model, guider, SEED, self.sampler, self.scheduler, self.steps, self.get("latent")
        )


@dataclass
class Config:
    name: str
    baseline: str | None  # the stock config its ratios are taken against (None: it is a baseline)
    prepare: Callable[[Graph], tuple[Callable[[], Any], tuple[Any, ...]]]
    """graph -> (run, models that must stay loaded through the loop)."""
    settle: bool = False
    """Run once untimed before each timed run (its load patches weights; keep that out of the loop)."""
    planned_nfe: Callable[[int], int] | None = None


def _lambda_all(t: int) -> int:
    return t + 2 * (t - 1)


def _equal_budget(t: int) -> int:
    steps = t // 2
    return steps + 2 * (steps // 2)


def configs() -> list[Config]:
    def stock(g: Graph):
        base = g.get("base")
        return (lambda: g.stock(base)), (base.model,)

    def cfg_gap(equal: bool):
        def prepare(g: Graph):
            base = g.get("base")
            pair = g.c.execute("W2SDCFGGap", strong_cfg=CFG, weak_cfg=0.0, pair=None)[0]
            return (lambda: g.w2sd(base, pair, equal)), (base.model,)

        return prepare

    def prompt_pair(g: Graph):
        base = g.get("base")
        pair = g.c.execute("W2SDModelPair", strong_positive=g.get("refined"))[0]
        return (lambda: g.w2sd(base, pair, False)), (base.model,)

    def lora(equal: bool):
        def prepare(g: Graph):
            model, pair = g.get("lora_split")
            return (lambda: g.w2sd(model, pair, equal)), (model.model,)

        return prepare

    def stock_lora(g: Graph):
        model = g.get("stock_lora")
        return (lambda: g.stock(model)), (model.model,)

    def two_checkpoints(equal: bool):
        def prepare(g: Graph):
            strong, weak = g.get("second"), g.get("base")
            pair = g.c.execute("W2SDModelPair", weak_model=weak)[0]
            return (lambda: g.w2sd(strong, pair, equal)), (strong.model, weak.model)

        return prepare

    stock_name, lora_base = "stock KSampler", "stock KSampler + LoraLoader 0.8"
    return [
        Config(stock_name, None, stock, planned_nfe=lambda t: t),
        Config("W2SD CFG gap 5.5/0, lambda=T-1", stock_name, cfg_gap(False), planned_nfe=_lambda_all),
        Config("W2SD CFG gap 5.5/0, equal budget", stock_name, cfg_gap(True), planned_nfe=_equal_budget),
        Config("W2SD prompt pair (stock's work per NFE), lambda=T-1", stock_name, prompt_pair, planned_nfe=_lambda_all),
        Config("W2SD LoRA split +1.5/-1.5, lambda=T-1", lora_base, lora(False), planned_nfe=_lambda_all),
        Config("W2SD LoRA split +1.5/-1.5, equal budget", lora_base, lora(True), planned_nfe=_equal_budget),
        Config(lora_base, None, stock_lora, settle=True, planned_nfe=lambda t: t),
        Config("W2SD two checkpoints, lambda=T-1", stock_name, two_checkpoints(False), planned_nfe=_lambda_all),
        Config("W2SD two checkpoints, equal budget", stock_name, two_checkpoints(True), planned_nfe=_equal_budget),
    ]  # fmt: skip
