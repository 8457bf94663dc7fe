"""The objectives on (source, target) pairs: sequence-to-sequence (T5), evaluated by exact match and word F1 of
greedy generations, against copying the function's name on source code; and sequence classification (BERT).

Legend: B batch, T length.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from ..data import Corpus
from ..data.task_baselines import FUNCTION_NAME, name_as_docstring
from ..data.task_metrics import word_f1
from ..errors import TrilogyError
from .batches import Batches, pad_rows
from .registry import EncoderDecoderObjective, Objective, register


class Seq2Seq(EncoderDecoderObjective):
    """(source, target) pairs, padded to the longest in the global batch (training groups rows of similar
    lengths, ``Batches``)."""

    name, corpus_kind = "seq2seq", "pairs"
    default_for = ("pairs",)
    pads = True
    eval_sums = ("exact", "word_f1", "sequences")
    generates = True

    def lengths(self, batches: Batches, rows: list[Any]) -> list[tuple[int, ...]]:
        sources, targets = batches.encoded([s for s, _ in rows]), batches.encoded([t for _, t in rows])
        return [(min(len(s) + 1, batches.seq_len), min(len(t) + 1, batches.target_len))  # + eos
                for s, t in zip(sources, targets, strict=True)]

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        eos = torch.tensor([batches.special["eos"]])
        sources, targets = batches.encoded([s for s, _ in rows]), batches.encoded([t for _, t in rows])
        return batches.encoder_decoder(
            [torch.cat([torch.from_numpy(s[:batches.seq_len - 1]).long(), eos]) for s in sources],
            [torch.cat([torch.from_numpy(t[:batches.target_len - 1]).long(), eos]) for t in targets])

    def eval_batch(self, model: nn.Module, batch: dict[str, Tensor], tokenizer: Tokenizer,
                   repetition_penalty: float) -> list[float]:
        predictions = generate_targets(model, batch, tokenizer, repetition_penalty)
        references = decode_labels(batch["labels"], tokenizer)
        pairs = list(zip(predictions, references, strict=True))
        return [sum(p.strip() == r.strip() for p, r in pairs), sum(word_f1(p, r) for p, r in pairs), len(pairs)]

    def eval_metrics(self, sums: dict[str, float], corpus: Corpus, tokenizer: Tokenizer, complete: bool
                     ) -> dict[str, float]:
        sequences = max(sums["sequences"], 1)
        return {"exact_match": sums["exact"] / sequences, "word_f1": sums["word_f1"] / sequences}

    def baselines(self, corpus: Corpus, tokenizer: Tokenizer, seq_len: int, batch_size: int,
                  max_batches: int | None) -> dict[str, dict[str, float]]:
        if not any(FUNCTION_NAME.search(s) for s, _ in itertools.islice(corpus.validation, 20)):
            return {}
        return {"copy the function name": copy_name_scores(corpus, tokenizer, seq_len, batch_size, max_batches)}


class Classification(Objective):
    """(text, label) pairs; ``labels`` (B,) are indices into ``Batches.label_names``."""

    name, arch, head, corpus_kind = "classification", "encoder", "sequence-classification", "pairs"
    default_for = ("pairs",)
    needs = ("pad", "cls", "sep")
    labelled = pads = True

    def lengths(self, batches: Batches, rows: list[Any]) -> list[tuple[int, ...]]:
        return [(min(len(s) + 2, batches.seq_len),) for s in batches.encoded([s for s, _ in rows])]  # + cls, sep

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        sources = batches.encoded([s for s, _ in rows])
        body = batches.seq_len - 2
        cls, sep = torch.tensor([batches.special["cls"]]), torch.tensor([batches.special["sep"]])
        input_ids, attention_mask = pad_rows([torch.cat([cls, torch.from_numpy(s[:body]).long(), sep])
                                              for s in sources], batches.special["pad"])
        labels = torch.tensor([label_index(batches.label_names, target) for _, target in rows])  # (B,)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


register(Seq2Seq())
register(Classification())


def label_index(label_names: list[str], target: str) -> int:
    if target not in label_names:
        raise TrilogyError(f"label {target!r} is not one of the {len(label_names)} known labels")
    return label_names.index(target)


# --- generations and their scores ------------------------------------------------------------------------


def generate_targets(model: nn.Module, batch: dict, tokenizer: Tokenizer, repetition_penalty: float = 1.0
                     ) -> list[str]:
    """Greedy generations for the sources of a seq2seq batch, as text."""
    max_new = batch["labels"].size(1)
    generated = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=max_new,
                               repetition_penalty=repetition_penalty)
    return tokenizer.decode_batch(generated[:, 1:].tolist(), skip_special_tokens=True)


def decode_labels(labels: Tensor, tokenizer: Tokenizer) -> list[str]:
    return tokenizer.decode_batch([[t for t in row if t >= 0] for row in labels.tolist()], skip_special_tokens=True)


# --- the copy-the-name baseline ----------------------------------------------------------------------------


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
