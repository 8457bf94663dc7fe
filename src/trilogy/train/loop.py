"""The training loop, read top to bottom: schedule, accumulate, clip, step, log, evaluate, checkpoint.

Everything the loop needs is passed in: the model, an iterator of global batches that can report and restore its
position, a loss function and an evaluation function. ``trilogy.train.session`` builds them from a command line.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
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
    log_every: int = 1
    fsdp: bool = False  # shard parameters, gradients and optimizer state over the ranks (FSDP2)


class NonFiniteLoss(RuntimeError):
    """The loss or the gradient became NaN or infinite; the run stopped and its last good checkpoint is kept."""


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
    raw_model = model
    step, best_step, best_loss, last_eval, last_eval_step = 0, None, None, None, None

    checkpoint = latest_checkpoint(out_dir) if resume else None
    if resume and checkpoint is None and dist.is_main:  # killed before its first checkpoint: start again
        log.truncate_after(0)
    if checkpoint is not None:
        load_weights(raw_model, checkpoint)  # into the whole model, before it is sharded
    if settings.fsdp:
        fsdp.shard(raw_model)
    optimizer = build_optimizer(raw_model, settings.lr, settings.weight_decay)
    if checkpoint is not None:
        state = load_training_state(checkpoint)
        if settings.fsdp:
            fsdp.load_full_optimizer_state(raw_model, optimizer, state["optimizer"])
        else:
            optimizer.load_state_dict(state["optimizer"])
        batches.load_state_dict(state["data"])
        set_rng_state(state["rng"][dist.rank])
        step, best_step, best_loss = state["step"], state["best_step"], state["best_loss"]
        if dist.is_main:
            log.truncate_after(step)
            publish(checkpoint, out_dir)  # a kill may have come between the checkpoint and its publication

    step_module: nn.Module = LossOf(raw_model, loss_fn)
    if dist.enabled and not settings.fsdp:  # DDP syncs gradients for what runs through its forward, so the loss is its forward
        device_ids = [dist.device] if dist.device.type == "cuda" else None
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=device_ids)
    autocast = torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16")

    def checkpoint(at_step: int) -> None:
        nonlocal best_step, best_loss
        if last_eval is not None and last_eval_step == at_step and (best_loss is None or last_eval["loss"] < best_loss):
            best_step, best_loss = at_step, last_eval["loss"]  # the best is chosen among saved checkpoints
        optimizer_state = (fsdp.full_optimizer_state(raw_model, optimizer) if settings.fsdp
                           else optimizer.state_dict())  # with FSDP a collective: every rank takes part
        export = fsdp.unsharded_copy(raw_model) if settings.fsdp else raw_model
        rngs = [None] * dist.world_size
        if dist.enabled:
            torch.distributed.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        if dist.is_main:
            training_state = dict(
                step=at_step, best_step=best_step, best_loss=best_loss, optimizer=optimizer_state,
                data=batches.state_dict(), rng=rngs, settings=asdict(settings), run_info=run_info or {},
            )
            save_checkpoint(out_dir, at_step, lambda folder: save_model_files(export, folder), training_state,
                            settings.keep_last, best_step)
            plot_loss(log.records(), out_dir / "loss.png")
        dist.barrier()

    bar = tqdm(total=settings.max_steps, initial=step, disable=not dist.is_main, dynamic_ncols=True,
               desc="train")
    last_loss = None
    started, tokens_since = time.perf_counter(), 0
    raw_model.train()
    with bar, denormals_flushed(dist.device.type == "cpu"):  # the bar closes before an error is printed
        while step < settings.max_steps:
            # 1. the learning rate of this step
            lr = lr_at(step, settings.lr, settings.warmup_steps, settings.max_steps, settings.min_lr_ratio)
            set_lr(optimizer, lr)

            # 2. forward and backward over the micro-batches: the step's batch cut in ``grad_accum`` pieces, so that
            #    accumulating computes exactly the big batch (same rows, same noise). ``compute_loss`` divides each
            #    piece's loss sum by the step's global target count / world size, so the pieces' gradients add up to
            #    the mean over every target of the step, and DDP's average over the ranks keeps it so
            loss_sum = torch.zeros((), dtype=torch.float64)
            targets = torch.zeros((), dtype=torch.float64)
            micro = micro_batches(next(batches), settings.grad_accum)
            for i, batch in enumerate(micro):
                batch = {k: v.to(dist.device) for k, v in batch.items()}
                sync = i == len(micro) - 1 or not dist.enabled
                if settings.fsdp:
                    raw_model.set_requires_gradient_sync(sync)
                no_sync = contextlib.nullcontext() if sync or settings.fsdp else step_module.no_sync()
                with no_sync, autocast:
                    loss, metrics = step_module(batch)
                loss.backward()
                loss_sum += metrics["loss_sum"]
                targets += metrics["targets"]
                tokens_since += tokens_seen(batch) * dist.world_size
            step_loss = (dist.sum(loss_sum) / dist.sum(targets)).item()

            # 3. clip; a NaN or infinite loss or gradient stops the run before it can touch the weights or the
            #    checkpoints
            grad_norm = float(nn.utils.clip_grad_norm_(raw_model.parameters(), settings.clip_norm))
            if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
                if dist.is_main:
                    log.append(dict(step=step + 1, split="train", loss=step_loss if math.isfinite(step_loss) else None,
                                    event="non-finite loss or gradient"))
                kept = latest_checkpoint(out_dir)
                raise NonFiniteLoss(
                    f"loss {step_loss}, gradient norm {grad_norm} at step {step + 1}; stopped, last good checkpoint: "
                    f"{kept if kept is not None else 'none (no checkpoint was written yet)'}"
                )

            # 4. step
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            last_loss = step_loss

            # 5. log, evaluate, checkpoint
            elapsed = time.perf_counter() - started
            tokens_per_s = tokens_since / elapsed if elapsed > 0 else 0.0
            if dist.is_main and (step % settings.log_every == 0 or step == settings.max_steps):
                log.append(dict(step=step, split="train", loss=step_loss, lr=lr, grad_norm=grad_norm,
                                tokens_per_s=round(tokens_per_s, 1)))
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            bar.update(1)
            final = step == settings.max_steps
            if evaluate is not None and (final or (settings.eval_every and step % settings.eval_every == 0)):
                last_eval, last_eval_step = evaluate(raw_model), step  # evaluate() restores train mode
                if dist.is_main:
                    log.append(dict(step=step, split="validation", **last_eval))
                    bar.write("step {}: {}".format(step, ", ".join(f"{k} {v:.4g}" for k, v in last_eval.items())))
            if final or (settings.save_every and step % settings.save_every == 0):
                checkpoint(step)
    return TrainResult(step, last_loss, last_eval, best_step, best_loss)
