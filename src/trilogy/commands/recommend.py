"""``trilogy recommend "TASK"``: the decision guide as a tool. Describe the task in your own words; get the
decision factors read from it (what the output is, how it relates to the input, which context it needs, cost,
data), the family they lead to, the runner-up and a confidence, or a plain "nothing to go on" when the
description says nothing about what goes in and what comes out."""

from __future__ import annotations

import argparse
import json

from ..recommend import recommend


def run(args: argparse.Namespace) -> int:
    answer = recommend(" ".join(args.task))
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
        return 0
    if answer.architecture is None:
        print(f"No recommendation: {answer.reasons[0]}.")
        return 0
    print(f"Recommended: {answer.family} (confidence {answer.confidence:.2f}, {answer.confidence_word})")
    for reason in answer.reasons:
        print(f"  - {reason}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("recommend", help="which family suits a task, described in free text",
                                   description=__doc__)
    parser.add_argument("task", nargs="+", help='the task, e.g. "summarize legal contracts"')
    parser.add_argument("--json", action="store_true",
                        help="print JSON: factors, architecture, runner_up, confidence, reasons")
    parser.set_defaults(func=run)
