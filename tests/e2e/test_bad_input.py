"""Bad input through the real server: every case gets a message naming the input, the value and what is
allowed (validation before running where it can be known, an execution error otherwise), and the very
next prompt on the same server gives the correct stock result."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from comfy_server import ComfyError
from fixtures.checkpoints import SD3_MINI, SD15_MINI, SD15_MINI_CONTROLNET, SD15_MINI_LORA
from graph_fuzz import PICKLE_MARKER, write_hostile_files
from graphs import (
    add_cfg_gap,
    add_checkpoint,
    add_lora_split,
    add_model_pair,
    base_graph,
    guider_graph,
    w2sd_graph,
)
from safetensors.torch import save_file

SEED = 77


def cfg_graph(**reflection):
    g = base_graph(SD15_MINI, seed=SEED)
    return w2sd_graph(g, add_cfg_gap(g), **{"window": "steps", "reflect_steps": -1, **reflection})


def with_input(graph, node, **inputs):
    g = copy.deepcopy(graph)
    g[node]["inputs"].update(inputs)
    return g


def lora_graph(lora, **scales):
    g = base_graph(SD15_MINI, seed=SEED)
    model, pair = add_lora_split(g, lora, **scales)
    return w2sd_graph(g, pair, model=model, window="steps", reflect_steps=-1)


def pair_graph(**pair_inputs):
    g = base_graph(SD15_MINI, seed=SEED)
    extra = pair_inputs.pop("extra", {})
    g.update(extra)
    return w2sd_graph(g, add_model_pair(g, **pair_inputs), window="steps", reflect_steps=-1)


def sd3_strong():
    g = base_graph(SD15_MINI, seed=SEED)
    return w2sd_graph(
        g, add_model_pair(g, strong_model=add_checkpoint(g, SD3_MINI)), window="steps", reflect_steps=-1
    )


def sd3_conditioning():
    g = base_graph(SD15_MINI, seed=SEED)
    sd3 = add_checkpoint(g, SD3_MINI)
    g["25"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": [sd3[0], 1]}}
    return w2sd_graph(g, add_model_pair(g, strong_positive=["25", 0]), window="steps", reflect_steps=-1)


def sd3_latent_into_sd15():
    g = cfg_graph()
    g["26"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD3_MINI}}
    g["27"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x808080},
    }
    g["28"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["27", 0], "vae": ["26", 2]}}
    g["3"]["inputs"]["latent_image"] = ["28", 0]
    return g


def split_pair_on_other_model():
    """The splitter's pair used with the checkpoint's own MODEL instead of the splitter's MODEL output."""
    g = base_graph(SD15_MINI, seed=SEED)
    _, pair = add_lora_split(g, SD15_MINI_LORA)
    return w2sd_graph(g, pair, window="steps", reflect_steps=-1)


def reference_inversion_on_flow():
    g = base_graph(SD3_MINI, seed=SEED, cfg=4.0)
    return w2sd_graph(g, add_cfg_gap(g, 4.0, 1.0), window="steps", reflect_steps=-1, inversion="reference")


def video_latent(graph):
    """The graph's sampler fed an empty 5-D (Hunyuan video) latent instead of the image one."""
    g = copy.deepcopy(graph)
    g["5"] = {
        "class_type": "EmptyHunyuanLatentVideo",
        "inputs": {"width": 64, "height": 64, "length": 1, "batch_size": 1},
    }
    return g


def split_with_plain_checkpoint_as_weak(build=None):
    """The splitter's MODEL into the sampler and a model pair whose weak side is the plain checkpoint."""
    g = base_graph(SD15_MINI, seed=SEED)
    model, _ = add_lora_split(g, SD15_MINI_LORA)
    pair = add_model_pair(g, weak_model=["4", 0])
    return (build or w2sd_graph)(g, pair, model=model, window="steps", reflect_steps=-1)


def split_guider_with_plain_checkpoint_as_weak():
    def build(g, pair, model, **reflection):
        g["3"]["inputs"]["model"] = model
        return guider_graph(g, pair, **reflection)

    return split_with_plain_checkpoint_as_weak(build)


def guider(**reflection):
    g = base_graph(SD15_MINI, seed=SEED)
    return guider_graph(g, add_cfg_gap(g), **{"window": "steps", "reflect_steps": -1, **reflection})


# (case id, graph builder, substrings the message must contain: the input and the value or the rule)
CASES = [
    ("steps 0", lambda: with_input(cfg_graph(), "3", steps=0), ["steps", "0"]),
    ("steps 1", lambda: with_input(cfg_graph(), "3", steps=1), ["selects no step", "1-step"]),
    ("steps over max", lambda: with_input(cfg_graph(), "3", steps=100000), ["steps", "100000"]),
    ("cfg negative", lambda: with_input(cfg_graph(), "3", cfg=-1.0), ["cfg", "-1"]),
    ("cfg over max", lambda: with_input(cfg_graph(), "3", cfg=1000.0), ["cfg", "1000"]),
    ("denoise over 1", lambda: with_input(cfg_graph(), "3", denoise=1.5), ["denoise", "1.5"]),
    (
        "denoise tiny",
        lambda: with_input(cfg_graph(), "3", denoise=2.2e-308),
        ["denoise=2.2e-308", "too small"],
    ),
    ("denoise negative", lambda: with_input(cfg_graph(), "3", denoise=-0.1), ["denoise", "-0.1"]),
    ("seed negative", lambda: with_input(cfg_graph(), "3", seed=-5), ["seed", "-5"]),
    ("unknown sampler", lambda: with_input(cfg_graph(), "3", sampler_name="nope"), ["sampler_name", "nope"]),
    ("unknown scheduler", lambda: with_input(cfg_graph(), "3", scheduler="nope"), ["scheduler", "nope"]),
    ("unknown mode", lambda: with_input(cfg_graph(), "3", mode="W3SD"), ["mode", "W3SD"]),
    ("unknown window", lambda: with_input(cfg_graph(), "3", window="timestep"), ["window", "timestep"]),
    ("unknown inversion", lambda: with_input(cfg_graph(), "3", inversion="exact"), ["inversion", "exact"]),
    ("reflect_steps below -1", lambda: cfg_graph(reflect_steps=-2), ["reflect_steps", "-2"]),
    ("reflect_steps past schedule", lambda: cfg_graph(reflect_steps=6), ["reflect_steps=6", "steps=6"]),
    (
        "reflect_steps past denoised schedule",
        lambda: with_input(cfg_graph(reflect_steps=5), "3", denoise=0.5, steps=3),
        ["reflect_steps=5"],
    ),
    (
        "start_percent over 1",
        lambda: cfg_graph(window="percent", start_percent=1.5),
        ["start_percent", "1.5"],
    ),
    ("end_percent negative", lambda: cfg_graph(window="percent", end_percent=-0.5), ["end_percent", "-0.5"]),
    (
        "start after end",
        lambda: cfg_graph(window="percent", start_percent=0.8, end_percent=0.2),
        ["start_percent=0.8", "end_percent=0.2"],
    ),
    (
        "start after end, window in sigma",
        lambda: cfg_graph(window="sigma", start_percent=0.8, end_percent=0.2),
        ["start_percent=0.8", "end_percent=0.2", "window = sigma"],
    ),
    (
        "window selects nothing",
        lambda: cfg_graph(window="percent", start_percent=0.95, end_percent=1.0),
        ["selects no step", "6-step"],
    ),
    (
        "inversion_iters over max",
        lambda: cfg_graph(inversion="fixed_point", inversion_iters=500),
        ["inversion_iters", "500"],
    ),
    ("reference inversion on a flow model", reference_inversion_on_flow, ["inversion='reference'", "EPS"]),
    (
        "equal budget with steps 1",
        lambda: with_input(cfg_graph(equal_budget=True), "3", steps=1),
        ["equal_budget", "steps"],
    ),
    ("guider with equal budget", lambda: guider(equal_budget=True), ["equal_budget"]),
    (
        "reuse_strong in S2WD",
        lambda: cfg_graph(reuse_strong=True, mode="S2WD (diagnosis)"),
        ["reuse_strong", "S2WD"],
    ),
    ("guider window past schedule", lambda: guider(reflect_steps=40), ["reflect_steps=40"]),
    (
        "cfg gap without a gap",
        lambda: with_input(cfg_graph(), "20", strong_cfg=3.0, weak_cfg=3.0),
        ["strong_cfg=3.0", "weak_cfg=3.0"],
    ),
    (
        "cfg gap strong over max",
        lambda: with_input(cfg_graph(), "20", strong_cfg=500.0),
        ["strong_cfg", "500"],
    ),
    ("model pair with nothing", lambda: pair_graph(), ["nothing differs"]),
    ("model pair side cfg below -1", lambda: pair_graph(strong_cfg=-3.0, weak_cfg=0.0), ["strong_cfg", "-3"]),
    ("SD3 strong with SD1.5 sampler", sd3_strong, ["strong model", "latent format"]),
    ("SD3 conditioning on the strong side", sd3_conditioning, ["strong_positive", "text embeddings"]),
    ("SD3 latent into an SD1.5 sampler", sd3_latent_into_sd15, ["latent_image", "16 channels", "4"]),
    (
        "LoRA split pair with another MODEL",
        split_pair_on_other_model,
        ["LoRA-scale splitter", "MODEL output"],
    ),
    (
        "LoRA matching no layer",
        lambda: lora_graph("w2sd_test_unmatched.safetensors"),
        ["w2sd_test_unmatched", "matches no layer"],
    ),
    (
        "file that is not a LoRA",
        lambda: lora_graph("w2sd_test_not_a_lora.safetensors"),
        ["w2sd_test_not_a_lora", "not a LoRA"],
    ),
    ("LoHa is not supported", lambda: lora_graph("w2sd_test_loha.safetensors"), ["w2sd_test_loha", "LoHa"]),
    ("unknown LoRA name", lambda: lora_graph("missing.safetensors"), ["lora_name", "missing.safetensors"]),
    ("LoRA scale over max", lambda: lora_graph(SD15_MINI_LORA, strong=50.0), ["strong_scale", "50"]),
    # Found by a throwaway fuzzer (issue #25); each was a raw error or a silently wrong result before.
    (
        "LoRA split MODEL with the plain checkpoint as weak model",
        split_with_plain_checkpoint_as_weak,
        ["weak model", "LoRA split", "weak_scale to 0"],
    ),
    (
        "guider: LoRA split MODEL with the plain checkpoint as weak model",
        split_guider_with_plain_checkpoint_as_weak,
        ["weak model", "LoRA split", "weak_scale to 0"],
    ),
    ("cfg gap strong_cfg a dict", lambda: with_input(cfg_graph(), "20", strong_cfg={}), ["strong_cfg", "{}"]),
    ("steps not a number", lambda: with_input(cfg_graph(), "3", steps="abc"), ["steps", "abc"]),
    ("start_percent empty text", lambda: cfg_graph(window="percent", start_percent=""), ["start_percent"]),
    (
        "cfg gap strong_cfg NaN",
        lambda: with_input(cfg_graph(), "20", strong_cfg=float("nan")),
        ["strong_cfg=nan", "finite"],
    ),
    ("sampler cfg NaN", lambda: with_input(cfg_graph(), "3", cfg=float("nan")), ["cfg=nan", "finite"]),
    ("sampler denoise NaN", lambda: with_input(cfg_graph(), "3", denoise=float("nan")), ["denoise=nan"]),
    ("guider cfg NaN", lambda: with_input(guider(), "10", cfg=float("nan")), ["cfg=nan", "finite"]),
    (
        "model pair weak_cfg the text nan",
        lambda: pair_graph(strong_cfg=2.0, weak_cfg="nan"),
        ["weak_cfg=nan", "finite"],
    ),
    (
        "LoRA strong_scale NaN",
        lambda: lora_graph(SD15_MINI_LORA, strong=float("nan")),
        ["strong_scale=nan", "finite"],
    ),
    (
        "stop_ratio infinite",
        lambda: cfg_graph(stop_ratio=float("inf")),
        ["stop_ratio=inf", "finite"],
    ),
    (  # found by the fuzzer: a 5-D video latent into an image model (conv2d error inside torch)
        "video latent into an SD1.5 sampler",
        lambda: video_latent(cfg_graph()),
        ["latent_image", "3 dimensions", "video latent"],
    ),
    (
        "guider: video latent into SD1.5",
        lambda: video_latent(guider()),
        ["latent_image", "3 dimensions", "video latent"],
    ),
    (  # found by the long fuzz run: NaN sigmas from ComfyUI's kl_optimal at one step, then a NaN latent
        "kl_optimal with one step",
        lambda: with_input(cfg_graph(window="percent"), "3", steps=1, scheduler="kl_optimal"),
        ["steps", "scheduler", "kl_optimal"],
    ),
    (
        "equal budget down to one kl_optimal step",
        lambda: with_input(cfg_graph(equal_budget=True), "3", steps=2, scheduler="kl_optimal"),
        ["equal_budget", "kl_optimal"],
    ),
    (  # found by the long fuzz run: a TypeError inside ComfyUI's dpmpp_2m_cfg_pp
        "reuse_strong with a CFG++ sampler",
        lambda: with_input(cfg_graph(reuse_strong=True), "3", sampler_name="dpmpp_2m_cfg_pp"),
        ["reuse_strong", "dpmpp_2m_cfg_pp"],
    ),
    (
        "guider: reuse_strong with a CFG++ sampler",
        lambda: with_input(guider(reuse_strong=True), "11", sampler_name="gradient_estimation_cfg_pp"),
        ["reuse_strong", "gradient_estimation"],
    ),
    (
        "truncated LoRA file",
        lambda: lora_graph("fuzz_truncated.safetensors"),
        ["fuzz_truncated", "could not be read"],
    ),
    ("empty LoRA file", lambda: lora_graph("fuzz_empty.safetensors"), ["fuzz_empty", "could not be read"]),
    ("LoRA file of text", lambda: lora_graph("fuzz_text.safetensors"), ["fuzz_text", "could not be read"]),
    (
        "pickled LoRA that runs code",
        lambda: lora_graph("fuzz_pickle.pt"),
        ["fuzz_pickle.pt", "could not be read"],
    ),
    (
        "LoRA for another family's widths",
        lambda: lora_graph("fuzz_other_family.safetensors"),
        ["fuzz_other_family", "640"],
    ),
    (
        "LoRA name leaving its folder",
        lambda: lora_graph("../checkpoints/" + SD15_MINI),
        ["lora_name", "../checkpoints"],
    ),
    (
        "pair linked to a MODEL",
        lambda: with_input(cfg_graph(), "3", pair=["4", 0]),
        ["pair", "MODEL", "W2SD_PAIR"],
    ),
    ("pair given null", lambda: with_input(cfg_graph(), "3", pair=None), ["pair", "W2SD_PAIR", "None"]),
    (
        "strong_model given a number",
        lambda: pair_graph(strong_model=0.5),
        ["strong_model", "MODEL", "0.5"],
    ),
]


@pytest.fixture(scope="module")
def bad_files(server):
    """LoRA-folder files that are wrong in the ways users get them wrong."""
    loras = server.base_dir / "models" / "loras"
    save_file(
        {
            "lora_unet_no_such_block.lora_down.weight": torch.zeros(4, 8),
            "lora_unet_no_such_block.lora_up.weight": torch.zeros(8, 4),
        },
        str(loras / "w2sd_test_unmatched.safetensors"),
    )
    save_file({"some.weight": torch.zeros(3)}, str(loras / "w2sd_test_not_a_lora.safetensors"))
    key = "lora_unet_input_blocks_1_1_proj_in"
    save_file(
        {
            f"{key}.hada_w1_a": torch.zeros(320, 4),
            f"{key}.hada_w1_b": torch.zeros(4, 320),
            f"{key}.hada_w2_a": torch.zeros(320, 4),
            f"{key}.hada_w2_b": torch.zeros(4, 320),
            f"{key}.alpha": torch.tensor(4.0),
        },
        str(loras / "w2sd_test_loha.safetensors"),
    )
    write_hostile_files(server)  # truncated, empty, not safetensors, a code-running pickle, other widths
    assert (server.base_dir / "models" / "controlnet" / SD15_MINI_CONTROLNET).exists()
    return loras


@pytest.fixture(scope="module")
def stock_reference(server):
    return server.run(base_graph(SD15_MINI, seed=SEED)).image


_fresh = itertools.count(2)


def stock_again(server):
    """The stock graph once more, made to run again rather than come from ComfyUI's output cache."""
    g = base_graph(SD15_MINI, seed=SEED)
    g["60"] = {
        "class_type": "LatentMultiply",
        "inputs": {"samples": ["5", 0], "multiplier": 1.0 + next(_fresh) * 1e-4},
    }
    g["3"]["inputs"]["latent_image"] = ["60", 0]
    return server.run(g).image


REFUSED_BEFORE_RUNNING = [
    "equal budget with steps 1",
    "guider with equal budget",
    "reuse_strong in S2WD",
    "reuse_strong with a CFG++ sampler",
    "start after end",
    "reflect_steps past schedule",
]
"""Refusals the widget values alone decide: ComfyUI's validation shows them before anything loads or runs (a
refusal while running also keeps that prompt's models until the server's next full garbage collection)."""


@pytest.mark.parametrize("case", REFUSED_BEFORE_RUNNING)
def test_a_refusal_the_widgets_decide_comes_before_the_prompt_runs(server, case):
    build = next(b for c, b, _ in CASES if c == case)
    with pytest.raises(ComfyError) as refused:
        server.run(build())
    assert "node_errors" in refused.value.details, (
        f"refused while running, not by validation:\n{refused.value}"
    )


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("build,expected", [(b, e) for _, b, e in CASES], ids=[c for c, _, _ in CASES])
def test_bad_input_gets_a_clear_message_and_the_next_prompt_is_stock(
    server, bad_files, stock_reference, build, expected
):
    message = server.run_error(build())
    for part in expected:
        assert part in message, f"{part!r} not in the message:\n{message}"
    assert "Traceback" not in message
    assert not (server.base_dir / PICKLE_MARKER).exists(), "a pickled LoRA ran code when loaded"
    assert np.array_equal(stock_again(server), stock_reference)
