"""What each family learned, shown on examples: GPT continues prompts, BERT fills in a blanked word (top-k with
probabilities), T5 writes docstrings for functions it never saw. Each example sits beside its baseline."""

from __future__ import annotations

import random
import re

import torch

from ..data import special_tokens
from ..train.baselines import function_name, name_as_docstring

PROMPTS = ("ROMEO:\n", "To be, or not to be", "KING HENRY:\nWhat news", "O, ")


@torch.no_grad()
def gpt_samples(model, prompts=PROMPTS, max_new_tokens: int = 60, seed: int = 0) -> list[dict]:
    """A sampled continuation (temperature 0.8, top-k 40, seeded) of each prompt, as long as the model's
    positions allow."""
    tokenizer = model.tokenizer
    rows = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False).ids], device=model.device)
        room = min(max_new_tokens, model.config.max_seq_len - ids.size(1))
        out = model.generate(ids, max_new_tokens=room, do_sample=True, temperature=0.8, top_k=40, seed=seed)
        rows.append({"prompt": prompt, "continuation": tokenizer.decode(out[0, ids.size(1):].tolist())})
    return rows


def blank_sentences(texts, tokenizer, count: int, seed: int, max_len: int) -> list[tuple[str, str]]:
    """``count`` (sentence with one word replaced by [MASK], the word) from ``texts``: lines of 6-16 words
    and at most ``max_len`` tokens with a lower-case word of 3+ letters that is one token of the vocabulary,
    drawn with ``seed``."""
    candidates = []
    for text in texts:
        for line in text.splitlines():
            words = line.split()
            if 6 <= len(words) <= 16:
                candidates.append(line.strip())
        if len(candidates) > 50 * count:
            break
    rng = random.Random(seed)
    rng.shuffle(candidates)
    chosen = []
    for line in candidates:
        words = [w for w in re.findall(r"\b[a-z]{3,}\b", line) if tokenizer.token_to_id(w) is not None]
        if words and len(tokenizer.encode(line).ids) <= max_len:
            word = rng.choice(words)
            chosen.append((re.sub(rf"\b{word}\b", "[MASK]", line, count=1), word))
        if len(chosen) == count:
            break
    return chosen


@torch.no_grad()
def fill_mask(model, blanks: list[tuple[str, str]], baseline_token: int, k: int = 5) -> list[dict]:
    """The model's top-k words (with probabilities) for each blank, and the unigram baseline's guess."""
    tokenizer = model.tokenizer
    mask_id = special_tokens(tokenizer)["mask"]
    rows = []
    for sentence, answer in blanks:
        ids = torch.tensor([tokenizer.encode(sentence).ids], device=model.device)
        position = int((ids[0] == mask_id).nonzero()[0])
        probabilities = model.run(ids).logits[0, position].float().softmax(-1)  # (V,)
        top = probabilities.topk(k)
        predictions = [(tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(top.values, top.indices,
                                                                                  strict=True)]
        rows.append({"sentence": sentence, "answer": answer, "predictions": predictions,
                     "baseline": tokenizer.id_to_token(baseline_token)})
    return rows


@torch.no_grad()
def docstrings(model, pairs: list[tuple[str, str]], seq_len: int, max_new_tokens: int = 32,
               repetition_penalty: float = 1.0) -> list[dict]:
    """Greedy docstrings (with ``repetition_penalty``) for unseen functions, beside the real first docstring line
    and the name baseline."""
    tokenizer = model.tokenizer
    eos = special_tokens(tokenizer)["eos"]
    rows = []
    for source, target in pairs:
        ids = tokenizer.encode(source, add_special_tokens=False).ids[:seq_len - 1] + [eos]
        out = model.generate(torch.tensor([ids], device=model.device), max_new_tokens=max_new_tokens,
                             repetition_penalty=repetition_penalty)
        rows.append({"function": function_name(source), "real": target, "baseline": name_as_docstring(source),
                     "generated": tokenizer.decode(out[0, 1:].tolist(), skip_special_tokens=True)})
    return rows
