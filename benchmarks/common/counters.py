"""Counters: hooks on ComfyUI's classes, the same for stock and W2SD (benchmarks/perf.py, perf_h2h.py,
learned.py and tests/nodes/test_perf_counters.py count through these). ComfyUI is imported when
`instrument` is entered, never at module import."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy_server import PACK_LINK_NAME

from common import ROOT

HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
ROLE_KEY = "w2sd_role"


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


def role_of(options: Any) -> str:
    if not isinstance(options, dict):
        return "main"
    return options.get("transformer_options", {}).get(ROLE_KEY, "main")


@contextlib.contextmanager
def patched(owner: Any, name: str, make: Callable[[Any], Any]) -> Iterator[None]:
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
            c.nfe[role_of(options)] += 1
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
        stack.enter_context(patched(comfy.samplers.CFGGuider, "outer_predict_noise", nfe_hook))
        stack.enter_context(patched(comfy.model_base.BaseModel, "apply_model", pass_hook))
        stack.enter_context(patched(comfy.samplers.KSAMPLER, "sample", loop_end_hook))
        stack.enter_context(patched(comfy.lora, "calculate_weight", phase_counter(c.weight_patches)))
        stack.enter_context(patched(comfy.model_management, "load_models_gpu", phase_counter(c.load_calls)))
        for name in ("load", "partially_load", "partially_unload", "detach", "unpatch_model"):
            stack.enter_context(patched(patcher, name, phase_counter(c.weight_moves)))
        if host_reads:
            for name in HOST_READS:
                stack.enter_context(patched(torch.Tensor, name, host_read_hook(name)))
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


@contextlib.contextmanager
def count_model_evaluations() -> Iterator[list[int]]:
    """Calls of comfy.samplers.calc_cond_batch: one per model evaluation of a step, its conds batched as
    ComfyUI batches them (stock's cond and uncond: one), however ComfyUI then splits the batch to fit
    memory (network passes do depend on that). DualModelGuider and AutoGuidance make theirs there."""
    import comfy.samplers

    calls = [0]

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            return original(*args, **kwargs)

        return counted

    with patched(comfy.samplers, "calc_cond_batch", make):
        yield calls
