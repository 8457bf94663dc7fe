"""The decision guide as a function: a free-text task description in, a transformer family out, reasoned from
the notebook's decision factors.

The notebook names five factors: generation vs understanding (what the output is), the input-output
relationship, bidirectional vs causal context, computational efficiency, and the training data at hand. Each
is read from the description as evidence for one of its values (words that signal it, matched with their
inflections: "classif" matches "classify" and "classification"); a factor's strength grows with its evidence.
A value implies another when the description is silent (a rewrite of the input is text; text with no input
it restates is open-ended). Each value then points to the families it suits (``POINTS``), and the family with
the most support wins, with the runner-up and a confidence from the margin between them. No factor found:
"nothing to go on" rather than a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import TrilogyTypeError

FAMILIES = {
    "encoder-only": "Encoder-only (BERT-style)",
    "decoder-only": "Decoder-only (GPT-style)",
    "encoder-decoder": "Encoder-decoder (T5-style)",
}

#: (factor, value) -> what it means for the choice
MEANINGS = {
    ("output", "label"): "the output is a judgement on the input (a class, tags, a score, a vector), not new text: "
                         "an encoder reads the whole input in one pass and a small head gives the answer",
    ("output", "text"): "the output is new text, produced token by token by a decoder",
    ("relation", "restates"): "the output restates a given input in another form (another language, shorter, "
                              "other words or structure), with a length of its own: an encoder reads the input, "
                              "a decoder writes the output while attending to it",
    ("relation", "extracts"): "the output is a part of the input (a span, the entities in it): an encoder marks "
                              "it token by token",
    ("relation", "open"): "the output is open-ended, loosely bound to what came before (a prompt, a "
                          "conversation): a causal decoder models exactly that continuation",
    ("context", "both"): "each position needs the context on both sides of it: bidirectional attention",
    ("context", "left"): "the text grows left to right, each token seeing only what came before: causal attention",
    ("efficiency", "one pass"): "it must be cheap or fast at scale: one encoder pass per input beats decoding "
                                "token by token",
    ("data", "few examples"): "there are few or no labelled examples: a pretrained decoder can be prompted "
                              "with instructions or a few examples",
    ("data", "pairs"): "there are pairs of inputs and outputs to learn from: a text-to-text model trains on them",
}

#: (factor, value) -> how much it supports each family
POINTS = {
    ("output", "label"): {"encoder-only": 3.0, "encoder-decoder": 1.0, "decoder-only": 0.5},
    ("output", "text"): {"decoder-only": 2.0, "encoder-decoder": 2.0},
    ("relation", "restates"): {"encoder-decoder": 3.0, "decoder-only": 1.0},
    ("relation", "extracts"): {"encoder-only": 2.5, "encoder-decoder": 0.5},
    ("relation", "open"): {"decoder-only": 3.0, "encoder-decoder": 0.5},
    ("context", "both"): {"encoder-only": 1.5, "encoder-decoder": 1.0},
    ("context", "left"): {"decoder-only": 2.5},
    ("efficiency", "one pass"): {"encoder-only": 1.0},
    ("data", "few examples"): {"decoder-only": 1.5},
    ("data", "pairs"): {"encoder-decoder": 1.0},
}

#: when a factor is silent, what the others imply for it (value, strength)
IMPLIED = {
    ("relation", "restates"): ("output", "text"),
    ("relation", "extracts"): ("output", "label"),
    ("relation", "open"): ("output", "text"),
    ("output", "text"): ("relation", "open"),
}

#: a cue is a sequence of word stems; a stem matches a word that is the stem plus one of these endings
INFLECTIONS = ("", "e", "s", "es", "ed", "d", "ing", "er", "ers", "ion", "ions", "ation", "ations", "ication",
               "ications", "y", "ies", "ied", "ier", "iers", "ize", "ise", "ized", "ised", "izing", "ising",
               "ling", "led", "ization", "isation", "ition", "itions", "ly", "al", "ive", "ment", "ments", "or", "ors", "ity", "ities", "ous", "ar")

#: (factor, value, weight, stems...): the evidence each cue gives
CUES: list[tuple[str, str, float, tuple[str, ...]]] = [
    # output: a judgement on the input
    *[("output", "label", 2.0, (stem,)) for stem in (
        "classif", "categor", "label", "tag", "detect", "flag", "recogn", "identif", "sentiment",
        "polarit", "emotion", "intent", "spam", "phishing", "fraud", "scam", "toxic", "abus", "offensiv",
        "duplicat", "similar", "similarit", "relevan", "rank", "rating", "grade", "score", "embedding", "vector",
        "sort", "group", "cluster", "assign", "filter", "whether", "entit", "ner", "topic", "subject", "moderat",
        "decid", "determin", "verif", "judg", "rate", "categories", "distinguish", "stance", "opinion", "spot",
        "discriminat", "triag", "prioritis", "prioritiz")],
    *[("output", "label", 1.5, stems) for stems in (
        ("is", "this"), ("or", "not"), ("yes", "or", "no"), ("true", "or", "false"), ("check", "if"),
        ("check", "whether"), ("figure", "out"), ("belong", "to"), ("mean", "the", "same"), ("one", "of"),
        ("names", "of"), ("part", "of", "speech"), ("tell", "apart"), ("work", "out"), ("tell", "if"), ("positive",), ("negative",), ("mark",), ("which",),
        ("choice",), ("search",), ("retriev",), ("match",))],
    # output: new text
    *[("output", "text", 2.0, (stem,)) for stem in (
        "write", "writing", "generat", "compos", "draft", "produc", "creat", "suggest", "rewrite")],
    ("output", "text", 1.0, ("code",)),
    ("output", "text", 1.0, ("text",)),
    # relation: the output restates the input
    *[("relation", "restates", 2.5, (stem,)) for stem in (
        "translat", "summar", "condens", "shorten", "shorter", "simplif", "simpler",
        "paraphras", "rephras", "reword", "rewrit", "restat", "transform", "convert", "abstract", "headline",
        "caption", "transcrib", "proofread", "reformulat", "understandabl", "readabl", "normalis", "normaliz")],
    *[("relation", "restates", 1.5, stems) for stems in (
        ("spelling",), ("grammar",), ("fix",), ("correct", "the"), ("correct", "grammar"), ("correct", "spelling"),
        ("render",), ("change",), ("formal",), ("casual",), ("plain", "english"), ("tl", "dr"), ("style", "transfer"),
        ("in", "other", "words"), ("text", "to", "text"), ("seq", "2", "seq"), ("sequence", "to", "sequence"),
        ("table",), ("statistic",), ("key", "points"), ("boil", "down"), ("plain", "language"),
        ("easier", "to", "read"), ("sum", "up"))],
    # relation: the output is a part of the input
    *[("relation", "extracts", 2.0, stems) for stems in (
        ("extract",), ("pull", "out"), ("highlight",), ("span",), ("mention",), ("locat",), ("question", "answer"),
        ("answer", "question"), ("find",))],
    ("relation", "extracts", 1.5, ("passage",)),
    # relation: open-ended text
    *[("relation", "open", 2.0, (stem,)) for stem in (
        "chat", "chatbot", "bot", "talk", "convers", "conversation", "dialog", "dialogue", "companion",
        "invent", "brainstorm", "story", "stories", "poem", "lyric", "joke", "slogan", "creativ", "imagin")],
    *[("relation", "open", 1.5, stems) for stems in (
        ("make", "up"), ("come", "up", "with"), ("tell", "me"), ("prompt",), ("idea",), ("repl",), ("respond",),
        ("assistant",), ("tutor",), ("storytell",), ("ask", "anything"), ("ask", "it"), ("role", "play"),
        ("description",))],
    # context
    *[("context", "left", 2.5, stems) for stems in (
        ("continu",), ("autocomplet",), ("complet",), ("finish",), ("keep", "writing"), ("next", "word"), ("next", "token"),
        ("next", "line"), ("next", "sentence"), ("next", "character"), ("language", "model"), ("as", "they", "type"),
        ("while", "someone", "types"), ("left", "to", "right"), ("stream",))],
    *[("context", "both", 2.0, stems) for stems in (
        ("missing",), ("blank",), ("fill", "in"), ("mask",), ("both", "sides"), ("bidirectional",), ("whole",),
        ("entire",), ("surrounding",))],
    # efficiency and data
    *[("efficiency", "one pass", 1.0, stems) for stems in (
        ("fast",), ("cheap",), ("latency",), ("real", "time"), ("on", "device"), ("phone",), ("thousands",),
        ("millions",), ("at", "scale"), ("cpu",))],
    *[("data", "few examples", 2.0, stems) for stems in (
        ("few", "shot"), ("zero", "shot"), ("prompting",), ("no", "labelled"), ("no", "labeled"),
        ("no", "training"), ("little", "data"), ("in", "context"))],
    *[("data", "pairs", 1.0, stems) for stems in (("pairs",), ("parallel",))],
]

LANGUAGES = {"english", "german", "french", "spanish", "japanese", "chinese", "italian", "portuguese", "russian",
             "arabic", "korean", "hindi", "dutch", "swedish", "polish", "turkish"}
#: "into" restates unless the text is being sorted into classes or turned into numbers
LABEL_TARGETS = {"categories", "category", "classes", "class", "groups", "buckets", "bins", "vector", "vectors",
                 "embedding", "embeddings", "labels", "topics", "clusters"}
LABEL_VERBS = {"sort", "group", "classify", "divide", "split", "bucket", "assign", "cluster", "categorise",
               "categorize"}


@dataclass
class Factor:
    """One decision factor as read from the description."""

    value: str
    strength: float  # 0..1, from the evidence
    evidence: list[str]  # the words that gave it, or "implied by ..."

    def to_dict(self) -> dict:
        return {"value": self.value, "strength": round(self.strength, 2), "evidence": self.evidence}


@dataclass
class Recommendation:
    """The guide's answer for one description."""

    task: str
    architecture: str | None  # "encoder-only", "decoder-only", "encoder-decoder", or None: nothing to go on
    runner_up: str | None
    scores: dict[str, float]
    factors: dict[str, Factor] = field(default_factory=dict)
    confidence: float | None = None  # 0.5 (a coin toss between the two) .. 1 (nothing speaks for the runner-up)
    reasons: list[str] = field(default_factory=list)

    @property
    def family(self) -> str | None:
        return FAMILIES.get(self.architecture) if self.architecture else None

    @property
    def confidence_word(self) -> str | None:
        if self.confidence is None:
            return None
        return "high" if self.confidence >= 0.75 else "medium" if self.confidence >= 0.6 else "low"

    def to_dict(self) -> dict:
        return {"task": self.task, "factors": {name: f.to_dict() for name, f in self.factors.items()},
                "architecture": self.architecture, "family": self.family, "runner_up": self.runner_up,
                "confidence": None if self.confidence is None else round(self.confidence, 2),
                "confidence_word": self.confidence_word, "scores": {k: round(v, 2) for k, v in self.scores.items()},
                "reasons": self.reasons}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _inflects(word: str, stem: str) -> bool:
    return word.startswith(stem) and word[len(stem):] in INFLECTIONS


def evidence(text: str) -> dict[tuple[str, str], tuple[float, list[str]]]:
    """(factor, value) -> (total weight, the phrases that gave it) for every cue found in ``text``."""
    tokens = words(text)
    found: dict[tuple[str, str], tuple[float, list[str]]] = {}
    counted: set[tuple[str, str, int]] = set()  # a word is evidence for a value once, whichever stems match it

    def add(factor: str, value: str, weight: float, phrase: str, start: int) -> None:
        if (factor, value, start) in counted:
            return
        counted.add((factor, value, start))
        total, phrases = found.get((factor, value), (0.0, []))
        found[(factor, value)] = (total + weight, [*phrases, phrase])

    for factor, value, weight, stems in CUES:
        for start in range(len(tokens) - len(stems) + 1):
            if all(_inflects(tokens[start + i], stem) for i, stem in enumerate(stems)):
                add(factor, value, weight, " ".join(tokens[start:start + len(stems)]), start)
    for i, token in enumerate(tokens):
        if token in ("into", "to") and i + 1 < len(tokens) and tokens[i + 1] in LANGUAGES:
            add("relation", "restates", 3.0, f"{token} {tokens[i + 1]}", i)
        elif token == "into" and not (LABEL_TARGETS & set(tokens[i + 1:i + 6]) or LABEL_VERBS & set(tokens[:i])):
            add("relation", "restates", 2.0, f"into {' '.join(tokens[i + 1:i + 4])}", i)
    return found


def read_factors(text: str) -> dict[str, Factor]:
    """Each factor's value with the most evidence, then the values the others imply for silent factors."""
    factors: dict[str, Factor] = {}
    for (factor, value), (weight, phrases) in sorted(evidence(text).items(), key=lambda item: -item[1][0]):
        if factor not in factors:
            factors[factor] = Factor(value, weight / (weight + 1.0), list(dict.fromkeys(phrases)))
    for (factor, value), (implied_factor, implied_value) in IMPLIED.items():
        found = factors.get(factor)
        if found is not None and found.value == value and implied_factor not in factors:
            factors[implied_factor] = Factor(implied_value, 0.5 * found.strength, [f"implied by {factor}={value}"])
    return factors


def recommend(task: str) -> Recommendation:
    """Recommend a family for a task described in free text (e.g. "translate support emails to German")."""
    if not isinstance(task, str):
        raise TrilogyTypeError(f"the task must be text, got {type(task).__name__}")
    factors = read_factors(task)
    scores = dict.fromkeys(FAMILIES, 0.0)
    for name, factor in factors.items():
        for family, points in POINTS[(name, factor.value)].items():
            scores[family] += factor.strength * points
    ranked = sorted(FAMILIES, key=lambda f: scores[f], reverse=True)
    best, second = ranked[0], ranked[1]
    deciding = {name for name in factors if name in ("output", "relation", "context")}
    if not deciding:
        return Recommendation(task, None, None, scores, factors, None, [
            "nothing to go on: the description says neither what the output is (a label, new text, a rewrite "
            "of the input) nor how it relates to the input; say what goes in and what should come out"
        ])
    confidence = scores[best] / (scores[best] + scores[second])
    reasons = [f"{name}: {factor.value} ({', '.join(repr(e) for e in factor.evidence)}): "
               f"{MEANINGS[(name, factor.value)]}" for name, factor in factors.items()]
    runner_up = second if scores[second] > 0 else _closest(best)
    reasons.append(f"runner-up: {FAMILIES[runner_up]}, " + _why_runner_up(runner_up))
    return Recommendation(task, best, runner_up, scores, factors, confidence, reasons)


def _closest(best: str) -> str:
    """The family closest to ``best`` when no factor supports another."""
    return {"encoder-only": "encoder-decoder", "decoder-only": "encoder-decoder",
            "encoder-decoder": "decoder-only"}[best]


def _why_runner_up(other: str) -> str:
    if other == "decoder-only":
        return "a large decoder prompted with the instruction can do this too, at more compute per example"
    if other == "encoder-decoder":
        return ("a text-to-text model can produce the label or text as its output sequence, with an "
                "encoder that still sees the whole input")
    return "an encoder suits it if the output can be framed as a label or a span of the input"


#: the notebook's twelve tasks and the family it names for each
NOTEBOOK_TASKS = {
    "Text Classification": "encoder-only",
    "Sentiment Analysis": "encoder-only",
    "Named Entity Recognition": "encoder-only",
    "Question Answering": "encoder-only",
    "Text Generation": "decoder-only",
    "Language Modeling": "decoder-only",
    "Code Generation": "decoder-only",
    "Chat/Dialogue": "decoder-only",
    "Machine Translation": "encoder-decoder",
    "Summarization": "encoder-decoder",
    "Text-to-Text Tasks": "encoder-decoder",
    "Paraphrasing": "encoder-decoder",
}
