"""Checkpoints in and out: Hugging Face folders (BERT, GPT-2, T5, Llama, ...), llama.cpp's GGUF files (in only)
and trilogy's own format.

One module per family (``bert``, ``gpt2``, ``t5``, ``llama``) holds its KEY_MAP and config.json mapping;
``mapping`` turns a KEY_MAP into checked tensor conversions; ``checkpoint`` puts them together. Files:
``hub`` finds a checkpoint by folder or Hugging Face name, ``files`` reads the small files, ``stored`` and
``safetensors_file`` read the weights tensor by tensor, ``loading`` builds the model on the meta device and
fills it, ``shards`` writes the weights. A GGUF file reads as the Hugging Face checkpoint it was converted from
(``gguf_checkpoint``: one row per architecture; ``gguf_file`` reads and dequantises, ``gguf_tokenizer`` rebuilds
the tokenizer). Hugging Face and GGUF names appear only in this package.
"""

from ..errors import CheckpointError
from .checkpoint import from_pretrained, read_layout, save_pretrained
from .hf import CONVERTERS, supported

__all__ = ["CONVERTERS", "CheckpointError", "from_pretrained", "read_layout", "save_pretrained", "supported"]
