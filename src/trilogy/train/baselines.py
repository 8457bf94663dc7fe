"""Baselines a trained model's validation figures are read against, computed on the same validation data; each
objective says which apply (``Objective.baselines`` in ``trilogy.objectives``):

- ``clm``: a unigram model of the training split's tokens (add-one smoothed), in nats and bits per character;
- ``mlm``: always guessing the training split's most frequent token, as masked accuracy;
- ``seq2seq`` on source code: copying the function's name (``def parse_args(`` -> "Parse args") as the summary,
  exact match and word F1 against the references the model is scored against.

The demo reads some of them directly, hence the names imported here.
"""

from __future__ import annotations

from tokenizers import Tokenizer

from ..data import Corpus
from ..data.task_baselines import function_name, name_as_docstring
from ..objectives import get_objective
from ..objectives.masked import guess_accuracies, most_frequent_accuracy
from ..objectives.pairs import copy_name_scores

__all__ = ["baselines", "copy_name_scores", "function_name", "guess_accuracies", "most_frequent_accuracy",
           "name_as_docstring"]


def baselines(objective: str, corpus: Corpus, tokenizer: Tokenizer, seq_len: int, batch_size: int,
              max_batches: int | None) -> dict[str, dict]:
    """The baselines that apply to ``objective`` on ``corpus``: {name: {metric: value}}."""
    return get_objective(objective).baselines(corpus, tokenizer, seq_len, batch_size, max_batches)
