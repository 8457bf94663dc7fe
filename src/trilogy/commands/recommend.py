"""``trilogy recommend``: its options and the function it runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..option_fields import option
from ..recommend import recommend as recommendation


@dataclass(kw_only=True)
class RecommendOptions:
    """The task ``trilogy recommend`` reads, and how it answers."""

    task: list[str] = option(doc='the task, e.g. "summarize legal contracts"', positional=True)
    json: bool = option(False, "print JSON: factors, architecture, runner_up, confidence, reasons")


def recommend(options: RecommendOptions) -> int:
    """Which family suits a task, described in free text.

    The decision guide as a tool. Describe the task in your own words; get the decision factors read from it
    (what the output is, how it relates to the input, which context it needs, cost, data), the family they lead
    to, the runner-up and a confidence, or a plain "nothing to go on" when the description says nothing about
    what goes in and what comes out."""
    answer = recommendation(" ".join(options.task))
    if options.json:
        print(json.dumps(answer.to_dict(), indent=2))
        return 0
    if answer.architecture is None:
        print(f"No recommendation: {answer.reasons[0]}.")
        return 0
    print(f"Recommended: {answer.family} (confidence {answer.confidence:.2f}, {answer.confidence_word})")
    for reason in answer.reasons:
        print(f"  - {reason}")
    return 0
