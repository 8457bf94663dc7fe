"""Task rows turned into token examples, one layout per (architecture, kind of task); ``task_adapters.py``
explains the choices. An ``Example`` holds what a batch needs (``task_objectives.py`` collates them) and what a
prediction needs to be read back (each tagged word's first token, the context tokens' character offsets).

Layouts (``sep`` is the family's separator: BERT's ``[SEP]``, GPT's ``<|endoftext|>``, T5's ``</s>``):

- encoder: ``[CLS] a [SEP]`` or ``[CLS] question [SEP] context [SEP]`` (BERT's templates).
- decoder and prefix LM: ``text eos`` (read at the eos), ``words``, ``question eos context``,
  ``source eos target eos`` (only the target and its eos predicted), ``eos text`` (every text token predicted);
  the prefix LM reads the whole input (classification, tagging, span), the source and its eos (seq2seq) or the
  leading eos alone (lm: as causal) bidirectionally.
- encoder-decoder: source ``a </s>`` (span: ``question </s> context </s>``; lm: ``</s>`` alone) and target
  ``b </s>`` (lm: the text without ``</s>``).

Truncation to ``seq_len``: a pair keeps at most half of it for its second part when both do not fit (the
context, the target), the rest for the first, each cut at its end; a single text is cut at its end; an lm text
is cut into windows of ``seq_len - 1`` predicted tokens. A span row whose answer is cut off is skipped in
training and left without a gold span in evaluation (its prediction is then scored as it comes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from ..data.task_files import Row
from ..data.tokenizer import special_tokens
from ..errors import TrilogyError
from .noise import IGNORE

#: the special tokens each layout reads
NEEDS = {"encoder": ("pad", "cls", "sep"), "decoder": ("pad", "eos"), "prefix-lm": ("pad", "eos"),
         "encoder-decoder": ("pad", "eos", "decoder_start")}


@dataclass(frozen=True)
class Example:
    """One row's tokens. ``labels``: a class index (sequence head), per-position targets with -100 (token head,
    causal LM), a (start, end) token pair (span head; None when the answer was cut off) or target ids
    (encoder-decoder)."""

    input_ids: tuple[int, ...]  # encoder or decoder input; the encoder-decoder's source
    labels: Any
    row: int = 0  # the task row it comes from (an lm text gives one example per window)
    prefix_length: int | None = None  # prefix LM: leading tokens read bidirectionally
    word_starts: tuple[int, ...] = ()  # tagging: each word's first token position, -1 when cut off
    context_start: int = 0  # span: the position of the context's first token
    offsets: tuple[tuple[int, int], ...] = ()  # span: the context tokens' character spans in the context


def specials(tokenizer: Tokenizer, arch: str) -> dict[str, Any]:
    """The tokenizer's special tokens, checked against what ``arch``'s layouts need."""
    found = special_tokens(tokenizer)
    missing = [name for name in NEEDS[arch] if name not in found]
    if missing:
        raise TrilogyError(f"a {arch} task layout needs a tokenizer with {', '.join(NEEDS[arch])}; this one lacks "
                           f"{', '.join(missing)}")
    return found


def encode_rows(rows: list[Row], kind: str, arch: str, tokenizer: Tokenizer, seq_len: int,
                label_names: list[str], training: bool) -> list[Example]:
    """Every row's examples (``training``: span rows whose answer was cut off are skipped)."""
    if seq_len < 8:
        raise TrilogyError(f"seq_len must be at least 8 for task examples, got {seq_len}")
    special = specials(tokenizer, arch)
    layout = Layout(tokenizer, arch, special, seq_len, label_names, training)
    encode = {"classification": layout.classification, "tagging": layout.tagging, "span": layout.span,
              "seq2seq": layout.seq2seq, "lm": layout.lm}[kind]
    return [example for number, row in enumerate(rows) for example in encode(number, row)]


def split_budget(first: int, second: int, budget: int) -> tuple[int, int]:
    """How many tokens of two parts fit ``budget``: both whole if they fit, else the second keeps at most half
    (more if the first is short) and the first the rest."""
    if first + second <= budget:
        return first, second
    keep_second = min(second, max(budget // 2, budget - first))
    return min(first, budget - keep_second), keep_second


class Layout:
    """The examples of one architecture's layouts (see the module docstring)."""

    def __init__(self, tokenizer: Tokenizer, arch: str, special: dict[str, Any], seq_len: int,
                 label_names: list[str], training: bool):
        self.tokenizer, self.arch, self.special, self.seq_len = tokenizer, arch, special, seq_len
        self.label_names, self.training = label_names, training

    def ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def label(self, name: str) -> int:
        if name not in self.label_names:
            raise TrilogyError(f"label {name!r} is not one of the {len(self.label_names)} known labels")
        return self.label_names.index(name)

    def text_to_text(self, number: int, source: list[int], target: list[int]) -> list[Example]:
        """An encoder-decoder example: source and target each cut to ``seq_len - 1`` tokens, then ``</s>``."""
        eos, room = self.special["eos"], self.seq_len - 1
        return [Example((*source[:room], eos), (*target[:room], eos), number)]

    def classification(self, number: int, row: Row) -> list[Example]:
        text = self.ids(row["text"])
        if self.arch == "encoder-decoder":
            return self.text_to_text(number, text, self.ids(row["label"]))
        label = self.label(row["label"]) if self.training or row["label"] in self.label_names else 0
        if self.arch == "encoder":
            ids = (self.special["cls"], *text[:self.seq_len - 2], self.special["sep"])
            return [Example(ids, label, number)]
        ids = (*text[:self.seq_len - 1], self.special["eos"])
        return [Example(ids, label, number, self.prefix(len(ids)))]

    def prefix(self, length: int) -> int | None:
        return length if self.arch == "prefix-lm" else None

    def tagging(self, number: int, row: Row) -> list[Example]:
        words, tags = row["tokens"], row["tags"]
        if self.arch == "encoder-decoder":
            return self.text_to_text(number, self.ids(" ".join(words)), self.ids(" ".join(tags)))
        first = 1 if self.arch == "encoder" else 0  # [CLS]
        tokens, starts = word_tokens(self.tokenizer, words)
        room = self.seq_len - 2 if self.arch == "encoder" else self.seq_len
        tokens = tokens[:room]
        starts = [first + s if 0 <= s < room else -1 for s in starts]
        ids = (self.special["cls"], *tokens, self.special["sep"]) if self.arch == "encoder" else tuple(tokens)
        labels = [IGNORE] * len(ids)
        for start, tag in zip(starts, tags, strict=True):
            if start >= 0 and tag in self.label_names:
                labels[start] = self.label(tag)
        return [Example(ids, tuple(labels), number, self.prefix(len(ids)), word_starts=tuple(starts))]

    def span(self, number: int, row: Row) -> list[Example]:
        question = self.ids(row["question"])
        encoding = self.tokenizer.encode(row["context"], add_special_tokens=False)
        context, offsets = encoding.ids, encoding.offsets
        specials = 3 if self.arch == "encoder" else 2 if self.arch == "encoder-decoder" else 1
        kept_question, kept_context = split_budget(len(question), len(context), self.seq_len - specials)
        question, context, offsets = question[:kept_question], context[:kept_context], offsets[:kept_context]
        if self.arch == "encoder-decoder":
            eos = self.special["eos"]
            if self.training and not answer_tokens(offsets, row):
                return []
            return [Example((*question, eos, *context, eos), (*self.ids(row["answer"])[:self.seq_len - 1], eos),
                            number)]
        if self.arch == "encoder":
            cls, sep = self.special["cls"], self.special["sep"]
            ids, start = (cls, *question, sep, *context, sep), len(question) + 2
        else:
            ids, start = (*question, self.special["eos"], *context), len(question) + 1
        gold = answer_tokens(offsets, row)
        if gold is None and self.training:
            return []
        labels = None if gold is None else (start + gold[0], start + gold[1])
        return [Example(ids, labels, number, self.prefix(len(ids)), context_start=start, offsets=tuple(offsets))]

    def seq2seq(self, number: int, row: Row) -> list[Example]:
        source, target = self.ids(row["source"]), self.ids(row["target"])
        if self.arch == "encoder-decoder":
            return self.text_to_text(number, source, target)
        if self.arch == "encoder":
            raise TrilogyError(UNAVAILABLE[("encoder", "seq2seq")])
        eos, half = self.special["eos"], self.seq_len // 2
        source = source[:self.seq_len - half - 1]
        prompt = (*source, eos)
        if not self.training:
            return [Example(prompt, None, number, self.prefix(len(prompt)))]
        ids = (*prompt, *target[:half - 1], eos)
        labels = [IGNORE] * (len(prompt) - 1) + list(ids[len(prompt):]) + [IGNORE]  # labels[t] = ids[t + 1]
        return [Example(ids, tuple(labels), number, self.prefix(len(prompt)))]

    def lm(self, number: int, row: Row) -> list[Example]:
        if self.arch == "encoder":
            raise TrilogyError(UNAVAILABLE[("encoder", "lm")])
        text, room, eos = self.ids(row["text"]), self.seq_len - 1, self.special["eos"]
        windows = [text[i:i + room] for i in range(0, len(text), room)]
        if self.arch == "encoder-decoder":
            return [Example((eos,), tuple(window), number) for window in windows]
        return [Example((eos, *window), (*window, IGNORE), number, 1 if self.arch == "prefix-lm" else None)
                for window in windows]


UNAVAILABLE = {
    ("encoder", "seq2seq"): "an encoder-only model does not write text",
    ("encoder", "lm"): "a masked LM gives no probability of a whole text",
}


def word_tokens(tokenizer: Tokenizer, words: list[str]) -> tuple[list[int], list[int]]:
    """The tokens of the words joined by spaces, and each word's first token position (-1 if it has none):
    a token belongs to the word of the first non-space character its offsets cover."""
    text = " ".join(words)
    owner = [-1] * len(text)  # the word of each character, -1 for the spaces
    position = 0
    for index, text_of_word in enumerate(words):
        owner[position:position + len(text_of_word)] = [index] * len(text_of_word)
        position += len(text_of_word) + 1
    encoding = tokenizer.encode(text, add_special_tokens=False)
    starts = [-1] * len(words)
    for token, (begin, end) in enumerate(encoding.offsets):
        word = next((owner[c] for c in range(begin, min(end, len(text))) if owner[c] >= 0), -1)
        if word >= 0 and starts[word] < 0:
            starts[word] = token
    return encoding.ids, starts


def answer_tokens(offsets: list[tuple[int, int]], row: Row) -> tuple[int, int] | None:
    """The first and last context tokens whose character spans overlap the answer, None when the answer is
    not whole among the kept tokens."""
    begin = row["answer_start"]
    end = begin + len(row["answer"])
    covering = [i for i, (s, e) in enumerate(offsets) if s < end and e > begin]
    if not covering or offsets[covering[-1]][1] < end:
        return None
    return covering[0], covering[-1]
