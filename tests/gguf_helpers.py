"""Tiny GGUF files for the tests, written as llama.cpp's convert_hf_to_gguf.py writes them and independently of
trilogy's reader: a transformers model's tensors under GGUF names, Llama's q/k rows permuted for llama.cpp's
rotary layout, quantised by the gguf package, with tokenizer metadata from a ``tokenizers`` vocabulary."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, quants
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6  # gguf.TokenType
TEXT = ["the cat sat on the mat", "where is the dog? It's 1234 steps away.", "be brief, user", "héllo wörld 🙂"]
#: a transformers module name -> its GGUF name ("{}" the layer)
GGUF_NAMES = {
    "model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output",
    "model.layers.{}.input_layernorm": "blk.{}.attn_norm", "model.layers.{}.self_attn.q_proj": "blk.{}.attn_q",
    "model.layers.{}.self_attn.k_proj": "blk.{}.attn_k", "model.layers.{}.self_attn.v_proj": "blk.{}.attn_v",
    "model.layers.{}.self_attn.o_proj": "blk.{}.attn_output", "model.layers.{}.self_attn.q_norm": "blk.{}.attn_q_norm",
    "model.layers.{}.self_attn.k_norm": "blk.{}.attn_k_norm",
    "model.layers.{}.post_attention_layernorm": "blk.{}.ffn_norm", "model.layers.{}.mlp.gate_proj": "blk.{}.ffn_gate",
    "model.layers.{}.mlp.up_proj": "blk.{}.ffn_up", "model.layers.{}.mlp.down_proj": "blk.{}.ffn_down",
}
#: Gemma 2 and 3: the sandwich norms (``post_attention_layernorm`` norms the attention's output there)
GEMMA_NAMES = GGUF_NAMES | {
    "model.layers.{}.post_attention_layernorm": "blk.{}.post_attention_norm",
    "model.layers.{}.pre_feedforward_layernorm": "blk.{}.ffn_norm",
    "model.layers.{}.post_feedforward_layernorm": "blk.{}.post_ffw_norm",
}
#: Phi-3: q, k, v fused, and the MLP's gate and up fused in what llama.cpp calls ffn_up
PHI3_NAMES = GGUF_NAMES | {"model.layers.{}.self_attn.qkv_proj": "blk.{}.attn_qkv",
                           "model.layers.{}.mlp.gate_up_proj": "blk.{}.ffn_up"}
#: where the f16 scales lie in a block of each K-quant (bytes), so random blocks get small finite ones
K_SCALES = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


def gguf_name(hf_name: str, names: dict[str, str] = GGUF_NAMES) -> str:
    stem, suffix = hf_name.rsplit(".", 1)
    parts = stem.split(".")
    if parts[:2] == ["model", "layers"]:
        return names["model.layers.{}." + ".".join(parts[3:])].format(parts[2]) + "." + suffix
    return names[stem] + "." + suffix


def llama_cpp_permute(weights: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """What llama.cpp's LlamaModel.permute does to q (n_head, n_head) and k (n_head, n_head_kv) rows."""
    if n_head_kv != n_head:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def gguf_tensors(model, kinds, permute: bool = False, names: dict[str, str] = GGUF_NAMES,
                 norm_shift: float = 0.0) -> dict[str, tuple[np.ndarray, Q]]:
    """The GGUF tensors of a transformers decoder: ``kinds(gguf_name, values)`` picks each one's type; a tied head
    is left out, as llama.cpp leaves it; ``norm_shift`` is added to every norm weight (Gemma's 1, llama.cpp
    storing the 1 + w its RMSNorm scales by)."""
    config = model.config
    tensors = {}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name, values = gguf_name(hf_name, names), tensor.float().numpy()
        if hf_name.endswith("norm.weight"):
            values = values + np.float32(norm_shift)
        if permute and ".attn_q." in name:
            values = llama_cpp_permute(values, config.num_attention_heads, config.num_attention_heads)
        if permute and ".attn_k." in name:
            values = llama_cpp_permute(values, config.num_attention_heads, config.num_key_value_heads)
        tensors[name] = (values, kinds(name, values) if values.ndim == 2 else Q.F32)  # llama.cpp keeps 1-D in F32
    return tensors


def random_blocks(kind: Q, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random but valid quantised rows: random bytes with small finite f16 scales."""
    rng = np.random.default_rng(seed)
    blocks, size = cols // 256, quants.GGML_QUANT_SIZES[kind][1]
    data = rng.integers(0, 256, (rows, blocks, size), dtype=np.uint8)
    for offset in K_SCALES[kind]:
        data[:, :, offset:offset + 2] = np.frombuffer(np.float16(0.0002).tobytes(), dtype=np.uint8)
    return data.reshape(rows, blocks * size)


def decoder_metadata(arch: str, config, *, head_dim: int | None = None) -> dict:
    """The ``{arch}.*`` metadata llama.cpp writes for a transformers decoder config."""
    d_head = head_dim or config.hidden_size // config.num_attention_heads
    metadata = {
        "context_length": config.max_position_embeddings, "embedding_length": config.hidden_size,
        "block_count": config.num_hidden_layers, "feed_forward_length": config.intermediate_size,
        "attention.head_count": config.num_attention_heads, "attention.head_count_kv": config.num_key_value_heads,
        "attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        "rope.freq_base": float(config.rope_parameters["rope_theta"]), "rope.dimension_count": d_head,
        "vocab_size": config.vocab_size,
    }
    if head_dim is not None:
        metadata |= {"attention.key_length": head_dim, "attention.value_length": head_dim}
    return {f"{arch}.{key}": value for key, value in metadata.items()}


def gemma_metadata(arch: str, config) -> dict:
    """The ``{arch}.*`` metadata llama.cpp writes for a Gemma 2 or Gemma 3 config: no rotary width or vocabulary
    size; Gemma 2 its soft-caps and no rotary base (10,000 then), Gemma 3 its two rotary bases, the linear
    scaling of its full-attention layers and its logit soft-cap when set."""
    metadata = {
        "context_length": config.max_position_embeddings, "embedding_length": config.hidden_size,
        "block_count": config.num_hidden_layers, "feed_forward_length": config.intermediate_size,
        "attention.head_count": config.num_attention_heads, "attention.head_count_kv": config.num_key_value_heads,
        "attention.layer_norm_rms_epsilon": float(config.rms_norm_eps), "attention.key_length": config.head_dim,
        "attention.value_length": config.head_dim, "attention.sliding_window": config.sliding_window,
    }
    if arch == "gemma2":
        metadata |= {"attn_logit_softcapping": float(config.attn_logit_softcapping),
                     "final_logit_softcapping": float(config.final_logit_softcapping)}
    else:
        full, local = config.rope_parameters["full_attention"], config.rope_parameters["sliding_attention"]
        metadata |= {"rope.freq_base": float(full["rope_theta"]), "rope.freq_base_swa": float(local["rope_theta"])}
        if full["rope_type"] == "linear":
            metadata |= {"rope.scaling.type": "linear", "rope.scaling.factor": float(full["factor"])}
        if config.final_logit_softcapping:
            metadata["final_logit_softcapping"] = float(config.final_logit_softcapping)
    return {f"{arch}.{key}": value for key, value in metadata.items()}


def phi3_metadata(config) -> dict:
    """The ``phi3.*`` metadata llama.cpp writes for a Phi-3 config: the rotary width from
    ``partial_rotary_factor``, and a sliding window of 0 for none."""
    rotary = int(config.rope_parameters.get("partial_rotary_factor", 1.0) * config.hidden_size)
    metadata = {
        "context_length": config.max_position_embeddings, "embedding_length": config.hidden_size,
        "rope.scaling.original_context_length": config.original_max_position_embeddings,
        "block_count": config.num_hidden_layers, "feed_forward_length": config.intermediate_size,
        "attention.head_count": config.num_attention_heads, "attention.head_count_kv": config.num_key_value_heads,
        "attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        "rope.dimension_count": rotary // config.num_attention_heads,
        "rope.freq_base": float(config.rope_parameters["rope_theta"]),
        "attention.sliding_window": config.sliding_window or 0,
    }
    return {f"phi3.{key}": value for key, value in metadata.items()}


def write_gguf(path: Path, arch: str, metadata: dict, tensors: dict[str, tuple[np.ndarray, Q]]) -> Path:
    """A GGUF file of ``general.architecture`` ``arch``: metadata values typed by their Python type (ints as
    uint32, as llama.cpp writes sizes and ids); tensors quantised by the gguf package (or raw blocks, uint8)."""
    writer = GGUFWriter(str(path), arch)
    for key, value in metadata.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)
    for name, (values, kind) in tensors.items():
        if values.dtype == np.uint8:  # already blocks
            writer.add_tensor(name, values, raw_shape=values.shape, raw_dtype=kind)
        elif kind == Q.F32:
            writer.add_tensor(name, values.astype(np.float32))
        elif kind == Q.F16:
            writer.add_tensor(name, values.astype(np.float16))
        else:
            blocks = quants.quantize(values.astype(np.float32), kind)
            writer.add_tensor(name, blocks, raw_shape=blocks.shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def byte_level_vocab(pre: str, specials: list[str], user_defined: tuple[str, ...] = (), size: int = 330,
                     add_bos: bool = False) -> dict:
    """Tokenizer metadata of a byte-level BPE vocabulary trained here: ``specials`` first (control tokens; the
    first is BOS, the second EOS), then the byte alphabet and the merges."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=specials + list(user_defined), show_progress=False)
    tokenizer.train_from_iterator(TEXT * 20, trainer)
    bpe = json.loads(tokenizer.to_str())["model"]
    tokens = [token for token, _ in sorted(bpe["vocab"].items(), key=lambda item: item[1])]
    types = [CONTROL if t in specials else USER_DEFINED if t in user_defined else NORMAL for t in tokens]
    return {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": [" ".join(m) for m in bpe["merges"]],
        "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.add_bos_token": add_bos,
    }


def _pieces(words: list[str], pieces: int) -> tuple[list[str], list[str]]:
    """The characters of ``words``, and their ``pieces`` most frequent substrings of 2 to 6 characters."""
    counts = Counter(text[i:i + n] for text in words for n in range(2, 7) for i in range(len(text) - n + 1))
    chars = sorted({c for text in words for c in text})
    return chars, [piece for piece, _ in counts.most_common() if piece not in chars][:pieces]


def sentencepiece_vocab(pieces: int = 180) -> dict:
    """Tokenizer metadata of a SentencePiece (llama) vocabulary: <unk>, <s>, </s>, the 256 byte tokens, the
    characters of the text, then its most frequent substrings of "▁"-joined words, scored by frequency rank with
    ties (every three share a score), as llama.cpp writes them: no merges."""
    chars, common = _pieces(["▁" + "▁".join(line.split(" ")) for line in TEXT], pieces)
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *chars, *common]
    scores = [0.0] * 259 + [-1000.0 - i for i in range(len(chars))] + [-float(i // 3) for i in range(len(common))]
    types = [UNKNOWN, CONTROL, CONTROL, *[BYTE] * 256, *[NORMAL] * (len(chars) + len(common))]
    return {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
    }


def gemma_vocab(pieces: int = 180) -> dict:
    """Tokenizer metadata of a Gemma vocabulary as llama.cpp writes it: <pad>, <eos>, <bos>, <unk>, the turn
    tokens, the 256 byte tokens, runs of two and three spaces spelled with real spaces (user-defined), then the
    characters and frequent substrings of the text with spaces as "▁" and no prefix; scores that rise with the
    position, against the merges' order (which the position gives), and no "▁" before the first word."""
    chars, common = _pieces([line.replace(" ", "▁") for line in TEXT], pieces)
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
              *(f"<0x{b:02X}>" for b in range(256)), "  ", "   ", *chars, *common]
    scores = [0.0] * 264 + [-1000.0 - i for i in range(len(chars))] + [float(i) for i in range(len(common))]
    types = [CONTROL, CONTROL, CONTROL, UNKNOWN, CONTROL, CONTROL, *[BYTE] * 256, USER_DEFINED, USER_DEFINED,
             *[NORMAL] * (len(chars) + len(common))]
    return {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.unknown_token_id": 3, "tokenizer.ggml.padding_token_id": 0,
        "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_space_prefix": False,
    }
