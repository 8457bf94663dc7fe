"""The one exception type of checkpoint reading and writing."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded (or a model that cannot be saved) as asked. The message says
    what is wrong and, where it helps, what was expected. A ValueError, so the CLI prints it as a user error."""
