"""The three families of the demo, sized to the same number of parameters.

The demo trains four *units*, each one run of the training loop in its own checkpoint folder:

============  ===============  =========  ==================================  ================================
unit          family           objective  data                                share of the family's budget
============  ===============  =========  ==================================  ================================
``bert``      encoder-only     mlm        the text corpus                     all
``gpt``       decoder-only     clm        the text corpus                     all
``t5-code``   encoder-decoder  denoise    the pairs' code, summaries kept     ``T5_CODE_SHARE``
``t5``        encoder-decoder  seq2seq    code -> docstring                   the rest, from ``t5-code``'s weights
============  ===============  =========  ==================================  ================================

T5 pre-trains by denoising the code it will describe (the input span-corrupted, the target the whole block,
as BART): to reproduce its input the decoder has to find source tokens and copy them through cross-attention,
which is what writing a docstring from a function's names needs. The code keeps its summaries, as code is
written (each training function with its first docstring line as a comment above it, ``Corpus.sources
(documented=True)``): the decoder also learns how such lines read and follow from the code. Its sequences are half as long and its
batches twice as large as the others' in pre-training (the same tokens per step; T5 span-corrupts short
blocks), and its fine-tuning reads sources of up to 3/4 of ``--seq-len`` tokens (docstrings are short).

Sizes: GPT is the reference (``d_model``, ``n_layers``, MLP width ``4 * d_model``). BERT has as many layers;
T5 splits them into ``n_layers // 2`` encoder and ``n_layers // 2`` decoder layers (its decoder layers are
larger: they cross-attend). Each of BERT and T5 then gets the MLP width (a multiple of ``FF_STEP``) whose
parameter count, from ``num_parameters()`` of the model built on the meta device, is nearest GPT's (the count
is linear in the width, so two counts find it). BERT and T5 use rotary positions (as ModernBERT does; for T5 it
makes the copying alignment much easier to learn than the relative bias).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TINY_PRESETS, ModelConfig
from ..data import special_tokens
from ..errors import TrilogyError
from ..models import build_model

T5_CODE_SHARE = 0.65  # of T5's budget spent denoising the code; the docstrings get the rest
FF_STEP = 16
MAX_SIZE_GAP = 0.10  # the "equal parameter counts (within 10%)"


@dataclass(frozen=True)
class Unit:
    """One training run of the demo."""

    name: str  # folder name under the demo's output folder
    family: str  # "bert" | "gpt" | "t5": whose budget and size it shares
    arch: str
    objective: str
    data: str  # "text", "code" (the sources of the pairs) or "pairs"
    label: str  # for tables and charts
    budget_share: float  # of the family's budget
    starts_from: str | None = None  # unit whose final weights it starts from
    seq_scale: float = 1.0  # its sequence length and batch size: the demo's times these
    batch_scale: int = 1

    def seq_len(self, demo_seq_len: int) -> int:
        return max(8, int(demo_seq_len * self.seq_scale))

    def batch_size(self, demo_batch_size: int) -> int:
        return demo_batch_size * self.batch_scale


UNITS = (
    Unit("bert", "bert", "encoder", "mlm", "text", "BERT (masked LM)", 1.0),
    Unit("gpt", "gpt", "decoder", "clm", "text", "GPT (causal LM)", 1.0),
    Unit("t5-code", "t5", "encoder-decoder", "denoise", "code", "T5 (denoising code)", T5_CODE_SHARE,
         seq_scale=0.5, batch_scale=2),
    Unit("t5", "t5", "encoder-decoder", "seq2seq", "pairs", "T5 (code -> docstring)", 1 - T5_CODE_SHARE,
         starts_from="t5-code", seq_scale=0.75, batch_scale=2),
)
FAMILY_ARCH = {"bert": "encoder", "gpt": "decoder", "t5": "encoder-decoder"}


def unit(name: str) -> Unit:
    return next(u for u in UNITS if u.name == name)


def count_parameters(config: ModelConfig) -> int:
    """``num_parameters()`` of the model ``config`` builds, on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return build_model(config).num_parameters()


def base_config(arch: str, tokenizer, d_model: int, n_heads: int, n_layers: int, d_ff: int,
                seq_len: int) -> ModelConfig:
    """The family's tiny preset at the demo's sizes, with the tokenizer's vocabulary and special ids.
    Dropout is off: in a budget of minutes these models underfit, and dropout would only slow them down.
    BERT and T5 get rotary positions (see the module's docstring)."""
    special = special_tokens(tokenizer)
    changes = dict(
        vocab_size=tokenizer.get_vocab_size(), d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff,
        max_seq_len=seq_len, dropout=0.0, pad_token_id=special.get("pad"), bos_token_id=special.get("bos"),
        eos_token_id=special.get("eos"),
    )
    if arch == "encoder":  # rotary positions: with BERT's learned ones a masked LM this small stays at the
        changes.update(head="mlm", position="rope")  # unigram guess for thousands of steps (docs/training.md)
    if arch == "encoder-decoder":
        changes.update(d_head=d_model // n_heads, n_layers=n_layers // 2, n_decoder_layers=n_layers // 2,
                       head_scale=d_model**-0.5, decoder_start_token_id=special["decoder_start"], position="rope")
    return ModelConfig.from_preset(TINY_PRESETS[arch], **changes)


def matched_configs(tokenizers: dict[str, object], d_model: int, n_heads: int, n_layers: int,
                    seq_len: int) -> dict[str, ModelConfig]:
    """One config per family (keys "bert", "gpt", "t5"), BERT's and T5's MLP widths chosen so their
    parameter counts are nearest GPT's. Raises ValueError when no width brings them within 10%.

    Args:
        tokenizers: family -> its trained ``tokenizers.Tokenizer`` (vocabularies may differ a little).
    """
    configs = {"gpt": base_config("decoder", tokenizers["gpt"], d_model, n_heads, n_layers, 4 * d_model, seq_len)}
    target = count_parameters(configs["gpt"])
    for family in ("bert", "t5"):
        def sized(d_ff: int, family=family) -> ModelConfig:
            return base_config(FAMILY_ARCH[family], tokenizers[family], d_model, n_heads, n_layers, d_ff, seq_len)

        # parameters grow linearly with the MLP width: two counts give the slope, a third checks the result
        first, second = count_parameters(sized(FF_STEP)), count_parameters(sized(2 * FF_STEP))
        steps = max(1, 1 + round((target - first) / (second - first)))
        configs[family] = sized(steps * FF_STEP)
        gap = abs(count_parameters(configs[family]) - target) / target
        if gap > MAX_SIZE_GAP:
            raise TrilogyError(f"cannot size {family} within {MAX_SIZE_GAP:.0%} of GPT's {target:,} parameters "
                               f"at d_model {d_model} (nearest is {gap:.1%} off); try a larger --d-model")
    return configs
