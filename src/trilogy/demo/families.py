"""The four architectures of the demo, their pre-training objectives and their sizes.

=================  ==================================  ===========  =========================================
architecture       model                               objective    tokenizer
=================  ==================================  ===========  =========================================
``encoder``        BERT-style, bidirectional           ``mlm``      WordPiece with [CLS]/[SEP]/[MASK]
``decoder``        GPT-style, causal                   ``clm``      byte-level BPE
``prefix-lm``      the decoder, ``prefix_lm=True``     ``prefix-lm`` the decoder's
``encoder-decoder`` T5-style                           ``span``     unigram with sentinels
=================  ==================================  ===========  =========================================

The encoder-decoder pre-trains with T5's span corruption, not BART-style denoising: it is T5's own objective,
and its targets are only the dropped spans (about 15% of the block), so its steps cost a third fewer FLOPs than
denoising's, which rebuilds the whole block; at equal FLOPs it sees more text.

Sizes: the decoder is the reference (``d_model``, ``layers``, MLP width ``4 * d_model``); the prefix LM is the
same model. The encoder has as many layers, and the MLP width (a multiple of ``FF_STEP``) whose parameter count
is nearest the decoder's (the count is linear in the width, so two counts find it). The encoder-decoder is the
T5 paper's baseline (Raffel et al. 2020, section 3.2.2): ``layers`` layers in each stack of the decoder's width,
so each token passes through as many layers as in the decoder (the same FLOPs per token) with about twice the
parameters. Splitting the layers between the two stacks instead (the same parameters, half the FLOPs per token;
that paper's weakest encoder-decoder) left a one-layer decoder that could not copy a word: 0.40 exact match on
the plurals task against the decoder's 0.70 at the same fine-tuning FLOPs, 0.855 against 0.86 with the layers
kept. The encoder and the encoder-decoder use rotary positions (as ModernBERT does): with learned ones a masked
LM this small stays at the unigram guess for thousands of steps (docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TINY_PRESETS, ModelConfig
from ..data import special_tokens
from ..errors import TrilogyError
from ..models import build_model

ARCHITECTURES = ("encoder", "decoder", "prefix-lm", "encoder-decoder")
PRETRAINING = {"encoder": "mlm", "decoder": "clm", "prefix-lm": "prefix-lm", "encoder-decoder": "span"}
LABELS = {"encoder": "encoder (BERT, masked LM)", "decoder": "decoder (GPT, causal LM)",
          "prefix-lm": "prefix LM (decoder, prefix LM)", "encoder-decoder": "encoder-decoder (T5, span corruption)"}
TOKENIZER = {"encoder": "encoder", "decoder": "decoder", "prefix-lm": "decoder", "encoder-decoder": "encoder-decoder"}
FAMILY = {"encoder": "encoder", "decoder": "decoder", "prefix-lm": "decoder", "encoder-decoder": "encoder-decoder"}
FF_STEP = 16
MAX_SIZE_GAP = 0.10


@dataclass(frozen=True)
class Size:
    """A ``--size`` preset: the models' shape, the sequences and batches, the tokenizers and the corpus."""

    d_model: int
    layers: int
    heads: int
    seq_len: int
    batch_size: int
    vocab_size: int
    corpus_bytes: int  # of the pre-training corpus
    pretrain_flops: float  # each architecture's pre-training budget (without --minutes)
    finetune_steps: int  # each task's fine-tuning budget: the FLOPs of this many of the decoder's steps on it


SIZES = {
    "tiny": Size(64, 2, 4, 64, 32, 1024, 1_000_000, 2.6e12, 600),  # 2 CPU cores, about 10 minutes
    "small": Size(128, 4, 4, 128, 32, 4096, 4_000_000, 1e14, 4000),  # a GPU, or a patient CPU
    "base": Size(256, 6, 8, 256, 64, 8192, 4_000_000, 1e15, 8000),  # a GPU
}


def count_parameters(config: ModelConfig) -> int:
    """``num_parameters()`` of the model ``config`` builds, on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return build_model(config).num_parameters()


def base_config(family: str, tokenizer, size: Size, d_ff: int) -> ModelConfig:
    """The family's tiny preset at the demo's size, with the tokenizer's vocabulary and special ids. Dropout is
    off: in a budget of minutes these models underfit."""
    special = special_tokens(tokenizer)
    changes = dict(
        vocab_size=tokenizer.get_vocab_size(), d_model=size.d_model, n_heads=size.heads, n_layers=size.layers,
        d_ff=d_ff, max_seq_len=size.seq_len, dropout=0.0, pad_token_id=special.get("pad"),
        bos_token_id=special.get("bos"), eos_token_id=special.get("eos"),
    )
    if family == "encoder":
        changes.update(head="mlm", position="rope")
    if family == "encoder-decoder":
        changes.update(d_head=size.d_model // size.heads, n_decoder_layers=size.layers,
                       head_scale=size.d_model**-0.5,
                       decoder_start_token_id=special["decoder_start"], position="rope")
    return ModelConfig.from_preset(TINY_PRESETS[family], **changes)


def matched_configs(tokenizers: dict, size: Size) -> dict[str, ModelConfig]:
    """One pre-training config per architecture, the encoder's MLP width chosen so its parameter count is
    nearest the decoder's; the encoder-decoder has the decoder's width and depth in each stack.

    Args:
        tokenizers: tokenizer family ("encoder", "decoder", "encoder-decoder") -> its ``tokenizers.Tokenizer``.
    """
    from ..objectives.task_adapters import architecture_config

    decoder = base_config("decoder", tokenizers["decoder"], size, 4 * size.d_model)
    target = count_parameters(decoder)

    def encoder(d_ff: int) -> ModelConfig:
        return base_config("encoder", tokenizers["encoder"], size, d_ff)

    first, second = count_parameters(encoder(FF_STEP)), count_parameters(encoder(2 * FF_STEP))
    matched = encoder(max(1, 1 + round((target - first) / (second - first))) * FF_STEP)
    gap = abs(count_parameters(matched) - target) / target
    if gap > MAX_SIZE_GAP:
        raise TrilogyError(f"cannot size the encoder within {MAX_SIZE_GAP:.0%} of the decoder's {target:,} "
                           f"parameters (nearest is {gap:.1%} off); try a larger --size")
    return {"encoder": matched, "decoder": decoder, "prefix-lm": architecture_config("prefix-lm", decoder),
            "encoder-decoder": base_config("encoder-decoder", tokenizers["encoder-decoder"], size, 4 * size.d_model)}
