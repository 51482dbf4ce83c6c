"""The family example workflows (Z-Image, Qwen-Image and its edit, Flux.1, Wan 2.2: tools/example_workflows.py)
against a real server: each converts to API format from /object_info with every node type known, every
widget value valid and every required input given, and its W2SD nodes get what its note says.

They are validated, not executed: each family's text encoder is a fixed multi-billion-parameter model in the
core's loaders, so no tiny fixture stands in for it (test_workflows.py runs the others). They are saved from
ComfyUI 0.29.0's nodes, so only a core at least that new selects them: older ones lack widgets and nodes they
carry (test_older_cores_lack_what_the_family_workflows_carry checks which), and there the parametrized tests
have one case, skipped with that reason, instead of failing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import demo
import pytest
from comfy_server import comfyui_dir
from example_workflows import (
    CORE_0_29,
    FAMILY_WORKFLOWS,
    MODEL_FILE_INPUTS,
    WORKFLOW_DIR,
    core_version,
    for_core,
    runnable,
    shipped,
)
from workflow_api import FRONTEND_ONLY, invalid_values, ui_to_api

CORE = core_version(comfyui_dir())
FAMILY = [p for p in for_core(CORE) if p.stem in FAMILY_WORKFLOWS]
OLDER_CORE = (
    f"ComfyUI {'.'.join(map(str, CORE))} lacks nodes and widgets the family workflows carry "
    "(test_older_cores_lack_what_the_family_workflows_carry checks which)"
)
CASES = FAMILY or [pytest.param(None, marks=pytest.mark.skip(reason=OLDER_CORE))]

# What each note says about its W2SD nodes and the stages around them, as (class_type, input, value, what
# the note says). A value that is a pair ("<-", class, input, value) is a link: the input comes from a node of
# that class whose input has that value.
SAYS: dict[str, list[tuple[str, str, Any, str]]] = {
    "W2SD_Z-Image_CFG_gap": [
        ("W2SDCFGGap", "strong_cfg", 2.5, "strong cfg 2.5"),
        ("W2SDCFGGap", "weak_cfg", 1.0, "weak cfg 1"),
        ("W2SDKSampler", "cfg", 1.0, "cfg 1"),
        ("W2SDKSampler", "steps", 8, "8 steps"),
        ("W2SDKSampler", "sampler_name", "res_multistep", "res_multistep"),
        ("W2SDKSampler", "end_percent", 0.5, "first half of the steps reflects"),
        (
            "W2SDKSampler",
            "model",
            ("<-", "ModelSamplingAuraFlow", "shift", 3.0),
            "ModelSamplingAuraFlow shift 3",
        ),
        ("W2SDKSampler", "latent_image", ("<-", "EmptySD3LatentImage", "width", 1024), "Z-Image Turbo"),
        ("CLIPLoader", "type", "lumina2", "CLIPLoader type lumina2"),
    ],
    "W2SD_Qwen-Image_prompt_pair": [
        (
            "W2SDModelPair",
            "strong_positive",
            ("<-", "CLIPTextEncode", "text", "REFINED"),
            "strong_positive is the refined prompt",
        ),
        (
            "W2SDModelPair",
            "weak_positive",
            ("<-", "CLIPTextEncode", "text", "a cat wearing a hat"),
            "weak_positive the raw one",
        ),
        ("W2SDModelPair", "strong_cfg", -1.0, "sampler's cfg (-1)"),
        ("W2SDModelPair", "weak_cfg", -1.0, "sampler's cfg (-1)"),
        (
            "W2SDKSampler",
            "positive",
            ("<-", "CLIPTextEncode", "text", "REFINED"),
            "also drives the regular steps",
        ),
        ("W2SDKSampler", "cfg", 4.0, "cfg 4"),
        ("W2SDKSampler", "steps", 20, "20 steps"),
        ("W2SDKSampler", "end_percent", 0.5, "first half of the steps reflects"),
        (
            "W2SDKSampler",
            "model",
            ("<-", "ModelSamplingAuraFlow", "shift", 3.1),
            "ModelSamplingAuraFlow shift 3.1",
        ),
        ("CLIPLoader", "type", "qwen_image", "CLIPLoader type qwen_image"),
    ],
    "W2SD_Qwen-Image_edit": [
        ("W2SDCFGGap", "strong_cfg", 4.0, "strong cfg 4"),
        ("W2SDCFGGap", "weak_cfg", 1.0, "weak cfg 1"),
        ("W2SDKSampler", "cfg", 4.0, "cfg 4"),
        ("W2SDKSampler", "steps", 20, "20 steps"),
        ("W2SDKSampler", "end_percent", 0.5, "first half of the steps reflects"),
        (
            "W2SDKSampler",
            "positive",
            ("<-", "TextEncodeQwenImageEditPlus", "image1", ("<-", "FluxKontextImageScale")),
            "TextEncodeQwenImageEditPlus",
        ),
        (
            "W2SDKSampler",
            "latent_image",
            ("<-", "VAEEncode", "pixels", ("<-", "FluxKontextImageScale")),
            "encoded by VAEEncode",
        ),
        ("W2SDKSampler", "model", ("<-", "CFGNorm", "strength", 1.0), "CFGNorm 1"),
        ("FluxKontextImageScale", "image", ("<-", "LoadImage"), "reference image"),
    ],
    "W2SD_Flux_guidance_gap": [
        (
            "W2SDModelPair",
            "strong_positive",
            ("<-", "FluxGuidance", "guidance", 3.5),
            "strong_positive is the prompt at guidance 3.5",
        ),
        (
            "W2SDModelPair",
            "weak_positive",
            ("<-", "FluxGuidance", "guidance", 1.0),
            "weak_positive the same prompt at guidance 1.0",
        ),
        (
            "W2SDKSampler",
            "positive",
            ("<-", "FluxGuidance", "guidance", 3.5),
            "also drives the regular steps",
        ),
        ("W2SDKSampler", "cfg", 1.0, "cfg 1"),
        ("W2SDKSampler", "steps", 20, "20 steps"),
        ("W2SDKSampler", "end_percent", 0.5, "first half of the steps reflects"),
        ("DualCLIPLoader", "type", "flux", "type flux"),
    ],
    "W2SD_Wan2.2_two_stage": [
        ("W2SDCFGGap", "strong_cfg", 3.5, "strong cfg 3.5"),
        ("W2SDCFGGap", "weak_cfg", 1.0, "weak cfg 1"),
        ("W2SDKSamplerAdvanced", "start_at_step", 0, "runs steps 0-10"),
        ("W2SDKSamplerAdvanced", "end_at_step", 10, "runs steps 0-10"),
        (
            "W2SDKSamplerAdvanced",
            "return_with_leftover_noise",
            "enable",
            "return_with_leftover_noise enabled",
        ),
        ("W2SDKSamplerAdvanced", "steps", 20, "20-step schedule"),
        ("W2SDKSamplerAdvanced", "cfg", 3.5, "cfg 3.5"),
        ("W2SDKSamplerAdvanced", "end_percent", 0.5, "first half of the whole 20-step schedule"),
        (
            "W2SDKSamplerAdvanced",
            "model",
            (
                "<-",
                "ModelSamplingSD3",
                "model",
                ("<-", "UNETLoader", "unet_name", "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"),
            ),
            "high-noise expert",
        ),
        ("W2SDKSamplerAdvanced", "model", ("<-", "ModelSamplingSD3", "shift", 8.0), "shift 8"),
        (
            "KSamplerAdvanced",
            "latent_image",
            ("<-", "W2SDKSamplerAdvanced"),
            "finishes with the low-noise expert",
        ),
        ("KSamplerAdvanced", "start_at_step", 10, "10-20"),
        ("KSamplerAdvanced", "add_noise", "disable", "finishes"),
        (
            "KSamplerAdvanced",
            "model",
            (
                "<-",
                "ModelSamplingSD3",
                "model",
                ("<-", "UNETLoader", "unet_name", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"),
            ),
            "low-noise expert",
        ),
        ("SaveVideo", "video", ("<-", "CreateVideo", "fps", 16.0), "16 fps"),
        (
            "CreateVideo",
            "images",
            ("<-", "VAEDecode", "samples", ("<-", "KSamplerAdvanced")),
            "CreateVideo + SaveVideo",
        ),
    ],
}
REFINED_MARK = "fluffy ginger cat"  # "REFINED" above: the refined prompt of workflows/build.py


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def note_of(workflow: dict[str, Any]) -> str:
    return next(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note")


def one(api: dict[str, Any], class_type: str) -> dict[str, Any]:
    found = [node for node in api.values() if node["class_type"] == class_type]
    assert len(found) == 1, f"{len(found)} {class_type} nodes"
    return found[0]


def matches(api: dict[str, Any], value: Any, expected: Any) -> bool:
    """Whether an input value is what `expected` says (a link is followed, see SAYS)."""
    if isinstance(expected, tuple) and expected and expected[0] == "<-":
        if not isinstance(value, list):
            return False
        source = api[value[0]]
        if source["class_type"] != expected[1]:
            return False
        if len(expected) == 2:
            return True
        return matches(api, source["inputs"].get(expected[2]), expected[3])
    if expected == "REFINED":
        return isinstance(value, str) and REFINED_MARK in value
    if isinstance(expected, float) and isinstance(value, (int, float)):
        return math.isclose(value, expected, abs_tol=1e-6)
    return bool(value == expected)


@pytest.fixture(scope="module")
def object_info(server) -> dict[str, Any]:
    return server.object_info()


def test_every_workflow_that_does_not_run_here_is_named_with_its_reason() -> None:
    """The runs in test_workflows.py and tools/demo.py leave out exactly the named family workflows."""
    stems = {p.stem for p in shipped()}
    assert set(FAMILY_WORKFLOWS) <= stems, set(FAMILY_WORKFLOWS) - stems
    assert {p.stem for p in shipped() if p not in runnable(shipped())} == set(FAMILY_WORKFLOWS)
    assert set(SAYS) == set(FAMILY_WORKFLOWS)
    for stem, family in FAMILY_WORKFLOWS.items():
        assert family.not_run.startswith(f"not run here: {family.name}'s text encoder")
        assert f"{family.text_encoder}) has no tiny form" in note_of(load(WORKFLOW_DIR / f"{stem}.json"))


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem if p else "none")
def test_family_workflow_converts_with_valid_values(object_info, path: Path) -> None:
    workflow = load(path)
    api = ui_to_api(workflow, object_info)  # raises on a node type the server does not know
    executable = {str(n["id"]) for n in workflow["nodes"] if n["type"] not in FRONTEND_ONLY}
    assert set(api) == executable
    assert invalid_values(api, object_info, MODEL_FILE_INPUTS) == []
    # The model files are the real ones (the test server has none of them), each named in the note.
    note = note_of(workflow)
    files = [
        v for node in api.values() for k, v in node["inputs"].items() if k in MODEL_FILE_INPUTS - {"image"}
    ]
    assert files and all(f"{f} (models/" in note for f in files), (files, note)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem if p else "none")
def test_family_workflow_w2sd_inputs_are_what_its_note_says(object_info, path: Path) -> None:
    workflow = load(path)
    api = ui_to_api(workflow, object_info)
    note = note_of(workflow)
    for class_type, name, expected, said in SAYS[path.stem]:
        value = one(api, class_type)["inputs"].get(name)
        assert matches(api, value, expected), (class_type, name, value, expected)
        assert said in note, (said, note)


def test_older_cores_lack_what_the_family_workflows_carry(object_info) -> None:
    """Why a core older than 0.29.0 selects none of them (FAMILY_WORKFLOWS' docstring), checked on this core."""
    if CORE >= CORE_0_29:
        assert len(FAMILY) == len(FAMILY_WORKFLOWS)
        return
    assert FAMILY == []
    assert "bit_depth" not in object_info["CreateVideo"]["input"].get("optional", {})
    assert "pre_cfg" not in object_info["CFGNorm"]["input"].get("optional", {})
    if CORE < (0, 3, 75):
        assert "TextEncodeQwenImageEditPlus" not in object_info


def test_the_demo_names_each_family_workflow_it_does_not_run(server, object_info, tmp_path) -> None:
    """Runs on every core: 0.29.0 validates them and prints the family's reason; an older core says it
    cannot take them. Nothing is queued for them."""
    lines: list[str] = []
    paths = [WORKFLOW_DIR / f"{stem}.json" for stem in FAMILY_WORKFLOWS]
    queued = len(server.request("/history"))
    assert demo.run_workflows(server, paths, tmp_path, log=lines.append) == []
    assert len(server.request("/history")) == queued
    for path, line in zip(paths, lines, strict=True):
        family = FAMILY_WORKFLOWS[path.stem]
        if CORE >= family.core:
            assert line.startswith(f"workflow {path.name}: ") and line.endswith(family.not_run), line
            assert "validated against /object_info" in line
        else:
            assert (
                line
                == f"workflow {path.name}: not run here: saved from ComfyUI 0.29.0's nodes, which this core lacks"
            )
