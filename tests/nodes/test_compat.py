"""Feature detection gives the expected answers on the two cores the suite runs on."""

from __future__ import annotations

import importlib.util
import sys


def load_compat(comfyui):
    comfyui.load_pack()
    name = next(n for n in sys.modules if n.endswith(".nodes.compat"))
    return sys.modules[name]


def core_version(comfyui) -> str:
    spec = importlib.util.spec_from_file_location(
        "comfyui_version_probe", comfyui.comfyui / "comfyui_version.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.__version__


def test_features_on_the_tested_cores(comfyui):
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
    newer = core_version(comfyui) != "0.3.52"
    assert features["inner_sample_latent_shapes"] is newer
    assert features["merge_nested_dicts_keeps_order"] is newer
