"""The loss of a batch, whatever its objective: the objective says what goes into the model (``run``)."""

from __future__ import annotations

from torch import Tensor, nn

from .registry import get_objective


def compute_loss(objective: str, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy of ``model`` on ``batch``, summed over targets and divided by ``batch["loss_normalizer"]``.

    Returns:
        (loss, metrics): ``loss_sum`` (nats over this shard's targets), ``targets`` (their count),
        ``correct`` and ``accuracy`` (argmax hits among them; masked accuracy for mlm) when no gradient is
        computed, as in evaluation.
    """
    # the models take the labels and return the loss: for LM/MLM heads it is fused with the output projection,
    # so the (B, T, V) logits are never held whole
    out = get_objective(objective).run(model, batch)
    targets = int(out.label_count)
    loss_sum = out.loss * targets  # the models return the mean over the counted targets
    metrics = {"loss_sum": float(loss_sum.detach()), "targets": targets}
    if out.label_correct is not None:  # not while training (see blocks/loss.py)
        metrics["correct"] = int(out.label_correct)
        metrics["accuracy"] = metrics["correct"] / max(targets, 1)
    return loss_sum / batch["loss_normalizer"], metrics
