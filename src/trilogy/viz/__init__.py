"""See inside: the attention explorer (``show``: a self-contained page, or in a notebook a live widget that
asks the kernel for what it shows), attention heatmaps and mask pictures, the logit lens and activation
patching (each a result that draws itself: ``.save(path)``, or inline in a notebook)."""

from .logit_lens import LogitLens, logit_lens
from .patching import Patching, patch_heads, patch_residual
from .show import AttentionView, show

__all__ = ["AttentionView", "LogitLens", "Patching", "logit_lens", "patch_heads", "patch_residual", "show"]
