"""What a model must beat to have learned something, measured on the same held-out data as the model:

- causal LM: a unigram model of the training text (token frequencies, add-one smoothed), in nats per character
  of the validation split;
- fill-mask: always guessing the most frequent ordinary token, scored on the very positions the MLM evaluation
  masks;
- docstrings: the function's own name as its summary (``read_file`` -> "Read file"):
  ``trilogy.train.baselines.copy_name_scores``, shared with ``trilogy eval``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
from tokenizers import Tokenizer

from ..data import Corpus, special_ids, special_tokens
from ..objectives import Batches
from ..train.baselines import guess_accuracies

EVAL_SEED = 0  # the seed trilogy.train.evaluate draws its validation batches with


def unigram_counts(tokenizer: Tokenizer, texts: Iterable[str]) -> np.ndarray:
    """How often each id occurs in ``texts`` (encoded without special tokens). Returns (vocab_size,) int64."""
    counts = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    for encoding in tokenizer.encode_batch_fast(list(texts), add_special_tokens=False):
        counts += np.bincount(encoding.ids, minlength=len(counts))
    return counts


def unigram_nats_per_char(counts: np.ndarray, corpus: Corpus, tokenizer: Tokenizer) -> float:
    """Cross-entropy of the add-one-smoothed unigram model on the validation split, per character, with the
    document separator predicted once per document as the causal-LM evaluation does."""
    separator = special_tokens(tokenizer)["eos"]
    documents = list(corpus.validation)
    smoothed = counts.astype(np.float64) + 1.0
    smoothed[separator] += len(documents)
    log_p = np.log(smoothed / smoothed.sum())
    nats = 0.0
    for encoding in tokenizer.encode_batch_fast(documents, add_special_tokens=False):
        nats -= log_p[encoding.ids].sum() + log_p[separator]
    return float(nats / corpus.num_characters("validation"))


def most_frequent_token(counts: np.ndarray, tokenizer: Tokenizer) -> int:
    ordinary = counts.copy()
    ordinary[sorted(special_ids(tokenizer))] = -1
    return int(ordinary.argmax())


def unigram_fill_mask_accuracy(counts: np.ndarray, corpus: Corpus, tokenizer: Tokenizer, seq_len: int,
                               batch_size: int, max_batches: int) -> dict:
    """Accuracies of always guessing the most frequent ordinary token on the MLM evaluation's batches
    (validation split in order, noise seed ``EVAL_SEED``): ``accuracy`` over every target, ``blank_accuracy``
    over the targets shown as [MASK]."""
    batches = Batches("mlm", corpus.validation, tokenizer, seq_len, batch_size, seed=EVAL_SEED, epochs=1,
                      shuffle=False)
    return guess_accuracies(most_frequent_token(counts, tokenizer), itertools.islice(batches, max_batches),
                            special_tokens(tokenizer)["mask"])
