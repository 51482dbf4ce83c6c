"""ComfyUI nodes for W2SD (Weak-to-Strong Diffusion with Reflection, arXiv 2502.00473)."""

from . import compat  # noqa: F401  (logs one line per core feature this ComfyUI lacks)
from .pair_nodes import node_mappings
from .sampler_nodes import W2SDGuiderNode, W2SDKSampler, W2SDKSamplerAdvanced

_pair_classes, _pair_names = node_mappings()

# Node ids are part of saved workflows: never rename them.
NODE_CLASS_MAPPINGS = {
    "W2SDKSampler": W2SDKSampler,
    "W2SDKSamplerAdvanced": W2SDKSamplerAdvanced,
    "W2SDGuider": W2SDGuiderNode,
    **_pair_classes,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "W2SDKSampler": "W2SD KSampler",
    "W2SDKSamplerAdvanced": "W2SD KSampler (Advanced)",
    "W2SDGuider": "W2SD Guider (SamplerCustomAdvanced)",
    **_pair_names,
}
