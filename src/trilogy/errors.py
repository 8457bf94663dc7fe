"""The one base class of the errors trilogy raises on bad input: catch ``TrilogyError`` to catch them all.

It is a ValueError, so ``except ValueError`` keeps working. The CLI prints a TrilogyError as one line and exits
with status 2; any other exception is a bug (in trilogy or below it) and surfaces with its traceback.
"""

from __future__ import annotations


class TrilogyError(ValueError):
    """A request trilogy cannot carry out as asked: an option, a file, a tensor or a state the caller gave. The
    message says what is wrong and, where it helps, what was expected."""


class TrilogyTypeError(TrilogyError, TypeError):
    """An argument of the wrong kind (a list where a tensor goes, an encoder asked to generate): a TrilogyError
    that ``except TypeError`` catches too."""


class TrilogyKeyError(TrilogyError, KeyError):
    """A name that is not there (a hook point, a cached activation): a TrilogyError that ``except KeyError``
    catches too, so that a mapping of them answers ``in`` and ``get`` as mappings do."""

    def __str__(self) -> str:  # the message as it is, not quoted as KeyError quotes its key
        return str(self.args[0]) if self.args else ""


class DiskFullError(TrilogyError):
    """No space was left on the disk (ENOSPC) or the disk quota was reached (EDQUOT) while writing: the message
    says where, and what was kept (for a training run, the checkpoint ``--resume`` continues from)."""


class CheckpointError(TrilogyError):
    """A checkpoint folder that cannot be loaded (or a model that cannot be saved) as asked. The message says
    what is wrong and, where it helps, what was expected."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """No checkpoint where one was asked for: a CheckpointError that ``except FileNotFoundError`` catches too."""
