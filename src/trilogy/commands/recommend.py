"""``trilogy recommend``: its options and the function it runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..evidence import read_report, recommendation_evidence, recommendation_lines
from ..option_fields import option
from ..recommend import recommend as recommendation


@dataclass(kw_only=True)
class RecommendOptions:
    """The task ``trilogy recommend`` reads, and how it answers."""

    task: list[str] = option(doc='the task, e.g. "summarize legal contracts"', positional=True)
    json: bool = option(False, "print JSON: factors, architecture, runner_up, confidence, reasons")
    evidence: str | None = option(None, "a report.json of trilogy demo: cite its measured tasks of the "
                                        "recommendation's kind", metavar="REPORT")


def recommend(options: RecommendOptions) -> int:
    """Which family suits a task, described in free text.

    The decision guide as a tool. Describe the task in your own words; get the decision factors read from it
    (what the output is, how it relates to the input, which context it needs, cost, data), the family they lead
    to, the runner-up and a confidence, or a plain "nothing to go on" when the description says nothing about
    what goes in and what comes out. With ``--evidence``, what a ``trilogy demo`` report measured on the tasks
    of the recommendation's kind, and whether it agrees."""
    answer = recommendation(" ".join(options.task))
    report = read_report(options.evidence) if options.evidence else None
    if options.json:
        result = answer.to_dict()
        if report is not None:
            result["evidence"] = recommendation_evidence(answer, report)
        print(json.dumps(result, indent=2))
        return 0
    if answer.architecture is None:
        print(f"No recommendation: {answer.reasons[0]}.")
    else:
        print(f"Recommended: {answer.family} (confidence {answer.confidence:.2f}, {answer.confidence_word})")
        for reason in answer.reasons:
            print(f"  - {reason}")
    if report is not None:
        print("\n".join(recommendation_lines(answer, report)))
    return 0
