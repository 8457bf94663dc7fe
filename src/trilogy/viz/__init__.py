"""See inside: the attention explorer (``show``), attention heatmaps and mask pictures."""

from .show import AttentionView, show

__all__ = ["AttentionView", "show"]
