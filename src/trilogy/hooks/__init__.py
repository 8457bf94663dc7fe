"""Named hook points: read a model's activations (``run_with_cache``) and change them (``hooks``), under
TransformerLens's names (``names.py``; docs/inside.md has the table). The models call these as methods
(``model.run_with_cache``, ``model.hooks``, ``model.hook_points``)."""

from .cache import ActivationCache, run_with_cache
from .editing import HookFunction, hooks
from .names import hook_points, stack_prefix

__all__ = ["ActivationCache", "HookFunction", "hook_points", "hooks", "run_with_cache", "stack_prefix"]
