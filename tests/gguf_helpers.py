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
#: where the f16 scales lie in a block of each K-quant (bytes), so random blocks get small finite ones
K_SCALES = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


def gguf_name(hf_name: str) -> str:
    stem, suffix = hf_name.rsplit(".", 1)
    parts = stem.split(".")
    if parts[:2] == ["model", "layers"]:
        return GGUF_NAMES["model.layers.{}." + ".".join(parts[3:])].format(parts[2]) + "." + suffix
    return GGUF_NAMES[stem] + "." + suffix


def llama_cpp_permute(weights: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """What llama.cpp's LlamaModel.permute does to q (n_head, n_head) and k (n_head, n_head_kv) rows."""
    if n_head_kv != n_head:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def gguf_tensors(model, kinds, permute: bool = False) -> dict[str, tuple[np.ndarray, Q]]:
    """The GGUF tensors of a transformers decoder: ``kinds(gguf_name, values)`` picks each one's type; a tied head
    is left out, as llama.cpp leaves it."""
    config = model.config
    tensors = {}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name, values = gguf_name(hf_name), tensor.float().numpy()
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


def sentencepiece_vocab(pieces: int = 180) -> dict:
    """Tokenizer metadata of a SentencePiece (llama) vocabulary: <unk>, <s>, </s>, the 256 byte tokens, the
    characters of the text, then its most frequent substrings of "▁"-joined words, scored by frequency rank with
    ties (every three share a score), as llama.cpp writes them: no merges."""
    words = ["▁" + "▁".join(line.split(" ")) for line in TEXT]
    counts = Counter(text[i:i + n] for text in words for n in range(2, 7) for i in range(len(text) - n + 1))
    chars = sorted({c for text in words for c in text})
    common = [piece for piece, _ in counts.most_common() if piece not in chars][:pieces]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *chars, *common]
    scores = [0.0] * 259 + [-1000.0 - i for i in range(len(chars))] + [-float(i // 3) for i in range(len(common))]
    types = [UNKNOWN, CONTROL, CONTROL, *[BYTE] * 256, *[NORMAL] * (len(chars) + len(common))]
    return {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
    }
