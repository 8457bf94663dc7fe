"""A GGUF file as the Hugging Face checkpoint it was converted from: its metadata as that checkpoint's
config.json, its tensors under that checkpoint's names, so the family converters (``llama``, ``qwen2``, ...) build
and fill the model as they do for a Hugging Face folder, and GGUF support follows each of them.

Adding an architecture is one row of ``ARCHITECTURES``: the model type and class whose converter reads it, which
metadata keys are which config.json fields (and the fields llama.cpp derives instead of storing), which GGUF
tensor names are which Hugging Face names, and the transforms that undo what llama.cpp's converter changed in a
tensor (Llama's q/k rows, permuted for its rotary layout; Gemma's norm weights, stored plus one). A tensor no row
entry maps stays under its GGUF name, so the converter's check refuses it by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor

from ..config import ModelConfig
from ..errors import CheckpointError, CheckpointNotFound
from ..models import Tokenization
from . import hf
from .gguf_file import GGUFFile, torch_dtype
from .gguf_tokenizer import chat_template_from_gguf, tokenizer_from_gguf
from .stored import StoredWeights

SUFFIX = ".gguf"


def _unpermute(heads: str) -> Callable[[Tensor, ModelConfig], Tensor]:
    """Undo llama.cpp's ``permute`` of Llama's q (or k) rows, with ``heads`` the config field counting the heads
    (``n_heads``, ``n_kv_heads``). Within each head, Hugging Face's rotary layout pairs row i with row i + D/2;
    llama.cpp interleaves the two halves (rows 0, D/2, 1, D/2 + 1, ...) for its own. Weights (H*D, C) and biases
    (H*D,) alike; rows never cross a quantisation block, so this is exact."""

    def unpermute(tensor: Tensor, config: ModelConfig) -> Tensor:
        n = getattr(config, heads)
        return tensor.reshape(n, -1, 2, *tensor.shape[1:]).transpose(1, 2).reshape(tensor.shape)  # (H, D/2, 2, ...)

    return unpermute


def _minus_one(tensor: Tensor, config: ModelConfig) -> Tensor:
    """Gemma's norm weight w, from the 1 + w llama.cpp stores (what its RMSNorm scales by; Hugging Face's
    checkpoints, and trilogy's ``norm_weight_offset``, keep w). Norms are stored in F32, and this subtracts in
    float32, as transformers' GGUF loader does."""
    return tensor - 1.0


def _gemma_query_scale(wide_layers: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Gemma 2's and 3's ``query_pre_attn_scalar``, which the file does not store: llama.cpp scales queries by
    1/sqrt(head_dim), except in the 27B model (the one with ``wide_layers`` layers), where it is
    1/sqrt(hidden_size / heads), as those checkpoints' config.json says (Gemma 2 27B: 144, with heads of 128)."""

    def derived(config: dict[str, Any]) -> dict[str, Any]:
        width, heads = config.get("hidden_size"), config.get("num_attention_heads")
        if not width or not heads:
            return {}  # the converter names what is missing
        wide = config.get("num_hidden_layers") == wide_layers
        return {"query_pre_attn_scalar": width // heads if wide else config.get("head_dim", width // heads)}

    return derived


def _no_window_is_zero(config: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp writes Phi-3's ``sliding_window`` as 0 where config.json has none (Phi-4-mini)."""
    return {"sliding_window": config.get("sliding_window") or None}


@dataclass(frozen=True)
class Architecture:
    """How the GGUF of one ``general.architecture`` maps onto a Hugging Face checkpoint.

    ``config`` maps metadata keys (after the ``{arch}.`` prefix) to config.json fields; ``derived`` gives the
    config.json fields llama.cpp derives from those instead of storing; ``tensors`` maps GGUF tensor names
    (without ``.weight``/``.bias``; ``{}`` for the block) to Hugging Face names; ``transforms`` maps a GGUF tensor
    name to what turns its values into the Hugging Face tensor's."""

    model_type: str
    hf_architecture: str
    config: dict[str, str]
    tensors: dict[str, str]
    transforms: dict[str, Callable[[Tensor, ModelConfig], Tensor]] = field(default_factory=dict)
    derived: Callable[[dict[str, Any]], dict[str, Any]] | None = None


#: the config.json fields llama.cpp writes for Llama and the decoders built like it
DECODER_CONFIG = {
    "vocab_size": "vocab_size", "context_length": "max_position_embeddings", "embedding_length": "hidden_size",
    "block_count": "num_hidden_layers", "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads",
    "attention.key_length": "head_dim", "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "rope.freq_base": "rope_theta", "rope.scaling.type": "rope_scaling.rope_type",
    "rope.scaling.factor": "rope_scaling.factor",
}
DECODER_TENSORS = {
    "token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
    "blk.{}.attn_norm": "model.layers.{}.input_layernorm", "blk.{}.attn_q": "model.layers.{}.self_attn.q_proj",
    "blk.{}.attn_k": "model.layers.{}.self_attn.k_proj", "blk.{}.attn_v": "model.layers.{}.self_attn.v_proj",
    "blk.{}.attn_output": "model.layers.{}.self_attn.o_proj",
    "blk.{}.ffn_norm": "model.layers.{}.post_attention_layernorm", "blk.{}.ffn_gate": "model.layers.{}.mlp.gate_proj",
    "blk.{}.ffn_up": "model.layers.{}.mlp.up_proj", "blk.{}.ffn_down": "model.layers.{}.mlp.down_proj",
}
QK_NORM_TENSORS = {"blk.{}.attn_q_norm": "model.layers.{}.self_attn.q_norm",
                   "blk.{}.attn_k_norm": "model.layers.{}.self_attn.k_norm"}
LLAMA_ROTARY = {"blk.{}.attn_q": _unpermute("n_heads"), "blk.{}.attn_k": _unpermute("n_kv_heads")}
#: Gemma 2 and 3: soft-caps and the window; a norm on each branch's output too (Gemma's post_attention_layernorm
#: norms the attention's output, and the MLP's input norm is pre_feedforward_layernorm)
GEMMA_CONFIG = DECODER_CONFIG | {"attention.sliding_window": "sliding_window",
                                 "attn_logit_softcapping": "attn_logit_softcapping",
                                 "final_logit_softcapping": "final_logit_softcapping"}
GEMMA2_TENSORS = DECODER_TENSORS | {
    "blk.{}.post_attention_norm": "model.layers.{}.post_attention_layernorm",
    "blk.{}.ffn_norm": "model.layers.{}.pre_feedforward_layernorm",
    "blk.{}.post_ffw_norm": "model.layers.{}.post_feedforward_layernorm",
}
#: Gemma 3: q/k norms, and its sliding layers' own rotary base (10,000 where the file gives none, as in llama.cpp)
GEMMA3_CONFIG = GEMMA_CONFIG | {"rope.freq_base_swa": "rope_local_base_freq"}
GEMMA3_TENSORS = GEMMA2_TENSORS | QK_NORM_TENSORS
#: Phi-3: one window for every layer (0: none); q, k, v in one tensor, and the MLP's [gate; up] in what llama.cpp
#: calls ffn_up
PHI3_CONFIG = DECODER_CONFIG | {"attention.sliding_window": "sliding_window"}
PHI3_TENSORS = DECODER_TENSORS | {"blk.{}.attn_qkv": "model.layers.{}.self_attn.qkv_proj",
                                  "blk.{}.ffn_up": "model.layers.{}.mlp.gate_up_proj"}


def _norms_minus_one(tensors: dict[str, str]) -> dict[str, Callable[[Tensor, ModelConfig], Tensor]]:
    """Every norm of a Gemma row (llama.cpp adds one to each weight named ``*norm``)."""
    return {name: _minus_one for name in tensors if name.endswith("norm")}


#: general.architecture -> its row
ARCHITECTURES = {
    "llama": Architecture("llama", "LlamaForCausalLM", DECODER_CONFIG, DECODER_TENSORS, LLAMA_ROTARY),
    "qwen2": Architecture("qwen2", "Qwen2ForCausalLM", DECODER_CONFIG, DECODER_TENSORS),
    "qwen3": Architecture("qwen3", "Qwen3ForCausalLM", DECODER_CONFIG, DECODER_TENSORS | QK_NORM_TENSORS),
    "gemma2": Architecture("gemma2", "Gemma2ForCausalLM", GEMMA_CONFIG, GEMMA2_TENSORS,
                           _norms_minus_one(GEMMA2_TENSORS), _gemma_query_scale(wide_layers=46)),
    "gemma3": Architecture("gemma3_text", "Gemma3ForCausalLM", GEMMA3_CONFIG, GEMMA3_TENSORS,
                           _norms_minus_one(GEMMA3_TENSORS), _gemma_query_scale(wide_layers=62)),
    "phi3": Architecture("phi3", "Phi3ForCausalLM", PHI3_CONFIG, PHI3_TENSORS, derived=_no_window_is_zero),
}
#: llama.cpp writes Mistral 7B as "llama"; its general.name tells them apart, as transformers reads it
MISTRAL = Architecture("mistral", "MistralForCausalLM", DECODER_CONFIG, DECODER_TENSORS, LLAMA_ROTARY)
#: config.json fields from the tokenizer's metadata
TOKEN_IDS = {"tokenizer.ggml.bos_token_id": "bos_token_id", "tokenizer.ggml.eos_token_id": "eos_token_id",
             "tokenizer.ggml.padding_token_id": "pad_token_id"}


def is_gguf(path: str | Path) -> bool:
    return str(path).lower().endswith(SUFFIX)


def architecture_of(metadata: dict[str, Any], file: Path) -> Architecture:
    name = metadata.get("general.architecture")
    if name not in ARCHITECTURES:
        raise CheckpointError(f"{file}: GGUF architecture {name!r} is not supported; supported: "
                              f"{', '.join(ARCHITECTURES)} (Mistral files are written as llama)")
    if name == "llama" and "mistral" in str(metadata.get("general.name", "")).lower():
        return MISTRAL
    return ARCHITECTURES[name]


def config_json(metadata: dict[str, Any], row: Architecture, tensor_names: set[str]) -> dict[str, Any]:
    """The config.json the metadata stands for. A head tied to the embeddings is an absent ``output.weight``, as
    llama.cpp writes it; a rotary width other than the head's (``rope.dimension_count``) is a partial rotary
    factor, which the converters refuse, as they refuse any RoPE scaling."""
    prefix = f"{metadata['general.architecture']}."
    config: dict[str, Any] = {"model_type": row.model_type, "architectures": [row.hf_architecture]}
    for key, name in [*((prefix + k, n) for k, n in row.config.items()), *TOKEN_IDS.items()]:
        if key in metadata:
            outer, _, inner = name.partition(".")
            if inner:
                config.setdefault(outer, {})[inner] = metadata[key]
            else:
                config[outer] = metadata[key]
    if "vocab_size" not in config and "tokenizer.ggml.tokens" in metadata:
        config["vocab_size"] = len(metadata["tokenizer.ggml.tokens"])
    config["tie_word_embeddings"] = "output.weight" not in tensor_names
    head_dim = config.get("head_dim") or config.get("hidden_size", 0) // max(config.get("num_attention_heads", 1), 1)
    rotary = metadata.get(prefix + "rope.dimension_count", head_dim)
    if rotary != head_dim:
        config.setdefault("rope_scaling", {"rope_type": "default"})["partial_rotary_factor"] = rotary / head_dim
    scaling = config.get("rope_scaling")
    if scaling is not None and scaling.get("rope_type") == "none":  # llama.cpp's name for plain RoPE
        scaling["rope_type"] = "default"
        scaling.pop("factor", None)
    if scaling is not None:
        scaling["rope_theta"] = config.get("rope_theta", 10000.0)
    return config | (row.derived(config) if row.derived is not None else {})


#: the tensors in which llama.cpp stores a scaled RoPE -> the scaling
SCALED_ROPE = {"rope_freqs.weight": "Llama 3's RoPE scaling (rope_type 'llama3')",
               "rope_factors_long.weight": "Phi-3's long-context RoPE scaling (rope_type 'longrope')"}


def _refuse_unread(metadata: dict[str, Any], tensor_names: set[str], file: Path) -> None:
    """What changes what the model computes and no converter reads: value heads unlike the keys', experts, and
    the scaled RoPE llama.cpp stores as tensors (``rope_type`` ``llama3`` or ``longrope`` in config.json)."""
    for name, scaling in SCALED_ROPE.items():
        if name in tensor_names:
            raise CheckpointError(f"{file} holds {name}: {scaling}, which is not supported; trilogy implements "
                                  "plain RoPE only")
    prefix = f"{metadata['general.architecture']}."
    key_length = metadata.get(prefix + "attention.key_length")
    value_length = metadata.get(prefix + "attention.value_length", key_length)
    if value_length != key_length:
        raise CheckpointError(f"{file}: attention.value_length {value_length} differs from attention.key_length "
                              f"{key_length}; trilogy's heads have one size for both")
    if metadata.get(prefix + "expert_count", 0):
        raise CheckpointError(f"{file}: a mixture of experts ({prefix}expert_count = "
                              f"{metadata[prefix + 'expert_count']}) is not supported")


def _pattern(template: str) -> re.Pattern:
    """A row's GGUF name (``blk.{}.attn_q``) as a regex of its weight and bias, capturing the block and suffix."""
    return re.compile(re.escape(template).replace(r"\{\}", r"(\d+)") + r"\.(weight|bias)")


def hf_names(names: list[str], row: Architecture) -> dict[str, str]:
    """GGUF tensor names -> Hugging Face names; a name no row entry maps is kept, to be refused by name."""
    patterns = [(_pattern(gguf), theirs) for gguf, theirs in row.tensors.items()]
    renamed = {}
    for name in names:
        for pattern, theirs in patterns:
            match = pattern.fullmatch(name)
            if match:
                *block, suffix = match.groups()
                renamed[name] = theirs.format(*block) + "." + suffix
                break
        else:
            renamed[name] = name
    return renamed


class GGUFTensors:
    """The tensors of a GGUF file under their Hugging Face names, each dequantised and transformed as read."""

    def __init__(self, file: GGUFFile, renamed: dict[str, str], row: Architecture, config: ModelConfig):
        self.file, self.config = file, config
        self.gguf_names = {theirs: name for name, theirs in renamed.items()}
        self.transforms = {}
        for name, theirs in renamed.items():
            for template, transform in row.transforms.items():
                if _pattern(template).fullmatch(name):
                    self.transforms[theirs] = transform

    def read(self, name: str) -> Tensor:
        tensor = self.file.read(self.gguf_names[name])
        transform = self.transforms.get(name)
        return tensor if transform is None else transform(tensor, self.config)

    def copy_into(self, name: str, out: Tensor) -> None:
        """Fill ``out`` with the tensor ``name``: a few rows at a time when it needs no transform."""
        if name in self.transforms:
            out.copy_(self.read(name))
        else:
            self.file.copy_into(self.gguf_names[name], out)


def open_gguf(path: Path) -> tuple[tuple[ModelConfig, ModuleType, str], StoredWeights, Tokenization]:
    """A GGUF file's config, family module and Hugging Face class (as ``hf.config_from_hf`` gives them), its
    tensors and its tokenization, from its header alone: no tensor is read yet, and an unsupported architecture,
    quantisation type or tokenizer is refused before anything is allocated."""
    if not path.is_file():
        raise CheckpointNotFound(f"no GGUF file at {path}")
    file = GGUFFile(path)
    row = architecture_of(file.metadata, path)
    refused = file.unreadable()
    if refused:
        kinds = "; ".join(f"{kind} ({len(names)} tensors, e.g. {names[0]})" for kind, names in refused.items())
        raise CheckpointError(f"{path}: quantisation type {kinds} cannot be dequantised by the installed gguf "
                              "package; nothing was loaded")
    _refuse_unread(file.metadata, set(file.tensors), path)
    renamed = hf_names(list(file.tensors), row)
    try:
        config, family, architecture = hf.config_from_hf(config_json(file.metadata, row, set(file.tensors)))
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error} (config.json being the one its GGUF metadata describes)") from None
    tensors = GGUFTensors(file, renamed, row, config)
    stored = StoredWeights(path, {theirs: file.tensors[name].shape for name, theirs in renamed.items()},
                           {theirs: torch_dtype(file.tensors[name].kind) for name, theirs in renamed.items()},
                           dict.fromkeys(renamed.values(), tensors))
    tokenization = Tokenization(tokenizer_from_gguf(file.metadata, path), chat_template_from_gguf(file.metadata))
    return (config, family, architecture), stored, tokenization
