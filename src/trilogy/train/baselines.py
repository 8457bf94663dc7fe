"""Baselines a trained model's validation figures are read against, computed on the same validation data:

- ``clm``: a unigram model of the training split's tokens (add-one smoothed), in nats and bits per character;
- ``mlm``: always guessing the training split's most frequent token, as masked accuracy;
- ``seq2seq`` on source code: copying the function's name (``def parse_args(`` -> "Parse args") as the summary,
  exact match and word F1 against the references the model is scored against.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
from tokenizers import Tokenizer

from ..data import Corpus, special_ids, special_tokens
from ..objectives import IGNORE, Batches
from .evaluate import decode_labels, word_f1

FUNCTION_NAME = re.compile(r"def\s+(\w+)")


def token_counts(corpus: Corpus, tokenizer: Tokenizer) -> np.ndarray:
    """How often each id occurs in the training split's texts. (V,) int64."""
    counts = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    texts = corpus.texts("train")
    while chunk := list(itertools.islice(texts, 64)):
        for encoding in tokenizer.encode_batch_fast(chunk, add_special_tokens=False):
            np.add.at(counts, encoding.ids, 1)
    return counts


def unigram_nats_per_char(corpus: Corpus, tokenizer: Tokenizer, separator: int) -> float:
    """Validation loss of the add-one-smoothed unigram model of the training tokens, per character (the
    document separators are predicted too, as in causal-LM evaluation)."""
    counts = token_counts(corpus, tokenizer)
    counts[separator] += corpus.num_documents("train")
    log_p = np.log(counts + 1.0) - math.log(counts.sum() + len(counts))
    total = 0.0
    for encoding in tokenizer.encode_batch_fast(list(corpus.validation), add_special_tokens=False):
        total -= log_p[encoding.ids].sum() + log_p[separator]
    return total / corpus.num_characters("validation")


def most_frequent_accuracy(corpus: Corpus, tokenizer: Tokenizer, seq_len: int, batch_size: int,
                           max_batches: int | None) -> dict:
    """Masked-LM accuracy of always guessing the most frequent non-special training token, on the same
    validation batches (same masks) as ``evaluate``: over every target (``accuracy``) and over the targets
    the input shows as [MASK] (``blank_accuracy``)."""
    counts = token_counts(corpus, tokenizer)
    counts[sorted(special_ids(tokenizer))] = -1
    batches = Batches("mlm", corpus.validation, tokenizer, seq_len, batch_size, seed=0, epochs=1, shuffle=False)
    return guess_accuracies(int(counts.argmax()), itertools.islice(batches, max_batches),
                            special_tokens(tokenizer)["mask"])


def guess_accuracies(guess: int, batches, mask_id: int) -> dict:
    """Accuracy of guessing ``guess`` for every MLM target of ``batches``, and for those shown as [MASK]."""
    hits = total = blank_hits = blanks = 0
    for batch in batches:
        chosen = batch["labels"] != IGNORE
        blank = chosen & (batch["input_ids"] == mask_id)
        hits += int((batch["labels"][chosen] == guess).sum())
        total += int(chosen.sum())
        blank_hits += int((batch["labels"][blank] == guess).sum())
        blanks += int(blank.sum())
    return {"accuracy": hits / max(total, 1), "blank_accuracy": blank_hits / max(blanks, 1)}


def function_name(source: str) -> str:
    """The name the first ``def`` of ``source`` defines ("" when there is none)."""
    match = FUNCTION_NAME.search(source)
    return match.group(1) if match else ""


def name_as_docstring(source: str) -> str:
    """The copy-the-name baseline's summary of a function: ``def readFile_now(`` -> "Read file now"."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", function_name(source))
    text = " ".join(part for part in name.split("_") if part).lower()
    return text[:1].upper() + text[1:]


def copy_name_scores(corpus: Corpus, tokenizer: Tokenizer, seq_len: int, batch_size: int,
                     max_batches: int | None) -> dict:
    """Exact match and mean word F1 of ``name_as_docstring`` against the references the seq2seq evaluation
    scores a model's generations against: the same validation pairs, decoded from the same labels."""
    batches = Batches("seq2seq", corpus.validation, tokenizer, seq_len, batch_size, epochs=1, shuffle=False)
    sources = (source for source, _ in corpus.validation)
    exact, f1 = [], []
    for batch in itertools.islice(batches, max_batches):
        for reference in decode_labels(batch["labels"], tokenizer):
            guess = name_as_docstring(next(sources))
            exact.append(float(guess.strip() == reference.strip()))
            f1.append(word_f1(guess, reference))
    return {"exact_match": math.fsum(exact) / max(len(exact), 1), "word_f1": math.fsum(f1) / max(len(f1), 1)}


def baselines(objective: str, corpus: Corpus, tokenizer: Tokenizer, seq_len: int, batch_size: int,
              max_batches: int | None) -> dict[str, dict]:
    """The baselines that apply to ``objective`` on ``corpus``: {name: {metric: value}}."""
    if objective == "clm":
        nats = unigram_nats_per_char(corpus, tokenizer, special_tokens(tokenizer)["eos"])
        return {"unigram model": {"nats_per_char": nats, "bits_per_char": nats / math.log(2)}}
    if objective == "mlm":
        return {"most frequent token": most_frequent_accuracy(corpus, tokenizer, seq_len, batch_size, max_batches)}
    if objective == "seq2seq" and any(FUNCTION_NAME.search(s) for s, _ in itertools.islice(corpus.validation, 20)):
        return {"copy the function name": copy_name_scores(corpus, tokenizer, seq_len, batch_size, max_batches)}
    return {}
