"""Training objectives, one class each in a registry (``registry.py``): what a batch looks like, how it is
noised, what goes into the loss, what evaluation reports and against which baselines.

=================  =================  ================================================================
objective          family             a batch
=================  =================  ================================================================
``clm``            decoder            packed blocks; ``labels[:, t]`` is the token after ``input_ids[:, t]``
``prefix-lm``      decoder (prefix)   ``clm``'s blocks split at a random point: ``prefix_length`` read both
                                      ways, the continuation predicted (T5's prefix LM)
``mlm``            encoder            packed ``[CLS] ... [SEP]`` blocks, 15% of tokens chosen (BERT)
``span``           encoder-decoder    packed blocks, T5 span corruption (density 0.15, mean span 3)
``denoise``        encoder-decoder    packed blocks, inputs as ``span``; the target is the whole block (BART)
``seq2seq``        encoder-decoder    (source, target) pairs, padded to the longest in the global batch
``classification`` encoder            (text, label) pairs; ``labels`` (B,) are indices into ``label_names``
``task-*``         several            a task's rows as examples (``task_adapters.py``: the fine-tuning of each
                                      architecture on each kind of task, and its predictions)
=================  =================  ================================================================

``causal.py``, ``prefix_lm.py``, ``masked.py``, ``spans.py``, ``pairs.py`` and ``task_objectives.py`` define and register them;
``batches.py`` makes any objective's batches deterministic, resumable and sharded; ``loss.py`` computes the loss of
a batch.
"""

from . import causal, masked, pairs, prefix_lm, spans, task_objectives  # noqa: F401  (each registers its objectives)
from .batch_loss import compute_loss
from .batches import LENGTH_GROUP_BATCHES, Batches, pad_rows
from .noise import (
    IGNORE,
    MASK_PROBABILITY,
    corrupt_spans,
    mask_tokens,
    random_spans_noise_mask,
    replace_spans,
    span_counts,
    span_lengths,
)
from .registry import (
    OBJECTIVES,
    EncoderDecoderObjective,
    Objective,
    default_objective,
    get_objective,
    register,
)

__all__ = [
    "IGNORE", "LENGTH_GROUP_BATCHES", "MASK_PROBABILITY", "OBJECTIVES", "Batches", "EncoderDecoderObjective", "Objective", "compute_loss",
    "corrupt_spans", "default_objective", "get_objective", "mask_tokens", "pad_rows", "random_spans_noise_mask",
    "register", "replace_spans", "span_counts", "span_lengths",
]
