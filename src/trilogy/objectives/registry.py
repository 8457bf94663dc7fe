"""The objectives, one small class each, in one registry.

An ``Objective`` says which family, head and corpus kind it needs, how a batch is built from its rows, what
goes into the model's loss, what evaluation adds to the loss and accuracy, and which baselines apply.
Training, evaluation, ``trilogy eval`` and the demo look an objective up here by name; adding one is a subclass
and a ``register`` call, nothing else.

Legend: B batch, T length.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from ..errors import TrilogyError

if TYPE_CHECKING:
    from ..data import Corpus
    from ..models import ModelOutput
    from .batches import Batches


class Objective:
    """Base of the objectives. The class attributes describe it; the methods have the behaviour most share."""

    name: str = ""
    arch: str = ""  # the family it trains: "encoder", "decoder" or "encoder-decoder"
    families: tuple[str, ...] = ()  # objectives that train several families (the tasks'): those, ``arch`` empty
    head: str = "lm"  # the ModelConfig head it trains
    prefix_lm: bool = False  # it trains a prefix LM (ModelConfig.prefix_lm), passing ``prefix_length`` to ``run``
    corpus_kind: str = "text"  # what it reads: "text" (packed into blocks), "pairs" (source, target) or "task"
    #   (a task's rows as examples, ``task_adapters.py``)
    default_for: tuple[str, ...] = ()  # the corpus kinds on which it is its family's default objective
    separator: str = "eos"  # text objectives: the special token between two documents
    needs: tuple[str, ...] = ("pad", "eos", "decoder_start")  # special tokens the tokenizer must have
    needs_sentinels: bool = False
    labelled: bool = False  # the targets are class names (``Batches.label_names``)
    pads: bool = False  # rows are padded to the longest in a batch (``lengths``), not packed to one length
    eval_sums: tuple[str, ...] = ()  # what ``eval_batch`` adds up over the validation batches
    generates: bool = False  # evaluation decodes (greedy, with ``trilogy eval --repetition-penalty``)

    def epoch_items(self, batches: Batches) -> Iterator[Any]:
        """One pass over the data: token blocks for text objectives (``Batches.blocks``), else the pairs."""
        return iter(batches.documents)

    def lengths(self, batches: Batches, rows: list[Any]) -> list[tuple[int, ...]]:
        """What each row's length will be in a batch (e.g. source, target), for objectives that pad (``pads``):
        training batches rows of similar lengths together."""
        raise NotImplementedError

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        """The global batch of ``rows`` (from ``epoch_items``): input_ids, attention_mask and labels (B, T),
        -100 where nothing is predicted; encoder-decoder batches add decoder_input_ids and its mask."""
        raise NotImplementedError

    def count_targets(self, labels: Tensor) -> int:
        """How many targets the model's loss averages over in ``labels``: those not -100."""
        return int((labels != -100).sum())

    def run(self, model: nn.Module, batch: dict[str, Tensor]) -> ModelOutput:
        """The model on ``batch`` with its labels: the output carries the loss."""
        return model.run(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])

    def eval_batch(self, model: nn.Module, batch: dict[str, Tensor], tokenizer: Tokenizer,
                   repetition_penalty: float) -> list[float]:
        """This batch's share of ``eval_sums``, in that order."""
        return []

    def eval_metrics(self, sums: dict[str, float], corpus: Corpus, tokenizer: Tokenizer, complete: bool
                     ) -> dict[str, float]:
        """The metrics evaluation adds from the summed ``loss_sum``, ``targets``, ``correct`` and ``eval_sums``
        (``complete``: the pass covered the whole validation split)."""
        return {}

    def baselines(self, corpus: Corpus, tokenizer: Tokenizer, seq_len: int, batch_size: int,
                  max_batches: int | None) -> dict[str, dict[str, float]]:
        """The baselines that apply on ``corpus``, on the validation data evaluation uses: {name: {metric: value}}."""
        return {}


class EncoderDecoderObjective(Objective):
    """An objective of encoder-decoder models: the decoder reads the targets shifted right."""

    arch = "encoder-decoder"

    def run(self, model: nn.Module, batch: dict[str, Tensor]) -> ModelOutput:
        return model.run(batch["input_ids"], batch["decoder_input_ids"], batch["attention_mask"],
                         batch["decoder_attention_mask"], labels=batch["labels"])


OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Make ``objective`` known by its name to training, evaluation and the CLI."""
    OBJECTIVES[objective.name] = objective
    return objective


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise TrilogyError(f"objective must be one of {', '.join(OBJECTIVES)}, got {name!r}")
    return OBJECTIVES[name]


def default_objective(arch: str, corpus_kind: str) -> str:
    """The objective a family trains on a corpus of this kind when none is named."""
    for objective in OBJECTIVES.values():
        if objective.arch == arch and corpus_kind in objective.default_for:
            return objective.name
    raise TrilogyError(f"no objective trains a {arch} model on {corpus_kind} by default; name one")
