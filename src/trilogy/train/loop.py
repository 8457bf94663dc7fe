"""The training loop in named phases: restore, then each step (accumulate, clip, optimise), report, evaluate and
save. Each phase is a function that returns what changed; the loop carries a ``Progress`` value between them.

Everything the loop needs is passed in: the model, an iterator of global batches that can report and restore its
position, a loss function and an evaluation function. ``trilogy.train.session`` builds them from a command line.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import fsdp
from .distributed import Distributed
from .metrics import MetricsLog, plot_loss
from .optim import build_optimizer, lr_at, set_lr
from .precision import denormals_flushed
from .state import (
    latest_checkpoint,
    load_training_state,
    load_weights,
    publish,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

Batch = dict[str, Tensor]
LossFn = Callable[[nn.Module, Batch], tuple[Tensor, dict]]


@dataclass
class TrainSettings:
    max_steps: int
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    grad_accum: int = 1  # micro-batches per optimizer step
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    save_every: int = 0  # 0: only at the end
    keep_last: int = 2
    eval_every: int = 0  # 0: only at the end
    log_every: int = 1  # 0: only at the end
    fsdp: bool = False  # shard parameters, gradients and optimizer state over the ranks (FSDP2)


class NonFiniteLoss(RuntimeError):
    """The loss or the gradient became NaN or infinite; the run stopped and its last good checkpoint is kept."""


@dataclass(frozen=True)
class Progress:
    """Where the run stands, carried from phase to phase. ``step`` and the best are saved with each checkpoint;
    ``tokens`` and ``elapsed`` (the throughput figure) count from the start of this process."""

    step: int = 0
    best_step: int | None = None  # the saved checkpoint with the lowest validation loss
    best_loss: float | None = None
    last_loss: float | None = None  # the training loss of the latest step
    last_eval: dict | None = None  # the metrics of the latest evaluation, and its step
    eval_step: int | None = None
    tokens: int = 0  # real input tokens trained on, all ranks together
    elapsed: float = 0.0  # seconds since this process started the loop


@dataclass
class TrainResult:
    step: int
    last_loss: float | None
    last_eval: dict | None
    best_step: int | None
    best_loss: float | None


class Resumable(Iterator[Batch]):  # the interface ``batches`` must offer
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class LossOf(nn.Module):
    """The model with its loss as ``forward``: what DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Batch) -> tuple[Tensor, dict]:
        return self.loss_fn(self.model, batch)


def micro_batches(batch: Batch, pieces: int) -> list[Batch]:
    """Cut a batch's rows in ``pieces``; ``loss_normalizer`` (a scalar for the whole batch) goes to each."""
    cut = {k: v.tensor_split(pieces) if v.dim() > 0 else [v] * pieces for k, v in batch.items()}
    return [{k: parts[i] for k, parts in cut.items()} for i in range(pieces)]


def tokens_seen(batch: Batch) -> int:
    """Real (not padding) input tokens of a batch, encoder and decoder, for the throughput figure."""
    return sum(int(value.sum()) for name, value in batch.items() if name.endswith("attention_mask"))


def train(model: nn.Module, batches: Resumable, loss_fn: LossFn, settings: TrainSettings, out_dir: Path,
          save_model_files: Callable[[nn.Module, Path], None], evaluate: Callable[[nn.Module], dict] | None,
          dist: Distributed, resume: bool = False, run_info: dict | None = None) -> TrainResult:
    """Train ``model`` for ``settings.max_steps`` optimizer steps, writing checkpoints and metrics to ``out_dir``.

    Args:
        batches: yields this rank's share of each step's global batch (all micro-batches of the step), with
            ``loss_normalizer`` (global targets / world size); can save and restore its position
            (``trilogy.objectives.Batches``).
        loss_fn: ``(model, batch) -> (loss sum / loss_normalizer, metrics with loss_sum and targets)``.
        save_model_files: ``(model, folder)`` writes config.json, model.safetensors, tokenizer.json.
        evaluate: ``model -> metrics`` on the validation split (with ``loss``), run on every rank.
        resume: continue from the latest checkpoint in ``out_dir``; the result is bitwise the same as a run
            that was never interrupted (CPU, same settings and thread count).
        run_info: saved with each checkpoint (the command line that built this run).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out_dir / "metrics.jsonl")
    checkpoint = latest_checkpoint(out_dir) if resume else None
    optimizer = ready(model, checkpoint, settings)
    progress = restore(checkpoint, model, optimizer, batches, settings, out_dir, log, dist) if resume else Progress()
    step_module = with_loss(model, loss_fn, settings, dist)

    with tqdm(total=settings.max_steps, initial=progress.step, disable=not dist.is_main, dynamic_ncols=True,
              desc="train") as bar, denormals_flushed(dist.device.type == "cpu"):
        started = time.perf_counter()
        model.train()
        while progress.step < settings.max_steps:
            # the step: accumulate the micro-batches' gradients, clip, optimise
            lr = lr_at(progress.step, settings.lr, settings.warmup_steps, settings.max_steps, settings.min_lr_ratio)
            loss, tokens = accumulate(step_module, model, next(batches), settings, dist)
            grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm))
            stop_unless_finite(loss, grad_norm, progress.step + 1, out_dir, log, dist)
            optimise(optimizer, lr)
            progress = replace(progress, step=progress.step + 1, last_loss=loss, tokens=progress.tokens + tokens,
                               elapsed=time.perf_counter() - started)

            # then what is due at this step: the log, an evaluation, a checkpoint
            report(progress, lr, grad_norm, settings, log, bar, dist)
            if evaluate is not None and due(progress.step, settings.eval_every, settings.max_steps):
                progress = evaluated(progress, evaluate(model), log, bar, dist)  # evaluate() restores train mode
            if due(progress.step, settings.save_every, settings.max_steps):
                progress = save(progress, model, optimizer, batches, settings, out_dir, log, save_model_files,
                                run_info, dist)
    return TrainResult(progress.step, progress.last_loss, progress.last_eval, progress.best_step, progress.best_loss)


# --- restore -------------------------------------------------------------------------------------------------


def ready(model: nn.Module, checkpoint: Path | None, settings: TrainSettings) -> torch.optim.Optimizer:
    """Load ``checkpoint``'s weights (when given) into the whole model, before it is sharded with FSDP if
    asked, and build the optimizer over the parameters that result."""
    if checkpoint is not None:
        load_weights(model, checkpoint)
    if settings.fsdp:
        fsdp.shard(model)
    return build_optimizer(model, settings.lr, settings.weight_decay)


def restore(checkpoint: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer, batches: Resumable,
            settings: TrainSettings, out_dir: Path, log: MetricsLog, dist: Distributed) -> Progress:
    """The progress of the run resumed from ``checkpoint``, with its optimizer state, data position and RNG
    put back; a run killed before its first checkpoint starts again from step 0. The metrics of later steps
    are dropped: they are computed again."""
    progress = Progress()
    if checkpoint is not None:
        state = load_training_state(checkpoint)
        if settings.fsdp:
            fsdp.load_full_optimizer_state(model, optimizer, state["optimizer"])
        else:
            optimizer.load_state_dict(state["optimizer"])
        batches.load_state_dict(state["data"])
        set_rng_state(state["rng"][dist.rank])
        progress = Progress(step=state["step"], best_step=state["best_step"], best_loss=state["best_loss"])
    if dist.is_main:
        log.truncate_after(progress.step)
        if checkpoint is not None:
            publish(checkpoint, out_dir)  # a kill may have come between the checkpoint and its publication
    return progress


def with_loss(model: nn.Module, loss_fn: LossFn, settings: TrainSettings, dist: Distributed) -> nn.Module:
    """What each micro-batch runs through: the model with its loss, in DDP when several ranks train without
    FSDP (DDP syncs gradients for what runs through its forward, so the loss is its forward)."""
    module = LossOf(model, loss_fn)
    if dist.enabled and not settings.fsdp:
        device_ids = [dist.device] if dist.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
    return module


# --- step ----------------------------------------------------------------------------------------------------


def accumulate(step_module: nn.Module, model: nn.Module, batch: Batch, settings: TrainSettings,
               dist: Distributed) -> tuple[float, int]:
    """Forward and backward over the step's batch cut in ``grad_accum`` micro-batches, so that accumulating
    computes exactly the big batch (same rows, same noise). ``compute_loss`` divides each piece's loss sum by
    the step's global target count / world size, so the pieces' gradients add up to the mean over every target
    of the step, and DDP's average over the ranks keeps it so.

    Returns:
        the step's mean loss over every target of every rank, and the real input tokens of all ranks.
    """
    autocast = torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16")
    loss_sum = torch.zeros((), dtype=torch.float64)
    targets = torch.zeros((), dtype=torch.float64)
    tokens = 0
    pieces = micro_batches(batch, settings.grad_accum)
    for i, piece in enumerate(pieces):
        piece = {k: v.to(dist.device) for k, v in piece.items()}
        sync = i == len(pieces) - 1 or not dist.enabled
        if settings.fsdp:
            model.set_requires_gradient_sync(sync)
        no_sync = contextlib.nullcontext() if sync or settings.fsdp else step_module.no_sync()
        with no_sync, autocast:
            loss, metrics = step_module(piece)
        loss.backward()
        loss_sum += metrics["loss_sum"]
        targets += metrics["targets"]
        tokens += tokens_seen(piece) * dist.world_size
    return (dist.sum(loss_sum) / dist.sum(targets)).item(), tokens


def stop_unless_finite(loss: float, grad_norm: float, step: int, out_dir: Path, log: MetricsLog,
                       dist: Distributed) -> None:
    """Raise ``NonFiniteLoss`` for a NaN or infinite loss or gradient, before it can touch the weights or the
    checkpoints, and record the step in the log."""
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    if dist.is_main:
        log.append(dict(step=step, split="train", loss=loss if math.isfinite(loss) else None,
                        event="non-finite loss or gradient"))
    kept = latest_checkpoint(out_dir)
    raise NonFiniteLoss(
        f"loss {loss}, gradient norm {grad_norm} at step {step}; stopped, last good checkpoint: "
        f"{kept if kept is not None else 'none (no checkpoint was written yet)'}"
    )


def optimise(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """One optimizer step at learning rate ``lr``; the gradients are freed for the next step."""
    set_lr(optimizer, lr)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# --- report, evaluate, save ----------------------------------------------------------------------------------


def due(step: int, every: int, max_steps: int) -> bool:
    """Whether something done every ``every`` steps (0: only at the end) happens at ``step``."""
    return step == max_steps or (every != 0 and step % every == 0)


def report(progress: Progress, lr: float, grad_norm: float, settings: TrainSettings, log: MetricsLog, bar: tqdm,
           dist: Distributed) -> None:
    """Log the step's figures (every ``log_every`` steps and at the end) and show them on the progress bar."""
    tokens_per_s = progress.tokens / progress.elapsed if progress.elapsed > 0 else 0.0
    if dist.is_main and due(progress.step, settings.log_every, settings.max_steps):
        log.append(dict(step=progress.step, split="train", loss=progress.last_loss, lr=lr, grad_norm=grad_norm,
                        tokens_per_s=round(tokens_per_s, 1)))
    bar.set_postfix(loss=f"{progress.last_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
    bar.update(1)


def evaluated(progress: Progress, metrics: dict, log: MetricsLog, bar: tqdm, dist: Distributed) -> Progress:
    """Record an evaluation at ``progress.step``: in the log, on the bar, and as the progress's latest."""
    if dist.is_main:
        log.append(dict(step=progress.step, split="validation", **metrics))
        bar.write("step {}: {}".format(progress.step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())))
    return replace(progress, last_eval=metrics, eval_step=progress.step)


def with_best(progress: Progress) -> Progress:
    """The best is chosen among saved checkpoints: an evaluation at this step becomes the best when its loss
    is lower than the best's."""
    latest = progress.last_eval
    if latest is None or progress.eval_step != progress.step:
        return progress
    if progress.best_loss is None or latest["loss"] < progress.best_loss:
        return replace(progress, best_step=progress.step, best_loss=latest["loss"])
    return progress


def rng_states(dist: Distributed) -> list:
    """Every rank's RNG states, in rank order (a collective: every rank takes part)."""
    if not dist.enabled:
        return [rng_state()]
    states = [None] * dist.world_size
    torch.distributed.all_gather_object(states, rng_state())
    return states


def save(progress: Progress, model: nn.Module, optimizer: torch.optim.Optimizer, batches: Resumable,
         settings: TrainSettings, out_dir: Path, log: MetricsLog, save_model_files: Callable[[nn.Module, Path], None],
         run_info: dict | None, dist: Distributed) -> Progress:
    """Checkpoint the run at ``progress.step`` (every rank takes part, the main rank writes) with the loss
    curve, and return the progress with its best checkpoint."""
    progress = with_best(progress)
    optimizer_state = (fsdp.full_optimizer_state(model, optimizer) if settings.fsdp
                       else optimizer.state_dict())  # with FSDP a collective
    export = fsdp.unsharded_copy(model) if settings.fsdp else model
    rngs = rng_states(dist)
    if dist.is_main:
        training_state = dict(
            step=progress.step, best_step=progress.best_step, best_loss=progress.best_loss, optimizer=optimizer_state,
            data=batches.state_dict(), rng=rngs, settings=asdict(settings), run_info=run_info or {},
        )
        save_checkpoint(out_dir, progress.step, lambda folder: save_model_files(export, folder), training_state,
                        settings.keep_last, progress.best_step)
        plot_loss(log.records(), out_dir / "loss.png")
    dist.barrier()
    return progress
