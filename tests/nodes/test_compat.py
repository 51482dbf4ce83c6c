"""Feature detection gives the expected answers on the two cores the suite runs on."""

from __future__ import annotations

import sys


def load_compat(comfyui):
    comfyui.load_pack()
    name = next(n for n in sys.modules if n.endswith(".nodes.compat"))
    return sys.modules[name]


def test_features_on_the_tested_cores(comfyui, source_module):
    features = load_compat(comfyui).features()
    for needed in (
        "guider_api",
        "injections",
        "keyed_wrappers",
        "clone_has_same_weights",
        "additional_models",
        "lora_key_api",
    ):
        assert features[needed], needed
    assert not features["bypass_lora"] and not features["dynamic_vram"]
    version = source_module("comfyui_version_probe", comfyui.comfyui / "comfyui_version.py").__version__
    newer = version != "0.3.52"
    assert features["inner_sample_latent_shapes"] is newer
    assert features["merge_nested_dicts_keeps_order"] is newer
