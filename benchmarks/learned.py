"""Does W2SD help a trained model? The paper's pairs in miniature, sampled through the real ComfyUI nodes.

Models: tools/learned_models.py (ComfyUI checkpoints and a LoRA trained here on scikit-learn's 8x8
digits; see there for how each pair's gap was made). Judges: benchmarks/judges.py (a classifier and a
quality distance, trained on real digits with a held-out split). Every sample goes through the stock
nodes a user wires: CheckpointLoaderSimple -> CLIPTextEncode -> EmptySD3LatentImage (EmptyLatentImage with
--family eps / v / eps_distilled) -> KSampler (stock) or W2SDKSampler + W2SDModelPair / W2SDLoraSplit /
W2SDCFGGap (W2SD) -> VAEDecode, in-process.

Rows per pair: stock; stock at W2SD's NFE (more steps); stock over a CFG sweep (its trade-off curve);
W2SD with the node's defaults (window percent 0..0.5, fixed-point inversion with 1 iteration); the same
window with the paper's explicit inversion; W2SD on every step but the last (the official code:
explicit inversion); S2WD; Re-Sampling vanilla / aligned; equal_budget; fixed-point inversion with 3
iterations; the first 1 / 2 / 3 steps and every step with the defaults' inversion, and the adaptive
window (every step, stop_ratio 0.25): the curve an adaptive window is judged against; reuse_strong
with the defaults and with the explicit inversion, against stock at 1.5x and 2x the steps; the
warm_start inversion (explicit's cost) alone and with reuse_strong (1.5x stock's NFE at the default
window), over the default window, every step and the later half (whose fixed_point row is `late`); the
first and the later half by noise level instead of by steps (`first_sigma`, `late_sigma`: window = sigma).
Every figure carries a 95% BCa bootstrap interval over the samples (each sample = its own seeded noise).

What users would pick instead, on the same two models (the two checkpoints; for the LoRA pair the same
LoRA at the stock scale and at the weak side's on two loaders), through SamplerCustomAdvanced with the
noise and sigmas KSampler draws for the same seeds (`--rows guiders`, or one sweep, over
`--guider-weights`): the core's DualModelGuider (ComfyUI 0.29.0, experimental; `dmg_sweep`) and the
ComfyUI-AutoGuidance pack (`--autoguidance PATH`; `ag_sweep` its defaults, `ag_paper_sweep` its
multi_guidance_paper mode, `ag_uncapped_sweep`, one sweep per ramp, `ag_recipe_sweep` its README's
recipe). A guider row's NFE is its model evaluations (count_model_evaluations).

    .venv/bin/python benchmarks/learned.py                       # the published run (writes results)
    .venv/bin/python benchmarks/learned.py --quick               # 100 samples, euler, a few rows
    .venv/bin/python benchmarks/learned.py --pairs cfg --rows stock,w2sd,s2wd --samples 200
    .venv/bin/python benchmarks/learned.py --stand-in --quick    # plumbing only: random-weight SD3 mini
    .venv/bin/python benchmarks/learned.py --family eps          # the same rows on the SD1.5 EPS UNets (or v)
    .venv/bin/python benchmarks/learned.py --family eps_distilled --steps 4   # their 4-step distillations

    W2SD_COMFYUI_VERSION=0.29.0 .venv-0.29.0/bin/python benchmarks/learned.py --pairs checkpoints,lora \
        --rows stock,warm_all,guiders --autoguidance ../ComfyUI-AutoGuidance      # W2SD beside the guiders
    .venv/bin/python benchmarks/learned.py --redraw benchmarks/results/learned_rows/<run>.json  # no sampling

Writes benchmarks/results/learned.md (unless --no-write), docs/images/learned.png and every row's judged
samples to benchmarks/results/learned_rows/<run start>.json (setting, NFE, per-sample values: `--redraw`
recomputes every figure and paired interval from them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "tests", ROOT / "tools", ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from common import comfyui  # noqa: E402
from common.counters import Counters, count_model_evaluations, instrument  # noqa: E402
from common.intervals import Figure, bootstrap, paired_difference  # noqa: E402
from common.report import machine  # noqa: E402
from common.sampling import custom_sample  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "learned.md"
FIGURE = ROOT / "docs" / "images" / "learned.png"
SIZE = 64  # px: an 8x8 latent, one latent pixel per digit pixel
STEPS = 20
SCHEDULER = "simple"
SAMPLERS = {  # name on the command line -> (sampler_name, scheduler)
    "euler": ("euler", "simple"),
    "dpmpp_2m_karras": ("dpmpp_2m", "karras"),
    "dpmpp_2m_sde_karras": ("dpmpp_2m_sde", "karras"),
    "uni_pc": ("uni_pc", "simple"),
}
FAMILIES = {  # --family -> (empty latent node, euler's scheduler: ComfyUI's default for the family)
    "flow": ("EmptySD3LatentImage", "simple"),
    "eps": ("EmptyLatentImage", "normal"),
    "v": ("EmptyLatentImage", "normal"),  # SD1.5 v-prediction: loaded through ModelSamplingDiscrete
    "eps_distilled": ("EmptyLatentImage", "sgm_uniform"),  # 4-step students: as Lightning / DMD2 are run
}
BOOTSTRAP = 1000
SEED = 1000


def sampler_and_scheduler(sampler: str, family: str) -> tuple[str, str]:
    """The KSampler's sampler_name and scheduler for a --samplers name: euler with its family's scheduler."""
    sampler_name, scheduler = SAMPLERS[sampler]
    return sampler_name, FAMILIES[family][1] if sampler == "euler" else scheduler


# ---------------------------------------------------------------------------------------------------
# Rows: what each one runs (stock KSampler or W2SD KSampler with reflection settings)
# ---------------------------------------------------------------------------------------------------

# The W2SD KSampler's widget defaults until 0.2.0: the rows w2sd, explicit, late, warm_all... vary them.
W2SD_DEFAULT = {
    "mode": "W2SD", "window": "percent", "start_percent": 0.0, "end_percent": 0.5, "reflect_steps": -1,
    "inversion": "fixed_point", "inversion_iters": 1, "equal_budget": False,
}  # fmt: skip
# The defaults since 0.2.0 (nodes/reflection_inputs.py): every step but the last, the warm_start
# inversion, the sampler's history kept (the same steps and inversion as the row warm_all_keep).
NODE_DEFAULTS = {
    **W2SD_DEFAULT, "end_percent": 1.0, "inversion": "warm_start", "inversion_iters": 0, "keep_sampler_history": True,
}  # fmt: skip
OFFICIAL_CODE = {"window": "steps", "inversion": "explicit"}
ADAPTIVE_STOP = 0.25  # the adaptive row's stop_ratio  # every step but the last, the paper's inversion


@dataclass(frozen=True)
class Guided:
    """A two-model guider node users wire instead of W2SD, sampled by SamplerCustomAdvanced."""

    node: str  # DualModelGuider (ComfyUI core) or AutoGuidanceCFGGuider (the ComfyUI-AutoGuidance pack)
    inputs: dict[str, Any]
    two_loads: bool = False  # the weak side on a second load of the base (Setup.guided_two_loads)


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    reflection: dict[str, Any] | None = None  # None: stock KSampler
    cfg: float | None = None  # stock: a cfg other than the pair's
    steps: Callable[[int], int] | None = None  # stock: steps from T (equal NFE)
    guider: Guided | None = None  # instead of a KSampler: the pair's two models through this guider


def _w2sd(**changes: Any) -> dict[str, Any]:
    return {**W2SD_DEFAULT, **changes}


def default_lambda(steps: int) -> int:
    """Reflected steps of the default window (percent 0..0.5; never the step into sigma 0)."""
    return sum(1 for i in range(steps - 1) if i / steps < 0.5)


def default_nfe(steps: int) -> int:
    """NFE of the default settings: each reflected step adds a strong step, a weak inversion and the
    fixed-point refinements."""
    from w2sd_core import planned_nfe

    return planned_nfe(steps, default_lambda(steps), W2SD_DEFAULT["inversion_iters"])


def node_defaults_nfe(steps: int) -> int:
    """NFE of the node defaults since 0.2.0: every step but the last, warm_start with no refinement."""
    from w2sd_core import planned_nfe

    return planned_nfe(steps, steps - 1, NODE_DEFAULTS["inversion_iters"])


ROWS: dict[str, Row] = {
    r.name: r
    for r in (
        Row("stock", "stock KSampler"),
        Row("stock_nfe", "stock, 0.1.0 defaults' NFE (more steps)", steps=default_nfe),
        Row("defaults", "W2SD, node defaults (every step, warm_start, history kept)", dict(NODE_DEFAULTS)),
        Row("s2wd_defaults", "S2WD, node defaults", {**NODE_DEFAULTS, "mode": "S2WD (diagnosis)"}),
        Row("stock_nfe_defaults", "stock, the node defaults' NFE (more steps)", steps=node_defaults_nfe),
        Row("w2sd", "W2SD, 0.1.0 defaults (0..0.5, fixed_point 1)", _w2sd()),
        Row("explicit", "W2SD, default window (0..0.5, explicit)", _w2sd(inversion="explicit")),
        Row("w2sd_075", "W2SD, window 0..0.75", _w2sd(end_percent=0.75)),
        Row("w2sd_all", "W2SD, every step but the last (official code)", _w2sd(**OFFICIAL_CODE)),
        Row("s2wd", "S2WD, node defaults (roles swapped)", _w2sd(mode="S2WD (diagnosis)")),
        Row("s2wd_all", "S2WD, every step but the last", _w2sd(mode="S2WD (diagnosis)", **OFFICIAL_CODE)),
        Row("resample", "Re-Sampling (vanilla)", _w2sd(mode="Re-Sampling (vanilla)")),
        Row("resample_aligned", "Re-Sampling (aligned)", _w2sd(mode="Re-Sampling (aligned)")),
        Row("equal_budget", "W2SD equal_budget (NFE <= stock)", _w2sd(equal_budget=True)),
        Row("fp3", "W2SD, fixed_point 3", _w2sd(inversion_iters=3)),
        # The fixed windows an adaptive one is judged against: the first k steps, and every step.
        *(
            Row(f"first_{k}", f"W2SD, first {k} steps", _w2sd(window="steps", reflect_steps=k))
            for k in (1, 2, 3)
        ),
        Row("all_fp1", "W2SD, every step but the last", _w2sd(window="steps")),
        # Cheaper reflections: the next step reuses the strong evaluation (pairs whose strong side is main).
        Row("reuse", "W2SD defaults, reuse_strong", _w2sd(reuse_strong=True)),
        Row("reuse_explicit", "W2SD, explicit, reuse_strong", _w2sd(inversion="explicit", reuse_strong=True)),
        # warm_start: one weak evaluation where the strong one was made (explicit's cost).
        Row("warm", "W2SD defaults, warm_start inversion", _w2sd(inversion="warm_start", inversion_iters=0)),
        Row(
            "warm_reuse",
            "W2SD defaults, warm_start, reuse_strong",
            _w2sd(inversion="warm_start", inversion_iters=0, reuse_strong=True),
        ),
        Row("late", "W2SD, the later half (0.5..1)", _w2sd(start_percent=0.5, end_percent=1.0)),
        # The same windows by noise level (window = sigma: the percents read as ComfyUI's ControlNet ranges).
        Row(
            "late_sigma",
            "W2SD, the later half by noise level (sigma 0.5..1)",
            _w2sd(window="sigma", start_percent=0.5, end_percent=1.0),
        ),
        Row(
            "first_sigma",
            "W2SD, 0.1.0 defaults by noise level (sigma 0..0.5, fixed_point 1)",
            _w2sd(window="sigma"),
        ),
        Row(
            "warm_all",
            "W2SD, every step, warm_start",
            _w2sd(window="steps", inversion="warm_start", inversion_iters=0),
        ),
        Row(
            "warm_reuse_all",
            "W2SD, every step, warm_start, reuse_strong",
            _w2sd(window="steps", inversion="warm_start", inversion_iters=0, reuse_strong=True),
        ),
        Row(
            "warm_reuse_late",
            "W2SD, the later half, warm_start, reuse_strong",
            _w2sd(
                start_percent=0.5,
                end_percent=1.0,
                inversion="warm_start",
                inversion_iters=0,
                reuse_strong=True,
            ),
        ),
        # keep_sampler_history: multistep samplers keep their history through the window.
        Row("keep", "W2SD defaults, keep_sampler_history", _w2sd(keep_sampler_history=True)),
        Row(
            "warm_keep",
            "W2SD defaults, warm_start, keep_sampler_history",
            _w2sd(inversion="warm_start", inversion_iters=0, keep_sampler_history=True),
        ),
        Row(
            "warm_all_keep",
            "W2SD, every step, warm_start, keep_sampler_history",
            _w2sd(window="steps", inversion="warm_start", inversion_iters=0, keep_sampler_history=True),
        ),
        Row("stock_15x", "stock, 1.5x the steps", steps=lambda t: t + t // 2),
        Row("stock_2x", "stock, 2x the steps", steps=lambda t: 2 * t),
        Row(
            "adaptive",
            f"W2SD adaptive (every step, stop_ratio {ADAPTIVE_STOP:g})",
            _w2sd(window="steps", stop_ratio=ADAPTIVE_STOP),
        ),
    )
}
CFG_SWEEP = (1.0, 2.0, 3.0, 4.0, 5.5, 7.0, 9.0)

# What users pick instead, on the same two models (Setup.guided: the strong/good model, the weak/bad one),
# each row one guidance weight of a sweep (--guider-weights). DualModelGuider (ComfyUI 0.29.0, experimental)
# runs the positive on the strong model and the negative on the weak one: weak + w * (strong - weak).
# AutoGuidance (Karras et al. 2024, arXiv 2406.02507) through the ComfyUI-AutoGuidance pack: in its default
# sequential_delta mode the weight is `w_autoguide` on top of the pair's cfg, its push capped at ag_max_ratio
# of the CFG update; multi_guidance_paper with w_autoguide 2 is the paper's pure form, the weight as its cfg.
AUTOGUIDANCE_NODE = "AutoGuidanceCFGGuider"
AG_QUIET = {"debug_swap": False, "debug_metrics": False}  # its debug prints are on by default
AG_RECIPE = {
    "cfg": 1.1, "ag_delta_mode": "reject_cfg", "ag_max_ratio": 0.75, "ag_ramp_mode": "compose_early",
    "ag_ramp_power": 2.0, "ag_ramp_floor": 0.0, "ag_post_cfg_mode": "skip",
}  # fmt: skip
"""The pack README's "one working recipe" (w_autoguide 3 there; swept here)."""
GUIDER_SWEEPS: dict[str, tuple[str, str, Callable[[float], dict[str, Any]]]] = {
    "dmg_sweep": ("dmg", "DualModelGuider cfg {w:g}", lambda w: {"cfg": w}),
    "dmg_two_loads_sweep": (
        "dmg_two_loads", "DualModelGuider cfg {w:g}, weak LoRA on a second load of the base", lambda w: {"cfg": w}
    ),
    "ag_sweep": ("ag", "AutoGuidance w {w:g} (node defaults)", lambda w: {"w_autoguide": w}),
    "ag_uncapped_sweep": (
        "ag_uncapped", "AutoGuidance w {w:g}, ag_max_ratio 0 (uncapped)",
        lambda w: {"w_autoguide": w, "ag_max_ratio": 0.0},
    ),
    "ag_paper_sweep": (
        "ag_paper", "AutoGuidance multi_guidance_paper, weight {w:g}",
        lambda w: {"ag_combine_mode": "multi_guidance_paper", "w_autoguide": 2.0, "cfg": w},
    ),
    **{
        f"ag_{ramp}_sweep": (
            f"ag_{ramp}", f"AutoGuidance w {{w:g}}, {ramp} ramp, ag_max_ratio 1",
            lambda w, ramp=ramp: {"w_autoguide": w, "ag_ramp_mode": ramp, "ag_max_ratio": 1.0},
        )
        for ramp in ("compose_early", "detail_late", "mid_peak")
    },
    "ag_recipe_sweep": (
        "ag_recipe", "AutoGuidance w {w:g}, the pack README's recipe", lambda w: {**AG_RECIPE, "w_autoguide": w}
    ),
}  # fmt: skip
"""--rows names -> (row name prefix, label, the guider's inputs for weight w)."""
GUIDER_WEIGHTS = (1.5, 2.0, 3.0)


def guider_rows(sweep: str, weights: tuple[float, ...]) -> list[Row]:
    prefix, label, inputs = GUIDER_SWEEPS[sweep]
    node = "DualModelGuider" if sweep.startswith("dmg_") else AUTOGUIDANCE_NODE
    two = sweep == "dmg_two_loads_sweep"
    return [Row(f"{prefix}_{w:g}", label.format(w=w), guider=Guided(node, inputs(w), two)) for w in weights]


QUICK_ROWS = ("stock", "stock_nfe", "w2sd", "explicit", "s2wd")


# ---------------------------------------------------------------------------------------------------
# Pairs: how each of the paper's pair types is wired from the learned models
# ---------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One prompt of a pair: its conditionings, the W2SD pair made for it, the class it asks for."""

    text: str
    positive: Any
    negative: Any
    pair: Any
    cls: int | None = None


@dataclass
class Setup:
    """Everything one pair needs, as node outputs: the sampler's model, the stock model, the jobs."""

    model: Any
    stock_model: Any
    vae: Any
    cfg: float
    jobs: list[Job]
    """Sampled in equal shares (e.g. one per digit class)."""
    guided: tuple[Any, Any] | None = None
    """The two models a guider row contrasts (strong/good, weak/bad), each from its own loader; None: the
    pair has no two-model form (a condition pair)."""
    guided_two_loads: tuple[Any, Any] | None = None
    """The LoRA pair's two models with the weak side's LoRA on a second load of the base: DualModelGuider
    runs both of its models with one set of weights when they share a base (the negative's LoRA is
    never applied), so this is how it can contrast two scales of one LoRA at all."""


@dataclass
class PairDef:
    key: str
    title: str
    metric: str
    """The judge metric W2SD should move (see Judge.summary)."""
    higher_is_better: bool
    build: Callable[[Session], Setup]
    reference: str = ""
    """What the target should be compared with (e.g. the data's share)."""


@dataclass
class Session:
    """ComfyUI in-process with the learned models installed; node calls through `c.execute`."""

    c: Any
    names: Any  # the learned_models module (file-name constants, prompts)
    family: str = "flow"  # FAMILIES
    _cache: dict[str, Any] = field(default_factory=dict)
    peers: dict[str, str] = field(default_factory=dict)
    """Other packs loaded for their rows -> their commit (common.comfyui.load_peer)."""

    def checkpoint(self, name: str) -> tuple[Any, Any, Any]:
        if name not in self._cache:
            model, clip, vae = self.c.execute("CheckpointLoaderSimple", ckpt_name=name)
            if self.family == "v":  # an SD1.5 file does not say v-prediction: the user sets it
                model = self.c.execute(
                    "ModelSamplingDiscrete", model=model, sampling="v_prediction", zsnr=False
                )[0]
            self._cache[name] = (model, clip, vae)
        return self._cache[name]

    def encode(self, clip: Any, text: str) -> Any:
        key = f"text:{id(clip)}:{text}"
        if key not in self._cache:
            self._cache[key] = self.c.execute("CLIPTextEncode", clip=clip, text=text)[0]
        return self._cache[key]


# ---------------------------------------------------------------------------------------------------
# Sampling through the nodes
# ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    images: np.ndarray  # N, 64, 64, 3 float in [0, 1] (VAEDecode's IMAGE)
    latents: np.ndarray  # N, 16, 8, 8: the sampler's raw LATENT
    classes: np.ndarray  # N: the class each sample's prompt asked for (-1: none)
    nfe: int  # model evaluations per sample (counted)
    wall: float


def sample_row(
    s: Session, setup: Setup, row: Row, n: int, sampler: str, steps: int, batch: int, seed: int
) -> Run:
    import torch

    sampler_name, scheduler = sampler_and_scheduler(sampler, s.family)
    latent_node = FAMILIES[s.family][0]
    per_job = [n // len(setup.jobs) + (1 if i < n % len(setup.jobs) else 0) for i in range(len(setup.jobs))]
    images, latents, classes, nfe, calls = [], [], [], 0, 0
    start = time.perf_counter()
    with torch.inference_mode():  # as ComfyUI's executor runs every node
        for j, (job, count) in enumerate(zip(setup.jobs, per_job, strict=True)):
            for k in range(0, count, batch):
                size = min(batch, count - k)
                # Fixed seeds: one per (job, chunk), the same for every row and sampler.
                chunk_seed = seed + 1000 * j + k
                latent = s.c.execute(latent_node, width=SIZE, height=SIZE, batch_size=size)[0]
                common = dict(
                    seed=chunk_seed, sampler_name=sampler_name, scheduler=scheduler, positive=job.positive,
                    negative=job.negative, latent_image=latent, denoise=1.0,
                )  # fmt: skip
                with instrument(Counters()) as counters, count_model_evaluations() as evaluations:
                    if row.guider is not None:
                        out = sample_guided(
                            s, setup, job, row.guider, steps, sampler_name, scheduler, chunk_seed, latent
                        )
                    elif row.reflection is None:
                        out = s.c.execute(
                            "KSampler", model=setup.stock_model, steps=row.steps(steps) if row.steps else steps,
                            cfg=setup.cfg if row.cfg is None else row.cfg, **common,
                        )[0]  # fmt: skip
                    else:
                        out = s.c.execute(
                            "W2SDKSampler", model=setup.model, steps=steps, cfg=setup.cfg, pair=job.pair,
                            **row.reflection, **common,
                        )[0]  # fmt: skip
                # DualModelGuider and AutoGuidance evaluate two models inside one guider call.
                nfe += evaluations[0] if row.guider is not None else counters.total_nfe
                calls += 1
                decoded = s.c.execute("VAEDecode", samples=out, vae=setup.vae)[0]
                images.append(decoded.float().clamp(0, 1).numpy())
                latents.append(out["samples"].float().numpy())
                classes.extend([-1 if job.cls is None else job.cls] * size)
    return Run(
        np.concatenate(images), np.concatenate(latents), np.array(classes), nfe // max(calls, 1),
        time.perf_counter() - start,
    )  # fmt: skip


def sample_guided(
    s: Session, setup: Setup, job: Job, g: Guided, steps: int, sampler_name: str, scheduler: str, seed: int,
    latent: Any,
) -> Any:  # fmt: skip
    """One chunk through `g`'s guider node (common.sampling.custom_sample: rows stay paired by seed)."""
    models = setup.guided_two_loads if g.two_loads else setup.guided
    if models is None:
        raise ValueError(f"{g.node}: this pair has no such two-model form")
    good, bad = models
    if g.node == AUTOGUIDANCE_NODE:
        inputs = {"good_model": good, "bad_model": bad, "cfg": setup.cfg, **AG_QUIET, **g.inputs}
    else:
        inputs = {"model": good, "model_negative": bad, **g.inputs}
    guider = s.c.execute(g.node, positive=job.positive, negative=job.negative, **inputs)[0]
    return custom_sample(s.c, good, guider, seed, sampler_name, scheduler, steps, latent)


# ---------------------------------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------------------------------


QUALITY = ("frechet", "nn_distance", "out_of_range")
"""Quality figures of every row (lower is better): Frechet distance of the classifier's features to held-out
real digits, mean pixel distance to the nearest held-out digit, share of decoded pixels outside [0, 1]."""


class Judge:
    """Metrics of a set of samples (benchmarks/judges.py), each with a bootstrap interval over the samples."""

    def __init__(self, stand_in: bool, minority: tuple[int, ...] = (0,)) -> None:
        self.stand_in, self.minority = stand_in, tuple(minority)
        import judges

        self.j = judges

    def per_sample(self, run: Run) -> dict[str, np.ndarray]:
        digits = self.j.image_to_digit(run.images)
        if self.stand_in:
            raw = digits  # the random-weight fixture's VAE is not the digit VAE
        else:
            import learned_models

            raw = learned_models.latent_to_digit(run.latents)
        tol = 0.05
        return {
            "digits": digits,
            "pred": self.j.predict(digits),
            "nn_distance": np.array([self.j.nearest_neighbour_distance(d[None]) for d in digits]),
            "out_of_range": ((raw < -tol) | (raw > 1 + tol)).reshape(len(raw), -1).mean(1),
        }

    def stat(
        self, metric: str, v: dict[str, np.ndarray], classes: np.ndarray
    ) -> Callable[[np.ndarray], float]:
        if metric == "minority_share":
            hits = np.isin(v["pred"], self.minority).astype(float)
            return lambda idx: float(hits[idx].mean())
        if metric == "prompt_accuracy":
            hits = (v["pred"] == classes).astype(float)
            return lambda idx: float(hits[idx].mean())
        if metric == "frechet":
            f = self.j.features(v["digits"])
            return lambda idx: self.j.frechet_from_features(f[idx])
        if metric in ("nn_distance", "out_of_range"):
            arr = v[metric]
            return lambda idx: float(arr[idx].mean())
        raise ValueError(
            f"metric={metric!r} is not one of minority_share, prompt_accuracy, {', '.join(QUALITY)}"
        )

    def figures(
        self, metrics: list[str], run: Run, rounds: int, values: dict[str, np.ndarray] | None = None
    ) -> tuple[dict[str, Figure], dict[str, Callable[[np.ndarray], float]]]:
        """Each metric with its interval, and the statistic functions (for paired differences)."""
        v = self.per_sample(run) if values is None else values
        stats = {m: self.stat(m, v, run.classes) for m in metrics}
        return {m: bootstrap(f, len(run.images), rounds) for m, f in stats.items()}, stats


# ---------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    pair: str
    sampler: str
    row: str
    label: str
    nfe: int
    n: int
    wall: float
    figures: dict[str, Figure]
    images: np.ndarray  # the first few samples, for the figure

    @property
    def target(self) -> Figure:
        return self.figures[self.metric]

    @property
    def quality(self) -> Figure:
        return self.figures["frechet"]

    metric: str = ""
    stats: dict[str, Callable[[np.ndarray], float]] = field(default_factory=dict)
    delta: dict[str, Figure] = field(default_factory=dict)
    """Paired differences to the stock row of the same pair and sampler (same seeds)."""
    setting: dict[str, Any] = field(default_factory=dict)
    """What the row ran (node, sampler, steps, cfg, reflection inputs): `row_setting`."""
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    """The judged values of every sample (ROW_VALUES), enough to recompute every figure: rows_json."""


def start_session(
    stand_in: bool, autoguidance: Path | None = None, ag_fix: bool = True, family: str = "flow"
) -> Session:
    from comfy_server import comfyui_dir

    base = Path(tempfile.mkdtemp(prefix="w2sd-learned-"))
    source = comfyui_dir()
    if stand_in:
        from fixtures.checkpoints import install_fixtures

        models = install_fixtures(base, source)
        names = None
    else:
        import learned_models

        models = learned_models.install_learned_models(base, source)
        names = learned_models
    c = comfyui.start(base, models)
    session = Session(c, names, family)
    if autoguidance is not None:
        session.peers["ComfyUI-AutoGuidance"] = comfyui.load_peer(c, autoguidance, AUTOGUIDANCE_NODE)
        if ag_fix:
            encode_autoguidance_bad_conds(c)
            session.peers["ComfyUI-AutoGuidance"] += " + encode_autoguidance_bad_conds"
    return session


def encode_autoguidance_bad_conds(c: Any) -> None:
    """Make ComfyUI-AutoGuidance run on SD3-family models (these digit MMDiTs) without touching its math.

    As shipped (5c72aa5) its guider hands the bad model's pass conditionings that the core never encoded
    for that model (no `c_crossattn`): SD1.5 / SDXL recover through its own retry on the shape error, an
    MMDiT fails (TypeError in layer_norm, ComfyUI 0.3.75 and 0.29.0). Encode them the way CFGGuider encodes
    the good model's, before its sampling loop (`--autoguidance-as-shipped` leaves the pack alone)."""
    import comfy.samplers

    guider = sys.modules[c.nodes.NODE_CLASS_MAPPINGS[AUTOGUIDANCE_NODE].__module__].Guider_AutoGuidanceCFG
    original = guider.inner_sample

    def inner_sample(
        self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kw
    ):
        self.bad_conds = comfy.samplers.process_conds(
            self.inner_bad_model, noise, self.bad_conds, device, latent_image, denoise_mask, seed
        )
        return original(
            self,
            noise,
            latent_image,
            device,
            sampler,
            sigmas,
            denoise_mask,
            callback,
            disable_pbar,
            seed,
            **kw,
        )

    guider.inner_sample = inner_sample


def run_benchmark(
    s: Session, judge: Judge, pairs: list[PairDef], rows: list[str], samplers: list[str], n: int,
    steps: int, batch: int, rounds: int, cfg_sweep: tuple[float, ...], log: Callable[[str], None] = print,
    guider_weights: tuple[float, ...] = GUIDER_WEIGHTS, on_row: Callable[[list[Result]], None] | None = None,
) -> list[Result]:  # fmt: skip
    import torch

    results = []
    for pair in pairs:
        with torch.inference_mode():
            setup = pair.build(s)
        for sampler in samplers:
            plan: list[Row] = []
            for name in rows:  # in the order asked for
                if name in ROWS:
                    plan.append(ROWS[name])
                elif name == "cfg_sweep":
                    plan += [
                        Row(f"cfg_{c:g}", f"stock cfg {c:g}", cfg=c) for c in cfg_sweep if c != setup.cfg
                    ]
                elif name in GUIDER_SWEEPS and (
                    setup.guided is None or (name == "dmg_two_loads_sweep" and setup.guided_two_loads is None)
                ):
                    log(f"{pair.key}: no such two-model form; {name} skipped")
                elif name in GUIDER_SWEEPS:
                    plan += guider_rows(name, guider_weights)
            for row in plan:
                run = sample_row(s, setup, row, n, sampler, steps, batch, SEED)
                values = judge.per_sample(run)
                figs, stats = judge.figures([pair.metric, *QUALITY], run, rounds, values)
                result = Result(
                    pair.key, sampler, row.name, row.label, run.nfe, len(run.images), run.wall, figs,
                    run.images[:36], pair.metric, stats,
                    setting=row_setting(row, setup, sampler, steps, s.family),
                    per_sample={**{k: values[k] for k in ROW_VALUES if k in values}, "classes": run.classes},
                )  # fmt: skip
                stock = next(
                    (r for r in results if (r.pair, r.sampler, r.row) == (pair.key, sampler, "stock")), None
                )
                if stock is not None and stock.n == result.n:
                    for m in (pair.metric, "frechet"):
                        result.delta[m] = paired_difference(stats[m], stock.stats[m], result.n, rounds)
                results.append(result)
                if on_row is not None:
                    on_row(results)
                log(
                    f"{pair.key:12s} {sampler:20s} {row.name:16s} NFE {run.nfe:3d}  {pair.metric} "
                    f"{result.target.text()}  frechet {result.quality.text(2)}  ({run.wall:.1f} s, n={result.n})"
                )
    return results


# ---------------------------------------------------------------------------------------------------
# Rows as data: every judged sample, so tables and figures can be redrawn without sampling again
# ---------------------------------------------------------------------------------------------------

ROWS_DIR = ROOT / "benchmarks" / "results" / "learned_rows"
ROWS_FORMAT = 1
ROW_VALUES = ("pred", "nn_distance", "out_of_range", "digits")
"""Per-sample values a row keeps (with `classes`): Judge.stat recomputes every metric from them. Digits are
stored rounded to 1e-4 (Frechet distances recomputed from them agree with the table's two decimals)."""


def row_setting(row: Row, setup: Setup, sampler: str, steps: int, family: str = "flow") -> dict[str, Any]:
    """What a row ran, as the node inputs that differ between rows."""
    sampler_name, scheduler = sampler_and_scheduler(sampler, family)
    out: dict[str, Any] = {"sampler_name": sampler_name, "scheduler": scheduler}
    if row.guider is not None:
        cfg = {} if "cfg" in row.guider.inputs else {"cfg": setup.cfg}
        out.update(node=row.guider.node, steps=steps, **cfg, **row.guider.inputs)
        if row.guider.two_loads:
            out["weak_on_a_second_load"] = True
    elif row.reflection is None:
        cfg = setup.cfg if row.cfg is None else row.cfg
        out.update(node="KSampler", steps=row.steps(steps) if row.steps else steps, cfg=cfg)
    else:
        out.update(node="W2SDKSampler", steps=steps, cfg=setup.cfg, **row.reflection)
    return out


def rows_json(results: list[Result], meta: dict[str, Any]) -> dict[str, Any]:
    """The run's rows with their per-sample values (see load_rows)."""

    def values(r: Result) -> dict[str, Any]:
        v = r.per_sample
        return {
            "classes": v["classes"].astype(int).tolist(),
            "pred": v["pred"].astype(int).tolist(),
            "nn_distance": np.round(v["nn_distance"].astype(float), 6).tolist(),
            "out_of_range": np.round(v["out_of_range"].astype(float), 6).tolist(),
            "digits": np.round(v["digits"].astype(float).reshape(len(v["digits"]), 64), 4).tolist(),
        }

    rows = [
        {
            "pair": r.pair,
            "sampler": r.sampler,
            "row": r.row,
            "label": r.label,
            "metric": r.metric,
            "nfe": r.nfe,
            "n": r.n,
            "wall_s": round(r.wall, 1),
            "setting": r.setting,
            "figures": {m: [f.value, f.low, f.high] for m, f in r.figures.items()},
            "vs_stock": {m: [f.value, f.low, f.high] for m, f in r.delta.items()},
            "samples": values(r),
        }  # fmt: skip
        for r in results
        if r.per_sample
    ]
    return {"format": ROWS_FORMAT, **meta, "rows": rows}


def load_rows(
    paths: list[Path], rounds: int = BOOTSTRAP, against: str = "stock", pairs: set[str] | None = None
) -> list[Result]:
    """Results from rows files (a row already read from an earlier file is skipped), every figure and
    paired interval recomputed from the stored samples. Runs share their seeds, so rows of different runs
    pair sample by sample: the paired column is taken against the row `against` of the same pair and
    sampler, wherever it was run."""
    import judges

    results: list[Result] = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if data.get("format") != ROWS_FORMAT:
            raise ValueError(f"{path}: format {data.get('format')!r}, this script reads {ROWS_FORMAT}")
        judge = Judge(stand_in=False, minority=tuple(data["minority"]))
        for row in data["rows"]:
            if pairs is not None and row["pair"] not in pairs:
                continue
            if any((r.pair, r.sampler, r.row) == (row["pair"], row["sampler"], row["row"]) for r in results):
                continue
            v = {k: np.asarray(x) for k, x in row["samples"].items()}
            v["digits"] = v["digits"].reshape(-1, 8, 8).astype(np.float32)
            n = len(v["pred"])
            stats = {m: judge.stat(m, v, v["classes"]) for m in (row["metric"], *QUALITY)}
            results.append(
                Result(
                    row["pair"],
                    row["sampler"],
                    row["row"],
                    row["label"],
                    row["nfe"],
                    n,
                    row["wall_s"],
                    {m: bootstrap(f, n, rounds) for m, f in stats.items()},
                    judges.digit_to_image(v["digits"][:36]),
                    row["metric"],
                    stats,
                    setting=row["setting"],
                    per_sample=v,
                )  # fmt: skip
            )
    for result in results:
        ref = next(
            (r for r in results if (r.pair, r.sampler, r.row) == (result.pair, result.sampler, against)), None
        )
        if ref is not None and ref is not result and ref.n == result.n:
            for m in (result.metric, "frechet"):
                result.delta[m] = paired_difference(result.stats[m], ref.stats[m], result.n, rounds)
    return results


def verdict(pair: PairDef, results: list[Result], sampler: str) -> str:
    """Is W2SD (default window) beyond every stock row's trade-off (target and quality together)?"""
    by_row = {r.row: r for r in results if r.pair == pair.key and r.sampler == sampler}
    w = by_row.get("w2sd")
    stock = [
        r for name, r in by_row.items() if name == "stock" or name == "stock_nfe" or name.startswith("cfg_")
    ]
    if w is None or not stock:
        return "not measured"
    sign = 1 if pair.higher_is_better else -1
    # Quality: lower distance is better.
    dominated = [
        r
        for r in stock
        if sign * r.target.value >= sign * w.target.value and r.quality.value <= w.quality.value
    ]
    base = by_row.get("stock")
    gain = "" if base is None else f" (target {base.target.value:.3f} -> {w.target.value:.3f})"
    delta = w.delta.get(pair.metric)
    if delta is not None and not (delta.low > 0 if pair.higher_is_better else delta.high < 0):
        return f"NO: W2SD does not move the target beyond the paired interval ({delta.text()}){gain}"
    if dominated:
        names = ", ".join(r.label for r in dominated)
        return f"NO: {names} reaches W2SD's target at equal or better quality{gain}"
    missing = [
        what
        for what, ok in (
            ("stock at equal NFE", "stock_nfe" in by_row),
            ("the stock CFG sweep", any(name.startswith("cfg_") for name in by_row)),
        )
        if not ok
    ]
    if missing:
        return f"W2SD beats stock{gain}; not compared with {' or '.join(missing)} (rows not run)"
    return f"yes: no stock row (cfg sweep, equal NFE) reaches W2SD's target at its quality{gain}"


def markdown(pairs: list[PairDef], results: list[Result], meta: list[str], against: str = "stock") -> str:
    lines = ["# W2SD on trained models: the paper's pairs in miniature, through the nodes", ""]
    lines += [f"- {m}" for m in meta] + [""]
    for pair in pairs:
        for sampler in dict.fromkeys(r.sampler for r in results if r.pair == pair.key):
            lines += [f"## {pair.title} ({sampler})", ""]
            lines += [
                f"Target: `{pair.metric}` ({'higher' if pair.higher_is_better else 'lower'} is better"
                f"{'; ' + pair.reference if pair.reference else ''}). Quality, lower is better: `frechet` "
                "(classifier features vs held-out real digits), `nn_distance` (pixels to the nearest held-out "
                "digit), `out_of_range` (share of decoded pixels outside [0, 1]). [95% BCa bootstrap interval].",
                "",
                f"| row | NFE | {pair.metric} | vs {against} (paired) | frechet | vs {against} (paired) | nn_distance "
                "| out_of_range | n | wall s |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for r in results:
                if r.pair == pair.key and r.sampler == sampler:
                    f = r.figures
                    lines.append(
                        f"| {r.label} | {r.nfe} | {r.target.text()} | {_delta(r, r.metric, 3)} | "
                        f"{f['frechet'].text(2)} | {_delta(r, 'frechet', 2)} | "
                        f"{f['nn_distance'].text(3)} | {f['out_of_range'].text(3)} | {r.n} | {r.wall:.0f} |"
                    )
            lines += ["", f"Beyond stock's trade-off? {verdict(pair, results, sampler)}", ""]
    return "\n".join(lines) + "\n"


def _delta(r: Result, metric: str, digits: int) -> str:
    d = r.delta.get(metric)
    return "" if d is None else f"{d.value:+.{digits}f} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"


def figure(pairs: list[PairDef], results: list[Result], sampler: str, path: Path, grid: int = 4) -> None:
    """Decoded samples stock | W2SD | S2WD per pair, the target metric under each column."""
    from PIL import Image, ImageDraw, ImageFont

    cols = ("stock", "w2sd", "s2wd")
    tile, pad, label_w, text_h = 64 * grid // 2, 10, 170, 34
    rows = [p for p in pairs if any(r.pair == p.key and r.sampler == sampler for r in results)]
    sheet = Image.new("RGB", (label_w + 3 * (tile + pad), 24 + len(rows) * (tile + text_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:
        font = ImageFont.load_default()
    for c, name in enumerate(("stock", "W2SD", "S2WD")):
        draw.text((label_w + c * (tile + pad) + tile // 2, 12), name, fill="black", font=font, anchor="mm")
    for r, pair in enumerate(rows):
        y = 24 + r * (tile + text_h + pad)
        title = "\n".join(textwrap.wrap(pair.title, 22))
        draw.multiline_text((6, y + tile // 2), title, fill="black", font=font, anchor="lm")
        by_row = {x.row: x for x in results if x.pair == pair.key and x.sampler == sampler}
        for c, col in enumerate(cols):
            res = by_row.get(col)
            if res is None:
                continue
            x = label_w + c * (tile + pad)
            imgs = res.images[: grid * grid]
            g = np.ones((grid * 64, grid * 64, 3), dtype=np.float32)
            for i, im in enumerate(imgs):
                g[(i // grid) * 64 : (i // grid + 1) * 64, (i % grid) * 64 : (i % grid + 1) * 64] = im
            tile_img = Image.fromarray((g * 255).round().astype(np.uint8)).resize((tile, tile), Image.NEAREST)
            sheet.paste(tile_img, (x, y))
            draw.text(
                (x + tile // 2, y + tile + 4),
                f"{pair.metric} {res.target.value:.2f}\n[{res.target.low:.2f}, {res.target.high:.2f}]",
                fill="black", font=font, anchor="ma", align="center",
            )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


# ---------------------------------------------------------------------------------------------------
# Pair definitions
# ---------------------------------------------------------------------------------------------------


def _stand_in_cfg_gap(s: Session) -> Setup:
    from fixtures.checkpoints import SD3_MINI

    model, clip, vae = s.checkpoint(SD3_MINI)
    pair = s.c.execute("W2SDCFGGap", strong_cfg=3.0, weak_cfg=0.0)[0]
    jobs = [Job(f"a handwritten digit {k}", s.encode(clip, f"a handwritten digit {k}"), s.encode(clip, ""), pair, k)
            for k in range(10)]  # fmt: skip
    return Setup(model, model, vae, 1.0, jobs)


STAND_IN_PAIRS = [
    PairDef("cfg", "CFG gap (stand-in: random weights)", "prompt_accuracy", True, _stand_in_cfg_gap)
]


def learned_pairs(lora_scales: dict[str, float] | None = None, family: str = "flow") -> list[PairDef]:
    """The paper's pair types on one family of learned models (tools/learned_models.py: pairs); `lora_scales`
    (main, strong, weak) replaces the LoRA pairs' splitter scales."""
    import learned_models as lm

    spec = lm.pairs(family)
    for key in ("lora", "lora_cfg"):
        if lora_scales and key in spec:
            spec[key]["scales"] = dict(lora_scales)

    def lora_split(s: Session, key: str) -> tuple[Any, Any, Any, Any, Any]:
        base, clip, vae = s.checkpoint(spec[key]["checkpoint"])
        sc = spec[key]["scales"]
        model, pair, _ = s.c.execute(
            "W2SDLoraSplit", model=base, lora_name=spec[key]["lora"], main_scale=sc["main"],
            strong_scale=sc["strong"], weak_scale=sc["weak"],
        )  # fmt: skip
        stock = s.c.execute(
            "LoraLoaderModelOnly", model=base, lora_name=spec[key]["lora"], strength_model=sc["main"]
        )[0]
        return model, stock, clip, vae, pair

    def checkpoints(s: Session) -> Setup:
        p = spec["checkpoints"]
        strong, clip, vae = s.checkpoint(p["strong"])
        weak = s.checkpoint(p["weak"])[0]
        pair = s.c.execute("W2SDModelPair", strong_model=strong, weak_model=weak)[0]
        job = Job(p["positive"], s.encode(clip, p["positive"]), s.encode(clip, p["negative"]), pair)
        return Setup(strong, strong, vae, p["cfg"], [job], guided=(strong, weak))

    def lora(s: Session) -> Setup:
        p = spec["lora"]
        model, stock, clip, vae, pair = lora_split(s, "lora")
        job = Job(p["positive"], s.encode(clip, p["positive"]), s.encode(clip, p["negative"]), pair)
        # Guiders: the same LoRA on two loaders, at the scale stock samples with and at the weak side's.
        base = s.checkpoint(spec["lora"]["checkpoint"])[0]
        weak = s.c.execute(
            "LoraLoaderModelOnly", model=base, lora_name=p["lora"], strength_model=p["scales"]["weak"]
        )[0]
        import comfy.sd
        import folder_paths

        # A second, separate load of the base (what a user gets from a copy of the file).
        path = folder_paths.get_full_path_or_raise("checkpoints", spec["lora"]["checkpoint"])
        second = comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False)[0]
        weak_apart = s.c.execute(
            "LoraLoaderModelOnly", model=second, lora_name=p["lora"], strength_model=p["scales"]["weak"]
        )[0]
        return Setup(
            model, stock, vae, p["cfg"], [job], guided=(stock, weak), guided_two_loads=(stock, weak_apart)
        )

    def class_jobs(s: Session, clip: Any, negative: str, pair_of: Callable[[int], Any]) -> list[Job]:
        neg = s.encode(clip, negative)
        return [Job(lm.prompt(k), s.encode(clip, lm.prompt(k)), neg, pair_of(k), k) for k in range(10)]

    def cfg(s: Session) -> Setup:
        p = spec["cfg"]
        model, clip, vae = s.checkpoint(p["checkpoint"])
        pair = s.c.execute("W2SDCFGGap", strong_cfg=p["strong_cfg"], weak_cfg=p["weak_cfg"])[0]
        return Setup(model, model, vae, p["cfg"], class_jobs(s, clip, p["negative"], lambda k: pair))

    def prompt(s: Session) -> Setup:
        p = spec["prompt"]
        model, clip, vae = s.checkpoint(p["checkpoint"])
        raw = s.encode(clip, p["weak_positive"])

        def pair_of(k: int) -> Any:
            return s.c.execute(
                "W2SDModelPair", strong_positive=s.encode(clip, lm.prompt(k)), weak_positive=raw
            )[0]

        return Setup(model, model, vae, p["cfg"], class_jobs(s, clip, p["negative"], pair_of))

    def lora_cfg(s: Session) -> Setup:
        p = spec["lora_cfg"]
        model, stock, clip, vae, lora_pair = lora_split(s, "lora_cfg")
        pair = s.c.execute("W2SDCFGGap", strong_cfg=p["strong_cfg"], weak_cfg=p["weak_cfg"], pair=lora_pair)[
            0
        ]
        return Setup(model, stock, vae, p["cfg"], class_jobs(s, clip, p["negative"], lambda k: pair))

    builders = {"checkpoints": checkpoints, "lora": lora, "cfg": cfg, "prompt": prompt, "lora_cfg": lora_cfg}
    titles = {
        "checkpoints": "Two checkpoints (class ratio)",
        "lora": "LoRA {strong:+g} / {weak:+g}".format(**spec["lora"]["scales"]),
        "cfg": f"CFG gap {spec['cfg']['strong_cfg']:g} / {spec['cfg']['weak_cfg']:g}",
        "prompt": "Refined vs raw prompt",
        "lora_cfg": "LoRA + CFG gap",
    }
    if family != "flow":
        unet = "distilled EPS" if family == "eps_distilled" else family.upper()
        titles = {key: f"{title}, {unet} UNet" for key, title in titles.items()}
    defs = []
    for key, build in builders.items():
        if key not in spec:
            continue
        reference = ""
        if spec[key]["metric"] == "minority_share":
            digits = spec[key]["minority"]
            reference = f"digits {', '.join(map(str, digits))}; the data's share: {data_share(digits):.3f}"
        defs.append(PairDef(key, titles[key], spec[key]["metric"], True, build, reference))
    return defs


def data_share(digits: tuple[int, ...]) -> float:
    """Share of these digits among the held-out real digits, as the classifier sees them."""
    import judges

    return float(judges.class_shares(judges.load_digits().test_x)[list(digits)].sum())


def weights_id(stand_in: bool, family: str = "flow") -> str:
    if stand_in:
        return "random-weight SD3 fixture (stand-in)"
    import learned_models

    m = learned_models.manifest(family)
    return f"benchmarks/learned_weights/{learned_models.MANIFESTS[family]} source_hash {m.get('source_hash')}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", default="all", help="comma list of pair keys, or all")
    p.add_argument("--rows", default="all", help=f"comma list of {', '.join(ROWS)}, cfg_sweep; or all")
    p.add_argument("--samplers", default="euler", help=f"comma list of {', '.join(SAMPLERS)}; or all")
    p.add_argument("--samples", type=int, default=500, help="samples per row (default 500)")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--cfgs", default=",".join(f"{c:g}" for c in CFG_SWEEP), help="the cfg_sweep row's values")
    p.add_argument(
        "--guider-weights", default=",".join(f"{w:g}" for w in GUIDER_WEIGHTS),
        help="the guider sweeps' weights (DualModelGuider cfg, AutoGuidance w_autoguide or paper weight)",
    )  # fmt: skip
    p.add_argument(
        "--autoguidance", type=Path, default=os.environ.get("W2SD_AUTOGUIDANCE"),
        help="a ComfyUI-AutoGuidance checkout, loaded as a custom node for the ag_* rows ($W2SD_AUTOGUIDANCE)",
    )  # fmt: skip
    p.add_argument(
        "--autoguidance-as-shipped", action="store_true",
        help="do not encode its bad pass's conditionings (encode_autoguidance_bad_conds): fails on these models",
    )  # fmt: skip
    p.add_argument("--batch", type=int, default=250, help="samples per node call")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help="bootstrap rounds per figure")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--lora-scales", default=None, metavar="MAIN,STRONG,WEAK",
        help="the LoRA pairs' splitter scales (default: tools/learned_models.py's 0.8,1.5,-1.5)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help=f"100 samples, rows {', '.join(QUICK_ROWS)}")
    p.add_argument("--stand-in", action="store_true", help="random-weight SD3 fixture: plumbing only")
    p.add_argument(
        "--family", choices=list(FAMILIES), default="flow",
        help="the learned models: flow (SD3 MMDiTs, default), eps or v (SD1.5 UNets; euler: the normal schedule), "
        "eps_distilled (the EPS UNets distilled to 4 steps; euler: sgm_uniform)",
    )  # fmt: skip
    p.add_argument("--no-write", action="store_true", help="print only; leave results/ and docs/ alone")
    p.add_argument(
        "--results", type=Path, default=RESULTS, help=f"markdown table (default {RESULTS.relative_to(ROOT)})"
    )
    p.add_argument(
        "--figure", type=Path, default=FIGURE, help=f"sample grids (default {FIGURE.relative_to(ROOT)})"
    )
    p.add_argument(
        "--rows-json", type=Path, default=None,
        help=f"every row's per-sample values (default {ROWS_DIR.relative_to(ROOT)}/<run start, UTC>.json)",
    )  # fmt: skip
    p.add_argument(
        "--redraw", type=Path, nargs="+", default=None, metavar="ROWS_JSON",
        help="sample nothing: print the tables of these rows files, every figure recomputed from their samples",
    )  # fmt: skip
    p.add_argument(
        "--against", default="stock", help="--redraw: the row the paired columns are taken against"
    )
    args = p.parse_args(argv)
    if args.redraw:
        return redraw(args.redraw, args.bootstrap, args.against)

    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        args.samples, args.rows = min(args.samples, 100), ",".join(QUICK_ROWS)
    rows = list(ROWS) + ["cfg_sweep"] if args.rows == "all" else args.rows.split(",")
    if "guiders" in rows:
        rows[rows.index("guiders") : rows.index("guiders") + 1] = list(GUIDER_SWEEPS)
    unknown = [r for r in rows if r not in ROWS and r != "cfg_sweep" and r not in GUIDER_SWEEPS]
    if unknown:
        p.error(
            f"--rows: {', '.join(unknown)} unknown (allowed: {', '.join(ROWS)}, cfg_sweep, "
            f"{', '.join(GUIDER_SWEEPS)}, guiders)"
        )
    samplers = list(SAMPLERS) if args.samplers == "all" else args.samplers.split(",")
    if bad := [x for x in samplers if x not in SAMPLERS]:
        p.error(f"--samplers: {', '.join(bad)} unknown (allowed: {', '.join(SAMPLERS)})")

    lora_scales = None
    if args.lora_scales:
        try:
            main_s, strong_s, weak_s = (float(v) for v in args.lora_scales.split(","))
        except ValueError:
            p.error(f"--lora-scales: {args.lora_scales!r} is not three numbers MAIN,STRONG,WEAK")
        lora_scales = {"main": main_s, "strong": strong_s, "weak": weak_s}
    wants_ag = any(r in GUIDER_SWEEPS and not r.startswith("dmg_") for r in rows)
    if wants_ag and args.autoguidance is None:
        print(
            "[W2SD] AutoGuidance rows skipped: no ComfyUI-AutoGuidance checkout given "
            "(--autoguidance PATH or $W2SD_AUTOGUIDANCE)"
        )
        rows = [r for r in rows if r not in GUIDER_SWEEPS or r.startswith("dmg_")]
    if args.stand_in and args.family != "flow":
        p.error("--stand-in is the SD3 fixture: use it without --family")
    s = start_session(
        args.stand_in, args.autoguidance if wants_ag else None, not args.autoguidance_as_shipped, args.family
    )
    dmg = [r for r in rows if r.startswith("dmg_")]
    if dmg and "DualModelGuider" not in s.c.nodes.NODE_CLASS_MAPPINGS:
        print(
            f"[W2SD] DualModelGuider rows skipped: ComfyUI {comfyui_version()} has no DualModelGuider node "
            "(experimental, in 0.29.0's comfy_extras/nodes_custom_sampler.py)"
        )
        rows = [r for r in rows if r not in dmg]
    all_pairs = STAND_IN_PAIRS if args.stand_in else learned_pairs(lora_scales, args.family)
    keys = [x.key for x in all_pairs] if args.pairs == "all" else args.pairs.split(",")
    if bad := [k for k in keys if k not in {x.key for x in all_pairs}]:
        p.error(f"--pairs: {', '.join(bad)} unknown (allowed: {', '.join(x.key for x in all_pairs)})")
    pairs = [x for x in all_pairs if x.key in keys]
    judge = Judge(args.stand_in, (0,) if args.stand_in else __import__("learned_models").MINORITY)
    start = time.perf_counter()
    started = datetime.now(timezone.utc)
    rows_path = args.rows_json or ROWS_DIR / f"{started:%Y-%m-%dT%H%MZ}.json"
    results: list[Result] = []

    def report(final: bool, partial: list[Result] | None = None) -> str:
        wall = time.perf_counter() - start
        meta = [
            f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {wall / 60:.1f} min"
            f"{'' if final else ' so far (interrupted or still running)'}: {machine()}",
            f"{args.steps} steps, {SIZE} px (8x8 latents), {args.samples} samples per row from fixed seeds, "
            f"{args.bootstrap} bootstrap rounds; weights: {weights_id(args.stand_in, args.family)}; command: `benchmarks/learned.py {' '.join(argv or sys.argv[1:])}`",
        ]
        if any(r in GUIDER_SWEEPS for r in rows):
            peers = "; ".join(f"{k}: {v}" for k, v in s.peers.items()) or "none loaded"
            meta.append(f"ComfyUI {comfyui_version()}; other packs: {peers}")
        done = results + (partial or [])
        text = markdown(pairs, done, meta)
        if not args.no_write:  # after every row, so a long run that stops keeps what it measured
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(text)
            figure(pairs, done, samplers[0], args.figure)
        if not args.no_write or args.rows_json:  # a rows file asked for by name is written all the same
            run_meta = {
                "run": f"{started:%Y-%m-%d %H:%M} UTC", "finished": final, "command": f"benchmarks/learned.py {' '.join(argv or sys.argv[1:])}",
                "machine": machine(), "comfyui": comfyui_version(), "family": args.family,
                "weights": weights_id(args.stand_in, args.family),
                "steps": args.steps, "samples": args.samples, "bootstrap": args.bootstrap, "seed": SEED,
                "minority": list(judge.minority), "peers": s.peers,
            }  # fmt: skip
            rows_path.parent.mkdir(parents=True, exist_ok=True)
            rows_path.write_text(json.dumps(rows_json(done, run_meta), separators=(",", ":")) + "\n")
        return text

    for pair in pairs:
        results += run_benchmark(
            s,
            judge,
            [pair],
            rows,
            samplers,
            args.samples,
            args.steps,
            args.batch,
            args.bootstrap,
            tuple(float(c) for c in args.cfgs.split(",")),
            guider_weights=tuple(float(w) for w in args.guider_weights.split(",")),
            on_row=lambda partial: report(final=False, partial=partial),  # a stopped run keeps every row
        )
        report(final=False)
    print(report(final=True))
    if not args.no_write:
        print(f"wrote {args.results}, {args.figure} and {rows_path}")
    return 0


def redraw(paths: list[Path], rounds: int, against: str = "stock") -> int:
    """The tables of saved rows files (load_rows), one per pair and sampler, without ComfyUI."""
    files = {path: json.loads(path.read_text()) for path in paths}
    families = sorted({data.get("family", "flow") for data in files.values()})  # older files: flow only
    if len(families) > 1:
        raise SystemExit(
            f"--redraw: these files hold rows of different model families ({', '.join(families)}): "
            "redraw each family on its own"
        )
    results = load_rows(paths, rounds, against)
    keys = dict.fromkeys(r.pair for r in results)
    pairs = [pd for pd in learned_pairs(family=families[0]) if pd.key in keys]
    meta = []
    for path, data in files.items():
        meta.append(f"{path.name}: run {data['run']}, {data['machine']}, ComfyUI {data['comfyui']}")
        meta.append(
            f"command: `{data['command']}`" + (f"; other packs: {data['peers']}" if data.get("peers") else "")
        )
    print(markdown(pairs, results, meta, against))
    return 0


def comfyui_version() -> str:
    from comfy_server import comfyui_dir
    from learned_models import comfyui_version as read

    return read(comfyui_dir())


if __name__ == "__main__":
    sys.exit(main())
