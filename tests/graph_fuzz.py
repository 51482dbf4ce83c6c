"""Hostile graphs for the W2SD nodes, generated from a live server's /object_info, and the oracle that
judges what the server did with each (issue #25).

A prompt is the stock txt2img graph of the tiny SD1.5 (plus a fine-tune, an SD3 checkpoint and its
prompt, for the wrong-family cases) with one to four W2SD pair nodes chained in any order and one or
two W2SD samplers (the KSampler, or the guider through SamplerCustomAdvanced) sharing the pair. Every
input of a W2SD node is drawn from what /object_info declares: mostly allowed values (small step
counts, so a prompt that runs takes a fraction of a second), sometimes hostile ones (NaN, inf, out of
range, the wrong type, strings, huge and non-ASCII text, paths that leave their folder, links to the
wrong output type, a missing input). LoRA names include broken files made by `write_hostile_files`.

The oracle, after every prompt (`Judge.check`):
- the server is alive and answers;
- a prompt refused before running names the node and the input (ComfyUI's node_errors), and never
  says "Traceback" or that the validation itself raised;
- a prompt that fails while running fails in a W2SD node (or the sampler node running the W2SD guider)
  with the pack's own ValueError, never a raw error from inside torch or ComfyUI;
- a prompt that runs returns finite latents of the input latent's shape;
- a prompt still running after `time_cap` seconds (a huge step count) stops on /interrupt;
- after any prompt that executed, the stock KSampler graph gives its reference image bit for bit.

Used by tests/e2e/test_graph_fuzz.py (a seeded, bounded run in CI) and benchmarks/fuzz.py (the long
run with counts and memory).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import pickle
import urllib.error
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from comfy_server import ComfyError, ComfyServer
from fixtures.checkpoints import SD3_MINI, SD15_MINI, SD15_MINI_FINETUNE, SD15_MINI_LORA
from graphs import W2SD_NODE_IDS, base_graph
from hypothesis import strategies as st

W2SD_NODES = W2SD_NODE_IDS
PAIR_NODES = ("W2SDModelPair", "W2SDLoraSplit", "W2SDCFGGap")
SEED = 5
PICKLE_MARKER = "w2sd_fuzz_pickle_ran"

# Links into the fixed part of every prompt, by type (node "26" is an SD3 checkpoint: the wrong family).
LINKS = {
    "MODEL": [["4", 0], ["22", 0], ["26", 0]],
    "CLIP": [["4", 1], ["26", 1]],
    "CONDITIONING": [["6", 0], ["7", 0], ["24", 0], ["25", 0]],
    "LATENT": [["5", 0], ["27", 0], ["28", 0], ["30", 0], ["31", 0], ["32", 0]],
}
WRONG_FAMILY = {
    ("MODEL", "26"), ("CLIP", "26"), ("CONDITIONING", "25"), ("LATENT", "27"), ("LATENT", "31"), ("LATENT", "32"),
}  # fmt: skip

HOSTILE_VALUES = [
    math.nan, math.inf, -math.inf, -1.0, -1e9, 1e9, 2**70, 0, "abc", "nan", "", "1e309", "-0",
    {}, [1], [1, 2, 3], None, True, "ü\u00e9\u4e2d\u6587" * 64, "x" * 5000, "../../../etc/passwd",
    "../" + SD15_MINI, "/etc/passwd", "C:\\Windows\\win.ini", "\x00",
]  # fmt: skip


def fixed_nodes() -> dict[str, Any]:
    """The stock part: SD1.5 mini (4) + prompts (6, 7, refined 24), fine-tune (22), SD3 (26) + prompt
    (25), latents: SD1.5 (5), SD3 16-channel (27), SD1.5 with a noise mask (28), SD1.5 batch of two (30),
    5-D video (31), 16-channel not empty (32)."""
    g = base_graph(SD15_MINI, seed=SEED, steps=3, size=32)
    del g["3"], g["8"], g["9"]
    g["22"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15_MINI_FINETUNE}}
    g["24"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a detailed fox", "clip": ["4", 1]}}
    g["26"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD3_MINI}}
    g["25"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["26", 1]}}
    g["27"] = {"class_type": "EmptySD3LatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}}
    g["29"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 16}}
    g["28"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["5", 0], "mask": ["29", 0]}}
    # A batch of two (the prompts' conditioning has one), a 5-D video latent, a non-empty 16-channel one.
    g["30"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 2}}
    g["31"] = {
        "class_type": "EmptyHunyuanLatentVideo",
        "inputs": {"width": 32, "height": 32, "length": 1, "batch_size": 1},
    }
    g["33"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0x808080},
    }
    g["32"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["33", 0], "vae": ["26", 2]}}
    return g


def latent_shape(g: dict[str, Any], link: list[Any]) -> tuple[int, ...]:
    """The shape a sampler's output must have for the latent it was given (fixed nodes only)."""
    source = link[0]
    while g[source]["class_type"] in ("SetLatentNoiseMask", "VAEEncode"):
        source = g[source]["inputs"]["samples" if g[source]["class_type"] != "VAEEncode" else "pixels"][0]
    inputs = g[source]["inputs"]
    # Every model that can run here is SD1.5-family (4 channels). The SD3 latent is an empty one, which
    # ComfyUI (and the W2SD samplers with it) turns into the model's channels, as the stock KSampler does.
    return (inputs["batch_size"], 4, inputs["height"] // 8, inputs["width"] // 8)


# --- strategies --------------------------------------------------------------------------------------


def allowed_value(name: str, declared: list[Any]) -> st.SearchStrategy[Any]:
    """Values the node allows, kept small where size costs time (steps, iterations)."""
    kind, options = declared[0], (declared[1] if len(declared) > 1 else {})
    if "default" in options and name != "steps":  # what the frontend sends unless changed; shrinks to it
        return st.one_of(st.just(options["default"]), any_allowed_value(name, kind, options))
    return any_allowed_value(name, kind, options)


def any_allowed_value(name: str, kind: Any, options: dict[str, Any]) -> st.SearchStrategy[Any]:
    if isinstance(kind, list):
        return st.sampled_from(kind) if kind else st.just("")
    if kind == "INT":
        low, high = options.get("min", 0), options.get("max", 2**31)
        if name == "steps":
            return st.integers(max(low, 1), 4)
        if name in ("reflect_steps", "inversion_iters", "start_at_step", "end_at_step"):
            return st.integers(low, min(high, 4))
        return st.integers(low, min(high, low + 1000))
    if kind == "FLOAT":
        low, high = options.get("min", -1e3), options.get("max", 1e3)
        return st.one_of(
            st.sampled_from([low, high, options.get("default", low)]),
            st.floats(low, high, allow_nan=False, allow_infinity=False),
        )
    if kind == "BOOLEAN":
        return st.booleans()
    if kind == "STRING":
        return st.text(max_size=20)
    return st.nothing()


def hostile_value(name: str, declared: list[Any]) -> st.SearchStrategy[Any]:
    kind, options = declared[0], (declared[1] if len(declared) > 1 else {})
    near = []
    if kind in ("INT", "FLOAT"):
        step = 1 if kind == "INT" else 0.01
        near = [v for v in (options.get("min"), options.get("max")) if v is not None]
        near = [near[0] - step, near[-1] + step] if near else []
    if name == "steps":
        near.append(10000)  # allowed, and runs until the judge interrupts it
    return st.sampled_from(near + HOSTILE_VALUES)


@dataclass
class Fuzzed:
    """A generated prompt and what the judge needs to know about it."""

    prompt: dict[str, Any]
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)  # SaveLatent node -> expected shape

    def w2sd_summary(self) -> str:
        return ", ".join(
            f"{k}:{v['class_type']}" for k, v in self.prompt.items() if v["class_type"] in W2SD_NODES
        )


@st.composite
def fuzzed_prompts(draw: st.DrawFn, info: dict[str, Any]) -> Fuzzed:
    """One hostile prompt built from the server's /object_info (`info`: W2SD node id -> its entry)."""
    g = fixed_nodes()
    hostility = draw(st.sampled_from([0, 0, 2, 8]))  # percent of inputs made hostile
    links = {k: list(v) for k, v in LINKS.items()}
    links["W2SD_PAIR"] = []
    ids = (str(n) for n in itertools.count(40))

    def link_for(kind: str) -> st.SearchStrategy[Any]:
        good = [link for link in links.get(kind, []) if (kind, link[0]) not in WRONG_FAMILY]
        return st.sampled_from(good) if good else st.nothing()

    def inputs_of(node_type: str, forced: dict[str, Any]) -> dict[str, Any]:
        spec = info[node_type]["input"]
        chosen: dict[str, Any] = {}
        for category in ("required", "optional"):
            for name, declared in spec.get(category, {}).items():
                if name in forced:
                    chosen[name] = forced[name]
                    continue
                kind = declared[0]
                is_link = isinstance(kind, str) and kind not in ("INT", "FLOAT", "BOOLEAN", "STRING")
                if category == "optional" and not draw(st.booleans()):
                    continue
                if draw(st.integers(0, 99)) < hostility:
                    pick = draw(st.integers(0, 3))
                    if pick == 0 and category == "required":
                        continue  # a missing input
                    if pick == 1 and is_link:  # any output, of any type or family
                        chosen[name] = draw(st.sampled_from([v for vs in links.values() for v in vs]))
                        continue
                    chosen[name] = draw(hostile_value(name, declared))
                    continue
                if is_link:
                    if not links.get(kind) and category == "optional":
                        continue
                    chosen[name] = draw(link_for(kind)) if links.get(kind) else None
                else:
                    chosen[name] = draw(allowed_value(name, declared))
        return chosen

    # A chain of pair nodes, each stacked on an earlier one (or none).
    for _ in range(draw(st.integers(1, 4))):
        node_type = draw(st.sampled_from(PAIR_NODES))
        node = next(ids)
        forced = {}
        if links["W2SD_PAIR"] and draw(st.booleans()):
            forced["pair"] = draw(st.sampled_from(links["W2SD_PAIR"]))
        if node_type == "W2SDLoraSplit" and draw(st.integers(0, 3)) > 0:
            forced["lora_name"] = SD15_MINI_LORA
        g[node] = {"class_type": node_type, "inputs": inputs_of(node_type, forced)}
        if node_type == "W2SDLoraSplit":
            links["MODEL"].append([node, 0])
            links["CLIP"].append([node, 2])
        links["W2SD_PAIR"].append([node, 1 if node_type == "W2SDLoraSplit" else 0])

    fuzzed = Fuzzed(g)
    # One or two samplers; a second one shares the first one's pair.
    shared_pair = draw(st.sampled_from(links["W2SD_PAIR"]))
    for _ in range(draw(st.integers(1, 2))):
        latent = draw(
            st.sampled_from([["5", 0], ["5", 0], ["28", 0], ["30", 0], ["27", 0], ["31", 0], ["32", 0]])
        )
        forced = {"pair": shared_pair, "latent_image": latent}
        if draw(st.booleans()):  # the last LoRA split's MODEL (or the checkpoint's), as users wire it
            forced["model"] = [link for link in links["MODEL"] if link[0] != "26"][-1]
        path = draw(st.sampled_from(["W2SDKSampler", "W2SDKSamplerAdvanced", "W2SDGuider"]))
        if path != "W2SDGuider":
            node = next(ids)
            g[node] = {"class_type": path, "inputs": inputs_of(path, forced)}
            out = [node, 0]
        else:
            latent = forced.pop("latent_image")
            guider, select, sigmas, noise, node = (next(ids) for _ in range(5))
            g[guider] = {"class_type": "W2SDGuider", "inputs": inputs_of("W2SDGuider", forced)}
            model = g[guider]["inputs"].get("model")
            g[select] = {
                "class_type": "KSamplerSelect",
                "inputs": {"sampler_name": draw(st.sampled_from(["euler", "dpmpp_2m", "uni_pc"]))},
            }
            g[sigmas] = {
                "class_type": "BasicScheduler",
                "inputs": {
                    "model": model if isinstance(model, list) else ["4", 0],
                    "scheduler": draw(st.sampled_from(["normal", "karras", "simple"])),
                    "steps": draw(st.integers(1, 4)),
                    "denoise": 1.0,
                },
            }
            g[noise] = {"class_type": "RandomNoise", "inputs": {"noise_seed": draw(st.integers(0, 99))}}
            g[node] = {
                "class_type": "SamplerCustomAdvanced",
                "inputs": {
                    "noise": [noise, 0],
                    "guider": [guider, 0],
                    "sampler": [select, 0],
                    "sigmas": [sigmas, 0],
                    "latent_image": latent,
                },
            }
            out = [node, 0]
        save = next(ids)
        g[save] = {"class_type": "SaveLatent", "inputs": {"samples": out, "filename_prefix": f"fuzz/{save}"}}
        fuzzed.outputs[save] = latent_shape(g, latent if isinstance(latent, list) else ["5", 0])
    return fuzzed


# --- hostile files -----------------------------------------------------------------------------------


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def write_hostile_files(server: ComfyServer) -> dict[str, str]:
    """LoRA-folder files that are broken in the ways files get broken; returns {name: what it is}."""
    import torch
    from safetensors.torch import save_file

    loras = server.base_dir / "models" / "loras"
    good = (loras / SD15_MINI_LORA).read_bytes()
    files = {
        "fuzz_truncated.safetensors": good[: len(good) // 3],
        "fuzz_empty.safetensors": b"",
        "fuzz_text.safetensors": b"this is not a safetensors file\n",
    }
    for name, data in files.items():
        (loras / name).write_bytes(data)
    marker = server.base_dir / PICKLE_MARKER
    with open(loras / "fuzz_pickle.pt", "wb") as f:
        pickle.dump({"lora_unet_x.lora_up.weight": _RunsCodeWhenUnpickled(marker)}, f)
    # Keys of the SD1.5 LoRA with other layer widths: a LoRA made for another family (SDXL-like).
    key = "lora_unet_input_blocks_1_1_proj_in"
    save_file(
        {f"{key}.lora_down.weight": torch.zeros(4, 640), f"{key}.lora_up.weight": torch.zeros(640, 4)},
        str(loras / "fuzz_other_family.safetensors"),
    )
    return {
        "fuzz_truncated.safetensors": "truncated",
        "fuzz_empty.safetensors": "empty",
        "fuzz_text.safetensors": "not safetensors",
        "fuzz_pickle.pt": "a pickle that runs code",
        "fuzz_other_family.safetensors": "another family's layer widths",
    }


# --- the oracle ----------------------------------------------------------------------------------------


class OracleFailure(AssertionError):
    pass


_fresh = itertools.count(2)


def stock_graph() -> dict[str, Any]:
    return base_graph(SD15_MINI, seed=SEED, steps=3, size=32)


def made_to_run(graph: dict[str, Any]) -> dict[str, Any]:
    """The graph executed again rather than served from ComfyUI's cache (same result)."""
    g = copy.deepcopy(graph)
    g["60"] = {
        "class_type": "LatentMultiply",
        "inputs": {"samples": g["3"]["inputs"]["latent_image"], "multiplier": 1.0 + next(_fresh) * 1e-4},
    }
    g["3"]["inputs"]["latent_image"] = ["60", 0]
    return g


class Judge:
    """Runs fuzzed prompts on one server and checks each against the oracle; counts outcomes."""

    def __init__(self, server: ComfyServer, info: dict[str, Any], time_cap: float = 20.0) -> None:
        self.server = server
        self.names = input_names(info)
        self.time_cap = time_cap
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()  # why prompts were refused while running (first words)
        self.reference = server.run(stock_graph()).image

    def check(self, fuzzed: Fuzzed) -> str:
        """The outcome of one prompt: refused (validation), refused_running, ran or interrupted."""
        try:
            return self._check(fuzzed)
        except (TimeoutError, ConnectionError, urllib.error.URLError) as e:
            raise OracleFailure(
                f"the server did not answer ({type(e).__name__}: {e})\n{fuzzed.w2sd_summary()}"
            ) from e

    def _check(self, fuzzed: Fuzzed) -> str:
        prompt = copy.deepcopy(fuzzed.prompt)
        nonce = next(_fresh)
        for node in fuzzed.outputs:  # a new file name each time: ComfyUI does not re-run a cached output
            prompt[node]["inputs"]["filename_prefix"] = f"fuzz/{node}_{nonce}"
        try:
            answer = self.server.request("/prompt", {"prompt": prompt, "client_id": self.server.client_id})
        except urllib.error.HTTPError as e:
            outcome = self._refused(json.loads(e.read() or b"{}"), fuzzed)
        else:
            # ComfyUI runs the outputs that validated and names the others' errors in the same answer.
            partly_refused = bool(answer.get("node_errors"))
            if partly_refused:
                self._refused(answer, fuzzed)
            outcome = self._ran(answer["prompt_id"], fuzzed, partly_refused)
        self._alive()
        if outcome != "refused":
            self._stock_unchanged(fuzzed)
        self.counts[outcome] += 1
        return outcome

    def _refused(self, answer: dict[str, Any], fuzzed: Fuzzed) -> str:
        node_errors = answer.get("node_errors", {})
        if not node_errors:
            raise OracleFailure(f"refused without naming a node: {answer}\n{fuzzed.w2sd_summary()}")
        for node_id, entry in node_errors.items():
            for error in entry.get("errors", []):
                text = f"{error.get('message')}: {error.get('details')}"
                if "Traceback" in text or error.get("type") == "exception_during_validation":
                    raise OracleFailure(
                        f"node {node_id} ({entry.get('class_type')}): validation raised: {text}"
                    )
                if not error.get("details") and not error.get("extra_info", {}).get("input_name"):
                    raise OracleFailure(f"node {node_id}: an error that names no input: {text}")
        return "refused"

    def _ran(self, prompt_id: str, fuzzed: Fuzzed, partly_refused: bool = False) -> str:
        outcome = "ran"
        try:
            try:
                entry = self.server.wait(prompt_id, timeout=self.time_cap)
            except TimeoutError:
                self.server.interrupt()
                outcome = "interrupted"
                entry = self.server.wait(prompt_id, timeout=60)  # raises if the queue is stuck
        except ComfyError as e:
            if e.message == "interrupted":
                return "interrupted"
            return self._failed_running(e, fuzzed)
        if outcome == "ran":
            self._latents_ok(entry["outputs"], fuzzed, partly_refused)
        return outcome

    def _failed_running(self, e: ComfyError, fuzzed: Fuzzed) -> str:
        error = e.details
        node_type = error.get("node_type", "")
        in_pack = node_type.startswith("W2SD") or node_type == "SamplerCustomAdvanced"
        if not in_pack:
            raise OracleFailure(
                f"a stock node ({node_type}) failed: {error.get('exception_type')}: {e.message}\n{fuzzed.w2sd_summary()}"
            )
        if error.get("exception_type", "").split(".")[-1] != "ValueError" or "Traceback" in e.message:
            raise OracleFailure(
                f"{node_type} failed with {error.get('exception_type')}: {e.message}\n{fuzzed.w2sd_summary()}"
            )
        if not names_an_input(e.message, self.names):
            raise OracleFailure(f"{node_type}: a message that names no input: {e.message}")
        self.reasons[" ".join(e.message.split()[:8])] += 1
        return "refused_running"

    def _latents_ok(self, outputs: dict[str, Any], fuzzed: Fuzzed, partly_refused: bool) -> None:
        import torch
        from safetensors.torch import load_file

        for node, shape in fuzzed.outputs.items():
            saved = outputs.get(node, {}).get("latents") or []
            if not saved and partly_refused:
                continue  # this output's branch was refused before running
            if len(saved) != 1:
                raise OracleFailure(f"SaveLatent {node} wrote {len(saved)} files")
            item = saved[0]
            path = self.server.base_dir / "output" / item.get("subfolder", "") / item["filename"]
            latent = load_file(str(path))["latent_tensor"]
            path.unlink()
            if tuple(latent.shape) != shape:
                raise OracleFailure(
                    f"latent {tuple(latent.shape)}, expected {shape}\n{fuzzed.w2sd_summary()}"
                )
            if not torch.isfinite(latent).all():
                raise OracleFailure(f"non-finite latent from {fuzzed.w2sd_summary()}")

    def _alive(self) -> None:
        if self.server.proc is not None and self.server.proc.poll() is not None:
            raise OracleFailure(f"the server died ({self.server.proc.returncode})\n{self.server.log_tail()}")
        self.server.request("/queue")
        if (self.server.base_dir / PICKLE_MARKER).exists():
            raise OracleFailure("a pickled LoRA file ran code when loaded")

    def _stock_unchanged(self, fuzzed: Fuzzed) -> None:
        image = self.server.run(made_to_run(stock_graph())).image
        if not np.array_equal(image, self.reference):
            raise OracleFailure(f"the stock KSampler's image changed after {fuzzed.w2sd_summary()}")


def input_names(info: dict[str, Any]) -> set[str]:
    """Every input name the W2SD nodes declare, but the words too common to count as naming one."""
    names = {n for entry in info.values() for part in entry["input"].values() for n in part}
    return names - {"model", "pair"}


def names_an_input(message: str, names: set[str]) -> bool:
    """Whether `message` names one of `names` ("weak_model" or "weak model")."""
    text = message.replace("_", " ")
    return any(name.replace("_", " ") in text for name in names)


def w2sd_info(server: ComfyServer) -> dict[str, Any]:
    info = server.object_info()
    missing = [n for n in W2SD_NODES if n not in info]
    if missing:
        raise RuntimeError(f"the server lists no {', '.join(missing)}")
    return {n: info[n] for n in W2SD_NODES}
