"""The one exception type of checkpoint reading and writing."""

from __future__ import annotations

from ..errors import TrilogyError


class CheckpointError(TrilogyError):
    """A checkpoint folder that cannot be loaded (or a model that cannot be saved) as asked. The message says
    what is wrong and, where it helps, what was expected."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """No checkpoint where one was asked for: a CheckpointError that ``except FileNotFoundError`` catches too."""
