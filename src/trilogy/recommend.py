"""The decision guide as a function: a free-text task description in, a transformer family out, with reasons.

Each family collects evidence from cues in the text, grouped by the three questions the notebook's guide asks:
is the output new text or a judgement on the input (generation vs understanding), how does the output relate
to the input (a label or span of it, a continuation, a rewrite into another sequence), and which context
each position needs (both sides, or only what came before). A description with no cue gets an honest
"nothing to go on" instead of a guess.
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

# factor -> what a cue of that factor says about the task
FACTORS = {
    "understanding": "the output is a judgement on the input (a label, tags or a span), not new text: "
                     "an encoder reads the whole input at once",
    "generation": "the output is new, open-ended text produced token by token: a causal decoder is "
                  "trained for exactly that",
    "rewrite": "the output is a new sequence that restates the input (another language, shorter, other "
               "words), of its own length: an encoder reads the input, a decoder writes the output",
    "bidirectional": "each position needs context from both sides",
    "left-to-right": "the text grows left to right, so each token may only see what came before",
}

# (pattern, family, factor, weight). Patterns are regular expressions over the lower-cased text.
CUES: list[tuple[str, str, str, float]] = [
    # understanding: labels, tags, spans, scores
    (r"\bclassif\w*|\bcategori[sz]\w*|\bcategory|\bcategories", "encoder-only", "understanding", 3),
    (r"\bsentiment|\bpositive or negative|\bpolarity|\bopinion mining|\bemotion", "encoder-only",
     "understanding", 3),
    (r"\bnamed[- ]entit\w*|\bner\b|\bentity (recognition|extraction|tagging)|\bentities\b", "encoder-only",
     "understanding", 3),
    (r"\bpart[- ]of[- ]speech|\bpos tag\w*|\btag(ging)? (each|every) (word|token)|\bsequence label\w*",
     "encoder-only", "understanding", 3),
    (r"\bspam\b|\btoxic\w*|\bhate speech|\bfake news|\bfraud|\bmoderat\w*|\bintents?\b", "encoder-only",
     "understanding", 2),
    (r"\brecogni[sz]\w*|\bmention\w*|\bpeople,? places|\borgani[sz]ations|\bnames of", "encoder-only",
     "understanding", 2),
    (r"\btopic\w*|\bdetect\w*|\bidentif\w*|\blabel\w*|\bflag\w*|\bdecide whether|\bwhether\b|\bis it\b",
     "encoder-only", "understanding", 1.5),
    (r"\bquestion[- ]answering|\banswer\w* questions?|\bquestions? about|\bfind the answer|\bextract\w* the answer"
     r"|\banswer span|\bsquad\b", "encoder-only", "understanding", 2.5),
    (r"\bextract\w*|\bhighlight\w*|\bspan\b|\bwhich (words|part)", "encoder-only", "understanding", 1.5),
    (r"\bsimilar\w*|\bembedding\w*|\bsemantic search|\bretriev\w*|\brank\w*|\bduplicate|\bparaphrase "
     r"detection|\bentail\w*|\bnatural language inference|\bnli\b", "encoder-only", "understanding", 2),
    (r"\bfill in (the )?(blank|gap|missing)|\bmasked (word|token|language)|\bcloze", "encoder-only",
     "bidirectional", 2.5),
    (r"\bboth (sides|directions)|\bwhole (sentence|document|input)|\bfull context|\bbidirectional",
     "encoder-only", "bidirectional", 1.5),
    # generation: open-ended text, continuation, dialogue, code
    (r"\bgenerat\w*|\bwrite\w*|\bwriting\b|\bcompos\w*|\bdraft\w*|\bcreative|\bstor(y|ies)|\bpoem\w*|\blyrics"
     r"|\bessay|\bjokes?\b|\btell (me )?(a|an|the|some)\b", "decoder-only", "generation", 2),
    (r"\bchat\w*|\bdialog\w*|\bconversation\w*|\bassistant|\bconversational|\bcustomer support bot|\breply"
     r"|\brespond\w*", "decoder-only", "generation", 3),
    (r"\bcode\b|\bcoding|\bprogram\w*|\bfunction bodies|\bsnippet\w*|\bsql\b|\bpython\b", "decoder-only",
     "generation", 2),
    (r"\blanguage model\w*|\bnext (word|token)|\bpredict\w* the next|\bautocomplet\w*|\bcomplet\w*"
     r"|\bcontinu\w*|\bprompt\w*|\bfew[- ]shot|\bin[- ]context", "decoder-only", "left-to-right", 3),
    # rewrites: a sequence in, a different sequence out
    (r"\btranslat\w*|\bfrom \w+ (in)?to (english|french|german|spanish|chinese|japanese|italian|\w+ish)"
     r"|\binto (english|french|german|spanish|chinese|japanese|italian)", "encoder-decoder", "rewrite", 3.5),
    (r"\bsummar\w*|\btl;?dr|\bcondens\w*|\bshorten\w*|\bdigest\b|\babstract\w*|\bheadline\w*|\bkey points",
     "encoder-decoder", "rewrite", 3.5),
    (r"\bparaphras\w*|\brephras\w*|\breword\w*|\brewrit\w*|\bsimplif\w*|\bin other words|\bstyle transfer"
     r"|\bformal\w*|\bspelling|\bgrammar\w*|\bproofread\w*", "encoder-decoder", "rewrite", 3),
    (r"\btext[- ]to[- ]text|\bseq(uence)?[- ]?2[- ]?seq\w*|\bsequence[- ]to[- ]sequence|\bconvert\w*|\btransform\w*"
     r"|\bturn \w+ into|\bmap \w+ to", "encoder-decoder", "rewrite", 2.5),
    (r"\bquestion generation|\bgenerate questions|\bdata[- ]to[- ]text|\btable[- ]to[- ]text|\bcaption\w*",
     "encoder-decoder", "rewrite", 2),
]

_COMPILED = [(re.compile(pattern), family, factor, weight) for pattern, family, factor, weight in CUES]


@dataclass
class Recommendation:
    """The guide's answer for one description."""

    task: str
    architecture: str | None  # "encoder-only", "decoder-only", "encoder-decoder", or None: nothing to go on
    runner_up: str | None
    scores: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    cues: dict[str, list[str]] = field(default_factory=dict)  # family -> the words that counted for it

    @property
    def family(self) -> str | None:
        return FAMILIES.get(self.architecture) if self.architecture else None

    def to_dict(self) -> dict:
        return {"task": self.task, "architecture": self.architecture, "family": self.family,
                "runner_up": self.runner_up, "reasons": self.reasons, "scores": self.scores, "cues": self.cues}


def recommend(task: str) -> Recommendation:
    """Recommend a family for a task described in free text (e.g. "translate support emails to German")."""
    if not isinstance(task, str):
        raise TrilogyTypeError(f"the task must be text, got {type(task).__name__}")
    text = " ".join(task.lower().split())
    scores = dict.fromkeys(FAMILIES, 0.0)
    cues: dict[str, list[str]] = {family: [] for family in FAMILIES}
    factors: dict[str, set[str]] = {family: set() for family in FAMILIES}
    for pattern, family, factor, weight in _COMPILED:
        found = pattern.findall(text)
        if found:
            scores[family] += weight
            factors[family].add(factor)
            cues[family] += [m.group(0) for m in pattern.finditer(text)]
    # a rewrite that also "generates" is still a rewrite: the input is given and the output restates it
    if scores["encoder-decoder"] and "generation" in factors["decoder-only"]:
        scores["decoder-only"] -= 1.0
    ranked = sorted(FAMILIES, key=lambda f: scores[f], reverse=True)
    best, second = ranked[0], ranked[1]
    if scores[best] <= 0:
        return Recommendation(task, None, None, scores, [
            "nothing to go on: the description names no output (a label, new text, a rewrite of the input) "
            "and no way the output relates to the input; say what goes in and what should come out"
        ], {})
    reasons = [FACTORS[factor] for factor in sorted(factors[best], key=list(FACTORS).index)]
    direction = {"encoder-only": "bidirectional", "decoder-only": "left-to-right",
                 "encoder-decoder": "bidirectional"}[best]
    if direction not in factors[best]:
        reasons.append(FACTORS[direction] + (" (the encoder; the decoder writes left to right)"
                                             if best == "encoder-decoder" else ""))
    runner_up = second if scores[second] > 0 else _fallback(best)
    reasons.append(f"runner-up: {FAMILIES[runner_up]}, " + _why_runner_up(best, runner_up))
    return Recommendation(task, best, runner_up, scores, reasons, {f: c for f, c in cues.items() if c})


def _fallback(best: str) -> str:
    """The family closest to ``best`` when only one family found cues."""
    return {"encoder-only": "encoder-decoder", "decoder-only": "encoder-decoder",
            "encoder-decoder": "decoder-only"}[best]


def _why_runner_up(best: str, other: str) -> str:
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
