"""W2SD for ComfyUI: Weak-to-Strong Diffusion with Reflection (Bai, Sugiyama, Xie; arXiv 2502.00473)."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
