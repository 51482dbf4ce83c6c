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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "tests", ROOT / "tools"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from comfy_server import PACK_LINK_NAME, comfyui_dir, prepare_base  # noqa: E402
from fixtures.checkpoints import (  # noqa: E402
    SD15_MINI,
    SD15_MINI_FINETUNE,
    SD15_MINI_LORA,
    comfyui_version,
    deterministic_fill,
    install_fixtures,
)

RESULTS = ROOT / "benchmarks" / "results" / "perf.md"
CACHE = ROOT / ".cache" / "perf"
BUILD_VERSION = "1"  # bump when the builder below changes what it writes

SEED = 7
CFG = 5.5
LORA_SCALES = {"main": 0.8, "strong": 1.5, "weak": -1.5}
PROMPT, REFINED, NEGATIVE = (
    "a red fox in the snow",
    "a red fox in the snow, detailed fur, sharp focus, golden hour",
    "blurry",
)
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
ROLE_KEY = "w2sd_role"

# Full-size UNet configs exactly as comfy.model_detection.detect_unet_config returns them (checked when built).
UNET_CONFIGS: dict[str, dict[str, Any]] = {
    "sd15": {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "channel_mult": [1, 2, 4, 4],
        "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768,
        "use_temporal_resblock": False, "use_temporal_attention": False,
    },
    "sdxl": {
        "num_classes": "sequential", "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True,
        "legacy": False, "adm_in_channels": 2816, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "channel_mult": [1, 2, 4],
        "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048,
        "use_temporal_resblock": False, "use_temporal_attention": False,
    },
}  # fmt: skip
FAMILY = {"sd15": "SD15", "sdxl": "SDXL"}
LORA_TARGETS = re.compile(
    r"lora_unet_(down|mid|up)_blocks?_.*_(attn[12]_to_(q|k|v|out_0)|ff_net_0_proj|ff_net_2|proj_in|proj_out)$"
)

log = logging.getLogger("w2sd.perf")


# ---------------------------------------------------------------------------------------------------
# Counters: hooks on ComfyUI's classes, the same for stock and W2SD (tests/nodes/test_perf_counters.py
# imports these too). ComfyUI is imported when `instrument` is entered, never at module import.
# ---------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def code_origin(filename: str) -> str:
    """Who a frame belongs to: "w2sd" (this pack's files, also through the custom_nodes link), "comfy",
    "torch" or "other"."""
    real = Path(os.path.realpath(filename))
    for root in (ROOT, *(p for p in Path(filename).parents if p.name == PACK_LINK_NAME)):
        if real.is_relative_to(root) or Path(filename).is_relative_to(root):
            rel = (real if real.is_relative_to(root) else Path(filename)).relative_to(root).parts
            if rel and (rel[0] in ("nodes", "w2sd_core") or rel == ("__init__.py",)):
                return "w2sd"
            if rel and not rel[0].startswith("."):  # .venv, .comfyui: classified below
                return "other"
    real = str(real)
    if f"{os.sep}torch{os.sep}" in real:
        return "torch"
    if f"{os.sep}comfy{os.sep}" in real or f"{os.sep}comfy_extras{os.sep}" in real:
        return "comfy"
    return "other"


@dataclass
class Counters:
    """What one sampler node call did. "setup" = before the first model evaluation, "loop" = from the
    first evaluation until the sampler function returns."""

    nfe: Counter = field(default_factory=Counter)  # role -> guided-model evaluations
    passes: Counter = field(default_factory=Counter)  # (role, batch size) -> network passes
    rows: Counter = field(default_factory=Counter)  # role -> batch rows through the network
    weight_patches: Counter = field(default_factory=Counter)  # phase -> comfy.lora.calculate_weight calls
    load_calls: Counter = field(default_factory=Counter)  # phase -> load_models_gpu calls
    weight_moves: Counter = field(default_factory=Counter)  # phase -> ModelPatcher (re)loads / unloads
    host_reads: Counter = field(default_factory=Counter)  # (origin, op) -> calls inside the loop
    host_read_sites: Counter = field(default_factory=Counter)  # "file:line op" -> calls from w2sd code
    sync_warnings: int = 0  # CUDA: torch.cuda.set_sync_debug_mode("warn") reports inside the loop
    resident_missing: int = 0  # loop passes during which a required model was not loaded
    network_cpu: float = 0.0  # process CPU seconds spent inside BaseModel.apply_model (the network)
    required: tuple[Any, ...] = ()  # models (BaseModel) that must stay loaded through the loop
    in_loop: bool = False
    loop_done: bool = False
    pass_log: list[tuple[str, int, Any, Any]] = field(
        default_factory=list
    )  # (role, batch, c_crossattn, BaseModel)

    @property
    def phase(self) -> str:
        return "loop" if self.in_loop else "setup"

    @property
    def total_nfe(self) -> int:
        return sum(self.nfe.values())

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def host_reads_in_loop(self, origin: str | None = None) -> int:
        return sum(n for (o, _), n in self.host_reads.items() if origin is None or o == origin)

    def passes_text(self) -> str:
        """e.g. "main 20x2, strong 19x2, weak 19x1" (role, passes x batch)."""
        parts = []
        for role in ("main", "strong", "weak"):
            for (r, batch), n in sorted(self.passes.items()):
                if r == role:
                    parts.append(f"{role} {n}x{batch}")
        return ", ".join(parts)


def _role(options: Any) -> str:
    if not isinstance(options, dict):
        return "main"
    return options.get("transformer_options", {}).get(ROLE_KEY, "main")


@contextlib.contextmanager
def _patched(owner: Any, name: str, make: Callable[[Any], Any]) -> Iterator[None]:
    """Replace `owner.name` by `make(original)`; restore exactly (also when it was inherited)."""
    had_own = name in vars(owner)
    original = getattr(owner, name)
    setattr(owner, name, make(original))
    try:
        yield
    finally:
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


@contextlib.contextmanager
def instrument(
    counters: Counters, host_reads: bool = False, keep_inputs: bool = False, sync_debug: bool = False
) -> Iterator[Counters]:
    """Count NFE, passes, weight patches, loads (and, if asked, host reads) made while the block runs."""
    import comfy.lora
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.samplers
    import torch

    c = counters

    def nfe_hook(original):
        def outer_predict_noise(self, *args, **kwargs):
            options = kwargs.get("model_options", args[2] if len(args) > 2 else None)
            if not c.loop_done:
                c.in_loop = True
            c.nfe[_role(options)] += 1
            return original(self, *args, **kwargs)

        return outer_predict_noise

    def pass_hook(original):
        def apply_model(self, x, t, *args, **kwargs):
            to = kwargs.get("transformer_options", args[3] if len(args) > 3 else {}) or {}
            role = to.get(ROLE_KEY, "main")
            c.passes[(role, x.shape[0])] += 1
            c.rows[role] += x.shape[0]
            if keep_inputs:
                crossattn = kwargs.get("c_crossattn", args[1] if len(args) > 1 else None)
                c.pass_log.append((role, x.shape[0], crossattn, self))
            if c.required and c.in_loop:
                loaded = [m.model for m in comfy.model_management.loaded_models()]
                if any(all(r is not m for m in loaded) for r in c.required):
                    c.resident_missing += 1
            start = time.process_time()
            try:
                return original(self, x, t, *args, **kwargs)
            finally:
                c.network_cpu += time.process_time() - start

        return apply_model

    def loop_end_hook(original):
        def sample(self, *args, **kwargs):
            try:
                return original(self, *args, **kwargs)
            finally:
                c.in_loop, c.loop_done = False, True

        return sample

    def phase_counter(counter: Counter):
        def make(original):
            def counted(*args, **kwargs):
                counter[c.phase] += 1
                return original(*args, **kwargs)

            return counted

        return make

    def host_read_hook(name):
        def make(original):
            def read(self, *args, **kwargs):
                if c.in_loop:
                    frame = sys._getframe(1)
                    origin = code_origin(frame.f_code.co_filename)
                    c.host_reads[(origin, name)] += 1
                    if origin == "w2sd":
                        c.host_read_sites[
                            f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {name}"
                        ] += 1
                return original(self, *args, **kwargs)

            return read

        return make

    patcher = comfy.model_patcher.ModelPatcher
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(comfy.samplers.CFGGuider, "outer_predict_noise", nfe_hook))
        stack.enter_context(_patched(comfy.model_base.BaseModel, "apply_model", pass_hook))
        stack.enter_context(_patched(comfy.samplers.KSAMPLER, "sample", loop_end_hook))
        stack.enter_context(_patched(comfy.lora, "calculate_weight", phase_counter(c.weight_patches)))
        stack.enter_context(_patched(comfy.model_management, "load_models_gpu", phase_counter(c.load_calls)))
        for name in ("load", "partially_load", "partially_unload", "detach", "unpatch_model"):
            stack.enter_context(_patched(patcher, name, phase_counter(c.weight_moves)))
        if host_reads:
            for name in HOST_READS:
                stack.enter_context(_patched(torch.Tensor, name, host_read_hook(name)))
        caught = None
        if sync_debug and torch.cuda.is_available():
            caught = stack.enter_context(warnings.catch_warnings(record=True))
            warnings.simplefilter("always")
            previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
            stack.callback(torch.cuda.set_sync_debug_mode, previous)
        yield c
        if caught is not None:
            # Warnings are raised in both phases; the loop's are the ones between its markers, which
            # set_sync_debug_mode cannot tell apart: report all (setup reads are stock's too).
            c.sync_warnings = sum(1 for w in caught if "synchroniz" in str(w.message).lower())


# ---------------------------------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------------------------------


class PeakMemory:
    """Peak memory of one run: CPU = process peak RSS (VmHWM, reset via /proc/self/clear_refs; else a
    5 ms polling thread); CUDA = torch.cuda.max_memory_allocated."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._poll: threading.Thread | None = None
        self._stop = threading.Event()
        self._polled = 0
        self.method = "torch.cuda.max_memory_allocated" if device == "cuda" else "VmHWM (clear_refs)"
        if device != "cuda" and not self._can_clear():
            self.method = "RSS polled every 5 ms"

    @staticmethod
    def _can_clear() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    @staticmethod
    def rss() -> int:
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import psutil  # fallback for systems without /proc

            return int(psutil.Process().memory_info().rss)

    def current(self) -> int:
        if self.device == "cuda":
            import torch

            return int(torch.cuda.memory_allocated())
        return self.rss()

    def start(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        elif self.method.startswith("VmHWM"):
            Path("/proc/self/clear_refs").write_text("5")
        else:
            self._stop.clear()
            self._polled = self.rss()

            def poll() -> None:
                while not self._stop.wait(0.005):
                    self._polled = max(self._polled, self.rss())

            self._poll = threading.Thread(target=poll, daemon=True)
            self._poll.start()

    def stop(self) -> int:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            return int(torch.cuda.max_memory_allocated())
        if self.method.startswith("VmHWM"):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
            raise RuntimeError("no VmHWM in /proc/self/status")
        self._stop.set()
        if self._poll is not None:
            self._poll.join()
        return max(self._polled, self.rss())


# ---------------------------------------------------------------------------------------------------
# Full-size random-weight models (built in a child process, cached under .cache/perf/)
# ---------------------------------------------------------------------------------------------------


def model_files(model: str, lora_rank: int) -> tuple[str, str]:
    return f"{model}_random_unet.safetensors", f"{model}_random_lora_r{lora_rank}.safetensors"


def ensure_full_size(model: str, lora_rank: int, comfyui: Path) -> Path:
    """The cache folder with the random UNet and LoRA of `model`, built once per key."""
    key = hashlib.sha256(
        json.dumps(
            [BUILD_VERSION, model, UNET_CONFIGS[model], lora_rank, comfyui_version(comfyui)], sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    folder = CACHE / f"{model}-{key}"
    names = model_files(model, lora_rank)
    if all((folder / n).is_file() for n in names):
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{model}.building.", dir=CACHE))
    try:
        print(
            f"building the random-weight {model} UNet and rank-{lora_rank} LoRA into {folder} ...", flush=True
        )
        cmd = [
            sys.executable,
            __file__,
            "--build",
            model,
            "--build-out",
            str(tmp),
            "--lora-rank",
            str(lora_rank),
        ]
        subprocess.run(cmd, check=True)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.chmod(0o755)
        shutil.move(str(tmp), folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def build_full_size(model: str, out: Path, lora_rank: int) -> None:
    """Child process: random UNet (fp16) + a rank-r LoRA, checked through ComfyUI's detection."""
    sys.path.insert(0, str(comfyui_dir()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.lora
    import comfy.model_detection
    import safetensors.torch
    import torch

    config = UNET_CONFIGS[model]
    model_config = comfy.model_detection.model_config_from_unet_config(dict(config))
    base = model_config.get_model({})
    unet_sd = deterministic_fill(base.diffusion_model.state_dict(), salt=f"perf:{model}:")
    detected = comfy.model_detection.model_config_from_unet(unet_sd, "")
    if type(detected).__name__ != FAMILY[model] or detected.unet_config != model_config.unet_config:
        raise RuntimeError(f"the random {model} UNet is detected as {type(detected).__name__}")
    unet_name, lora_name = model_files(model, lora_rank)
    safetensors.torch.save_file({k: v.contiguous() for k, v in unet_sd.items()}, str(out / unet_name))
    shapes = {k: v.shape for k, v in unet_sd.items()}
    del unet_sd

    key_map = comfy.lora.model_lora_keys_unet(base, {})
    lora = {}
    for lora_key, weight_key in sorted(key_map.items()):
        if not LORA_TARGETS.match(lora_key):
            continue
        shape = shapes[weight_key.removeprefix("diffusion_model.")]
        kernel = tuple(shape[2:])
        lora[f"{lora_key}.lora_down.weight"] = torch.empty((lora_rank, shape[1], *kernel))
        lora[f"{lora_key}.lora_up.weight"] = torch.empty((shape[0], lora_rank, *([1] * len(kernel))))
    lora = deterministic_fill(lora, salt=f"perf-lora:{model}:")
    for k in [k for k in lora if k.endswith(".lora_down.weight")]:
        lora[k.replace(".lora_down.weight", ".alpha")] = torch.tensor(float(lora_rank), dtype=torch.float16)
    safetensors.torch.save_file(lora, str(out / lora_name))
    n_params = sum(math.prod(shape) for shape in shapes.values())
    print(f"built {unet_name} ({n_params / 1e6:.0f}M params) and {lora_name} ({len(lora) // 3} modules)")


# ---------------------------------------------------------------------------------------------------
# In-process ComfyUI (as tests/nodes/conftest.py does it)
# ---------------------------------------------------------------------------------------------------


@dataclass
class Comfy:
    source: Path
    base: Path
    nodes: Any

    def execute(self, class_type: str, **inputs: Any) -> tuple[Any, ...]:
        cls = self.nodes.NODE_CLASS_MAPPINGS[class_type]
        if hasattr(cls, "execute") and hasattr(cls, "GET_SCHEMA"):
            return tuple(cls.execute(**inputs).result)
        return tuple(getattr(cls(), cls.FUNCTION)(**inputs))


def start_comfyui(device: str, base: Path) -> Comfy:
    source = comfyui_dir()
    prepare_base(base, pack_dir=ROOT)
    install_fixtures(base, source)
    if str(source) not in sys.path:
        sys.path.insert(0, str(source))
    import comfy.cli_args

    comfy.cli_args.args.cpu = device == "cpu"
    comfy.cli_args.args.base_directory = str(base)
    import comfy.utils
    import folder_paths  # noqa: F401  (reads base_directory)

    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if not asyncio.run(nodes.load_custom_node(str(base / "custom_nodes" / PACK_LINK_NAME))):
        raise RuntimeError("ComfyUI could not load the pack")
    comfy.utils.PROGRESS_BAR_ENABLED = False  # the same for every sampler: no tqdm in the timings
    if device == "cuda":
        import comfy.model_management as mm

        if mm.get_torch_device().type != "cuda":
            raise RuntimeError(f"--device cuda, but ComfyUI runs on {mm.get_torch_device()}")
    return Comfy(source, base, nodes)


# ---------------------------------------------------------------------------------------------------
# The graph: models, conds, configurations
# ---------------------------------------------------------------------------------------------------


class Graph:
    """One model family at one size: the shared inputs, built lazily so that memory is attributed to the
    configuration that first needs it (configs run in order for the memory measurement)."""

    def __init__(
        self, c: Comfy, model: str, size: int, steps: int, lora_rank: int, sampler: str, scheduler: str
    ):
        self.c, self.model, self.size, self.steps = c, model, size, steps
        self.sampler, self.scheduler = sampler, scheduler
        self.lora_rank = lora_rank
        self._cache: dict[str, Any] = {}
        self.notes: list[str] = []
        if model != "tiny":
            folder = ensure_full_size(model, lora_rank, c.source)
            unet, lora = model_files(model, lora_rank)
            for name, sub in ((unet, "diffusion_models"), (lora, "loras")):
                target = c.base / "models" / sub / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(folder / name)
            import folder_paths

            folder_paths.add_model_folder_path(
                "diffusion_models", str(c.base / "models" / "diffusion_models"), is_default=True
            )
            folder_paths.add_model_folder_path("loras", str(c.base / "models" / "loras"), is_default=True)
            self.unet_name, self.lora_name = unet, lora
        else:
            self.lora_name = SD15_MINI_LORA

    def get(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = getattr(self, f"_make_{name}")()
        return self._cache[name]

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


# ---------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------


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


def machine(device: str, threads: int) -> str:
    import torch

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if cpu == "unknown CPU":
        cpu = platform.processor() or cpu
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, torch threads {threads}"
    if device == "cuda":
        text += f", GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return text


def code_version() -> str:
    """The commit measured, and whether the pack's code differs from it in the working tree."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "nodes", "w2sd_core", "__init__.py"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        # An exported tree (git archive) has no .git: say which commit it is through the environment.
        return os.environ.get("W2SD_PERF_CODE_VERSION", "code version unknown")
    return f"commit {commit}" + (" + uncommitted changes in the pack's code" if dirty else "")


def load_average() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


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
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        if r.error is not None:
            lines.append(f"| {r.config.name} | failed: {r.error} |" + " |" * (head.count("|") - 3))
            continue
        c = r.counters
        base = by_name.get(r.config.baseline) if r.config.baseline else (None if r is stock else stock)
        if base is None or base.error is not None:
            rel_nfe = rel_row = "1 (baseline)"
        else:
            w_nfe, c_nfe, w_row, c_row = ratios(r, base)
            tag = "" if base is stock else " (vs +LoRA)"
            rel_nfe, rel_row = f"{w_nfe:.3f} / {c_nfe:.3f}{tag}", f"{w_row:.3f} / {c_row:.3f}{tag}"
        delta = "" if stock is None or stock.error else f" ({(r.peak - stock.peak) / 2**20:+,.0f})"
        lines.append(
            f"| {r.config.name} | {r.wall:.3f} ({min(r.times):.3f}) | {r.cpu_time:.3f} | {c.total_nfe} "
            f"| {c.passes_text()} | {1000 * r.wall / c.total_nfe:.1f} | {rel_nfe} | {rel_row} "
            f"| {1000 * r.network_per_row:.1f} | {1000 * r.host_per_nfe:.2f} "
            f"| {mib(r.peak)}{delta} | {c.weight_patches['setup']} / {c.weight_patches['loop']} "
            f"| {c.load_calls['setup']} / {c.load_calls['loop']}; {c.weight_moves['loop']} "
            f"| {c.host_reads_in_loop()} ({c.host_reads_in_loop('w2sd')}) |"
        )
    return "\n".join(lines)


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


def write_section(path: Path, key: str, text: str) -> None:
    start, end = f"<!-- perf:{key} -->", f"<!-- /perf:{key} -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    old = (
        path.read_text()
        if path.exists()
        else (
            "# W2SD performance: what it costs beyond its model evaluations\n\n"
            "Made by `benchmarks/perf.py` (see its docstring for what each column counts). Every table is one run; "
            "ratios are taken within the run. Sections are replaced when the same model/device is re-run.\n\n"
        )
    )
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


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

    base = Path(tempfile.mkdtemp(prefix="w2sd_perf_"))
    try:
        c = start_comfyui(args.device, base)
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
                    f"Machine: {machine(args.device, args.threads)}; ComfyUI {comfyui_version(c.source)}; {code_version()}. "
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
                write_section(args.out, f"{model}:{args.device}", text)
                print(f"\nwritten to {args.out}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
