"""Checkpoints in and out: Hugging Face folders (BERT, GPT-2, T5, Llama) and trilogy's own format.

One module per family (``bert``, ``gpt2``, ``t5``, ``llama``) holds its KEY_MAP and config.json mapping;
``files`` reads and writes the files; ``mapping`` turns a KEY_MAP into checked tensor conversions;
``checkpoint`` puts them together. Hugging Face names appear only in this package.
"""

from .checkpoint import from_pretrained, read_layout, save_pretrained
from .errors import CheckpointError
from .hf import FAMILIES, supported

__all__ = ["FAMILIES", "CheckpointError", "from_pretrained", "read_layout", "save_pretrained", "supported"]
