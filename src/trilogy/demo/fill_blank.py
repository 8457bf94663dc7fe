"""The one question all three families can answer: a held-out line of the text with one word hidden.

BERT reads both sides of the blank (``[MASK]`` in its place); GPT reads only what comes before it and
predicts the next token; T5 would read both sides with a sentinel in the blank's place, if its training saw
the text (the demo's T5 pre-trains on code, so it does not take part). The blanks are the same for every
family: a lower-case word of 3+ letters, not the first of its line, that is a single token for every
participating family's tokenizer (so no family is asked for a word its vocabulary has to spell in pieces).
Each family sees the line before too. A prediction is right when its token, as a word, is the hidden word.
The baseline always answers the most frequent such word of the training text.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

import torch

from ..data import special_tokens
from ..objectives import pad_rows

WORD = re.compile(r"\b[a-z]{3,}\b")
MIN_WORDS, MAX_WORDS = 6, 16  # words in a line that gets a blank
BATCH = 64


class Blank(NamedTuple):
    before: str  # the text before the hidden word, the previous line included
    word: str
    after: str  # the rest of its line


def single_token(word: str, tokenizers: dict) -> bool:
    """Whether ``word`` is one token for each tokenizer, as it appears mid-line (after a space)."""
    return all(len(t.encode(" " + word, add_special_tokens=False).ids) == 1 for t in tokenizers.values())


def make_blanks(texts: Iterable[str], tokenizers: dict, count: int, seed: int) -> list[Blank]:
    """Up to ``count`` blanks from held-out ``texts``, drawn with ``seed``: one word of each chosen line."""
    lines = [line.strip() for text in texts for line in text.splitlines()]
    candidates = [i for i, line in enumerate(lines) if i > 0 and MIN_WORDS <= len(line.split()) <= MAX_WORDS]
    rng = random.Random(seed)
    rng.shuffle(candidates)
    blanks = []
    for i in candidates:
        line = lines[i]
        first = line.split()[0]
        spots = [m for m in WORD.finditer(line) if m.start() >= len(first) and single_token(m.group(), tokenizers)]
        if spots:
            spot = rng.choice(spots)
            blanks.append(Blank(f"{lines[i - 1]}\n{line[:spot.start()].rstrip()}", spot.group(),
                                line[spot.end():]))
        if len(blanks) == count:
            break
    return blanks


def most_frequent_word(texts: Iterable[str], tokenizers: dict) -> str:
    """The most frequent word of ``texts`` that could be a blank."""
    counts = Counter(word for text in texts for word in WORD.findall(text))
    return next(word for word, _ in counts.most_common() if single_token(word, tokenizers))


def _batches(rows: list[list[int]], pad: int, device) -> Iterable[tuple[int, torch.Tensor, torch.Tensor]]:
    for start in range(0, len(rows), BATCH):
        ids, mask = pad_rows([torch.tensor(row) for row in rows[start:start + BATCH]], pad)
        yield start, ids.to(device), mask.to(device)


@torch.no_grad()
def masked_answers(model, blanks: list[Blank]) -> list[str]:
    """BERT's word for each blank: the argmax at ``[MASK]``, with the whole line around it."""
    tokenizer, special = model.tokenizer, special_tokens(model.tokenizer)
    rows = [tokenizer.encode(f"{before} [MASK]{after}").ids for before, _, after in blanks]
    answers = []
    for _, ids, mask in _batches(rows, special["pad"], model.device):
        logits = model.run(ids, mask).logits  # (B, T, V)
        at = (ids == special["mask"]).float().argmax(-1)  # (B,) the position of [MASK]
        answers += tokenizer.decode_batch(logits[torch.arange(len(ids)), at].argmax(-1)[:, None].tolist())
    return [answer.strip() for answer in answers]


@torch.no_grad()
def next_word_answers(model, blanks: list[Blank]) -> list[str]:
    """GPT's word for each blank: its next-token argmax after the text before the blank (nothing after it)."""
    tokenizer, special = model.tokenizer, special_tokens(model.tokenizer)
    rows = [tokenizer.encode(before, add_special_tokens=False).ids for before, _, _ in blanks]
    answers = []
    for _, ids, mask in _batches(rows, special["pad"], model.device):
        logits = model.run(ids, mask).logits  # (B, T, V)
        last = mask.sum(-1) - 1  # (B,) the last real position: right padding leaves it unchanged
        answers += tokenizer.decode_batch(logits[torch.arange(len(ids)), last].argmax(-1)[:, None].tolist())
    return [answer.strip() for answer in answers]


def accuracy(answers: list[str], blanks: list[Blank]) -> float:
    return sum(answer == blank.word for answer, blank in zip(answers, blanks, strict=True)) / max(len(blanks), 1)


ANSWERERS = {"bert": masked_answers, "gpt": next_word_answers}
SHOWN = 8  # examples in the report


def fill_blank(models: dict, text_corpus, training_texts: Iterable[str], count: int, seed: int) -> dict:
    """The common-ground table: ``{"bert": accuracy, "gpt": accuracy, "t5": None, "baseline": accuracy,
    "baseline_word", "blanks": n, "examples"}``; a family without a model in ``models`` gets None. Empty when
    neither BERT nor GPT was trained."""
    present = {family: models[family] for family in ANSWERERS if family in models}
    if not present:
        return {}
    tokenizers = {family: model.tokenizer for family, model in present.items()}
    blanks = make_blanks(text_corpus.validation, tokenizers, count, seed)
    guess = most_frequent_word(training_texts, tokenizers)
    answers = {family: ANSWERERS[family](model, blanks) for family, model in present.items()}
    examples = [{"before": blank.before, "word": blank.word, "after": blank.after,
                 **{family: answers[family][i] for family in answers}} for i, blank in enumerate(blanks[:SHOWN])]
    return {**{family: accuracy(answers[family], blanks) if family in answers else None for family in ANSWERERS},
            "t5": None, "baseline": accuracy([guess] * len(blanks), blanks), "baseline_word": guess,
            "blanks": len(blanks), "examples": examples}
