"""Feature detection gives the expected answers on the three cores the suite runs on."""

from __future__ import annotations

import sys

# What docs/COMPATIBILITY.md says each tested core has (True = present). Features not listed for a
# version are not checked there; a core outside this table (COMFYUI_PATH) gets only NEEDED checked.
NEEDED = (
    "guider_api",
    "injections",
    "keyed_wrappers",
    "clone_has_same_weights",
    "additional_models",
    "lora_key_api",
)
NEWER_THAN_0_3_52 = ("inner_sample_latent_shapes", "merge_nested_dicts_keeps_order", "nested_latents")
NEWER_THAN_0_3_75 = (
    "bypass_lora",
    "dynamic_vram",
    "multigpu",
    "prepare_state_model_options",
    "fix_empty_latent_spacial",
    "fix_empty_latent_temporal",
    "node_replace",
    "search_aliases",
    "sample_casts_to_intermediate_dtype",
    # 0.29.0 (master 4f874c5e, 2026-07-29) is inside the window 2026-07-28..07-31 where KSAMPLER reads
    # sampler_function.__name__ unguarded (upstream PR #15179 added the getattr afterwards).
    "ksampler_reads_function_name",
)
EXPECTED = {
    "0.3.52": {**dict.fromkeys(NEWER_THAN_0_3_52, False), **dict.fromkeys(NEWER_THAN_0_3_75, False)},
    "0.3.75": {**dict.fromkeys(NEWER_THAN_0_3_52, True), **dict.fromkeys(NEWER_THAN_0_3_75, False)},
    "0.29.0": {**dict.fromkeys(NEWER_THAN_0_3_52, True), **dict.fromkeys(NEWER_THAN_0_3_75, True)},
}


def load_compat(comfyui):
    comfyui.load_pack()
    name = next(n for n in sys.modules if n.endswith(".nodes.compat"))
    return sys.modules[name]


def test_features_on_the_tested_cores(comfyui, source_module):
    features = load_compat(comfyui).features()
    for needed in NEEDED:
        assert features[needed], needed
    version = source_module("comfyui_version_probe", comfyui.comfyui / "comfyui_version.py").__version__
    expected = EXPECTED.get(version, {})
    found = {name: features[name] for name in expected}
    assert found == expected, f"ComfyUI {version}"
