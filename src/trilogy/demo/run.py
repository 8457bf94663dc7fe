"""``trilogy demo`` from top to bottom, in named phases over typed records: prepare (the tasks, the pre-training
corpus, one tokenizer per family, four equal-size models) -> probe (what a step of each unit costs here) -> plan
(the same pre-training FLOPs for each architecture, the same fine-tuning FLOPs for each on each task) ->
pre-train -> fine-tune -> evaluate (each fine-tuned model on its task's held-out rows) -> report.

A seed's folder holds ``demo.json`` (the options, the probes, the budget, how far each unit got and its score),
``tokenizers/``, ``pretrain/ARCH/`` and ``finetune/TASK/ARCH/`` (each a checkpoint ``trilogy.from_pretrained``
loads). ``--resume`` reads ``demo.json`` and goes on from there.

Under ``torchrun`` every rank runs every phase with its rows of each global batch (the size's batch, split over
the ranks), so the budget, the steps and the FLOPs are one process's; the main rank writes the folder and prints
the progress, and the others wait for what it wrote where they read it (the tokenizers, each unit's weights).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..convert import from_pretrained
from ..data import train_tokenizer
from ..data.pretraining import pretraining_corpus
from ..data.tasks import Task, load_task, task_from_file
from ..errors import TrilogyError
from ..models import Tokenization, build_model
from ..objectives import Batches, compute_loss
from ..objectives.task_adapters import (
    adaptation,
    architecture_config,
    fine_tune_config,
    score,
    task_batches,
    task_loss,
)
from ..train.distributed import Distributed, setup
from ..train.precision import resolve_precision
from .budget import StopRequest
from .families import ARCHITECTURES, LABELS, PRETRAINING, SIZES, TOKENIZER, Size, matched_configs
from .findings import seed_results
from .report import format_flops
from .state import (
    STATE_FILE,
    Budget,
    DemoOptions,
    DemoState,
    finetune_unit,
    load_state,
    pretrain_unit,
    save_state,
)
from .training import (
    FINE_TUNING_RATE,
    LEARNING_RATE,
    LEARNING_RATES,
    Job,
    equal_quota,
    plan,
    probe,
    train_unit,
)

TOKENIZER_CHARS = 2_000_000  # of the corpus each tokenizer trains on


def load_tasks(options: DemoOptions) -> list[Task]:
    """The built-in tasks named in the options, capped, then the user's task files."""
    tasks = [load_task(name, options.max_train, options.max_eval) for name in options.tasks]
    for path in options.task_files:
        task = task_from_file(path)
        tasks.append(Task(task.name, task.kind, task.metric, task.higher_is_better, task.train[:options.max_train],
                          task.eval[:options.max_eval], task.baseline, task.claimed_family, task.claim, task.source))
    names = [task.name for task in tasks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise TrilogyError(f"two tasks are named {repeated[0]!r}; rename one task file")
    return tasks


def say(dist: Distributed, text: str) -> None:
    """A line of progress, from the main rank (the others would repeat it)."""
    if dist.is_main:
        print(text, flush=True)


def join(options: DemoOptions) -> Distributed:
    """This process's rank and device: under torchrun its place in the process group and, on GPUs, its own
    one; else rank 0 of 1 on ``--device`` (``auto``: cuda when there is one)."""
    gpu = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    dist = setup({"auto": None, "cuda": gpu}.get(options.device, options.device))
    batch_size = SIZES[options.size].batch_size
    if batch_size % dist.world_size:
        raise TrilogyError(f"--size {options.size}'s batch of {batch_size} rows does not split over "
                           f"{dist.world_size} processes; run a number of processes that divides it")
    return dist


def prepare_tokenizers(out: Path, corpus: list[str], vocab_size: int, families: set[str],
                       dist: Distributed) -> dict[str, Tokenizer]:
    """Tokenizer family -> its tokenizer, trained on the start of the corpus (by the main rank; the others read
    it back), or read back from ``tokenizers/`` when a resumed demo already trained it."""
    folder = out / "tokenizers"
    folder.mkdir(exist_ok=True)
    tokenizers = {}
    for family in sorted(families):
        path = folder / f"{family}.json"
        if dist.is_main and not path.is_file():
            started = time.perf_counter()
            texts, used = [], 0
            for document in corpus:
                texts.append(document)
                used += len(document)
                if used > TOKENIZER_CHARS:
                    break
            tokenizer = train_tokenizer(family, texts, vocab_size)
            tokenizer.save(str(path.with_suffix(".tmp")))
            os.replace(path.with_suffix(".tmp"), path)
            print(f"  {family} tokenizer: {tokenizer.get_vocab_size():,} tokens "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)
        dist.barrier()  # the other ranks read what the main rank wrote
        tokenizers[family] = Tokenizer.from_file(str(path))
    return tokenizers


def as_architecture(model, arch: str):
    """``model`` with its config made ``arch``'s (a decoder checkpoint becomes a prefix LM), its weights kept."""
    config = architecture_config(arch, model.config)
    if config == model.config:
        return model
    changed = build_model(config, tokenization=model.tokenization)
    changed.load_state_dict(model.state_dict())
    return changed


def fine_tune_model(pretrained, task: Task, arch: str):
    """A model of the task's fine-tuning config, holding every pretrained weight whose name and shape it has
    (the new heads start fresh)."""
    model = build_model(fine_tune_config(pretrained.config, task, arch), tokenization=pretrained.tokenization)
    own = model.state_dict()
    kept = {name: value for name, value in pretrained.state_dict().items()
            if name in own and own[name].shape == value.shape}
    model.load_state_dict(kept, strict=False)
    return model


@dataclass
class Setup:
    """What every phase works with: the options, the output folder, the tasks, the corpus, tokenizers and
    configs, where the models run, and the Ctrl-C request."""

    options: DemoOptions
    out: Path
    size: Size
    tasks: list[Task]
    corpus: list[str]
    tokenizers: dict[str, Tokenizer]
    configs: dict
    dist: Distributed
    precision: str
    stop: StopRequest

    def fresh_model(self, arch: str):
        torch.manual_seed(self.options.seed)
        return build_model(self.configs[arch], tokenization=Tokenization(self.tokenizers[TOKENIZER[arch]]))

    def pretrained(self, arch: str, fresh: bool = False):
        """The architecture's pre-trained model: its ``--init`` checkpoint, or its pre-training's final weights
        (``fresh``: a new model of that shape, for the probe)."""
        if arch in self.options.checkpoints:
            model = from_pretrained(self.options.checkpoints[arch])
            if model.tokenizer is None:
                raise TrilogyError(f"--init {arch}={self.options.checkpoints[arch]}: the checkpoint has no tokenizer.json")
            return as_architecture(model, arch)
        if fresh:
            return self.fresh_model(arch)
        return from_pretrained(self.out / pretrain_unit(arch))

    def pretrain_job(self, arch: str, model) -> Job:
        objective = PRETRAINING[arch]
        seq_len, batch_size = self.size.seq_len, self.size.batch_size

        def batches(seed: int) -> Batches:
            return Batches(objective, self.corpus, model.tokenizer, seq_len, batch_size, seed,
                           rank=self.dist.rank, world_size=self.dist.world_size)

        def loss(model, batch):
            return compute_loss(objective, model, batch)

        return Job(pretrain_unit(arch), self.out / pretrain_unit(arch), model.to(self.dist.device), batches, loss,
                   LEARNING_RATES.get(objective, LEARNING_RATE), self.options.seed, self.dist, self.precision)

    def finetune_job(self, task: Task, arch: str, model) -> Job:
        seq_len, batch_size = self.size.seq_len, self.size.batch_size

        def batches(seed: int):
            return task_batches(task, arch, model.tokenizer, seq_len, batch_size, seed, self.dist.rank,
                                self.dist.world_size)

        name = finetune_unit(task.name, arch)
        return Job(name, self.out / name, model.to(self.dist.device), batches, task_loss, FINE_TUNING_RATE,
                   self.options.seed, self.dist, self.precision)

    def save(self, state: DemoState) -> None:
        """``demo.json``, written by the main rank."""
        if self.dist.is_main:
            save_state(self.out, state)

    def pretraining_archs(self) -> list[str]:
        return [arch for arch in ARCHITECTURES if arch not in self.options.checkpoints]


def prepare(options: DemoOptions, out: Path, stop: StopRequest, dist: Distributed) -> Setup:
    """The tasks, the corpus, the tokenizers (trained, or read back when resuming) and the configs."""
    size = SIZES[options.size]
    say(dist, "loading the tasks and the pre-training corpus")
    tasks = load_tasks(options)
    corpus = pretraining_corpus(size.corpus_bytes)
    say(dist, f"  {len(tasks)} tasks; corpus: {len(corpus):,} documents, {sum(map(len, corpus)):,} characters")
    families = {TOKENIZER[arch] for arch in ARCHITECTURES}
    tokenizers = prepare_tokenizers(out, corpus, size.vocab_size, families, dist)
    configs = matched_configs(tokenizers, size)
    return Setup(options, out, size, tasks, corpus, tokenizers, configs, dist,
                 resolve_precision(options.precision, dist.device), stop)


def probe_units(setup: Setup, state: DemoState) -> None:
    """What a step of each unit costs on this machine (kept in the state); the fine-tuning units whose
    architecture has no adaptation for their task's kind are marked n/a with the reason."""
    for arch in setup.pretraining_archs():
        record = state.unit(pretrain_unit(arch))
        if record.probe is None and not setup.stop.requested:
            say(setup.dist, f"timing pre-training steps: {LABELS[arch]}")
            record.probe = probe(setup.pretrain_job(arch, setup.fresh_model(arch)))
            setup.save(state)
    for task in setup.tasks:
        for arch in ARCHITECTURES:
            record = state.unit(finetune_unit(task.name, arch))
            adapted = adaptation(arch, task.kind)
            if adapted.unavailable is not None:
                record.status, record.reason = "n/a", adapted.unavailable
            elif record.probe is None and not setup.stop.requested:
                say(setup.dist, f"timing fine-tuning steps: {task.name}, {arch}")
                model = fine_tune_model(setup.pretrained(arch, fresh=True), task, arch)
                record.probe = probe(setup.finetune_job(task, arch, model))
            setup.save(state)


def plan_budget(setup: Setup, state: DemoState, shared: Budget | None = None) -> None:
    """Equal pre-training FLOPs for the architectures, equal fine-tuning FLOPs for each on each task, and each
    unit's plan (once: a resumed demo keeps its own). The quotas are the size's (``Size.pretrain_flops``; per task
    ``Size.finetune_steps`` of the decoder's steps), or with ``--minutes`` what fits that time at the probed step
    costs. ``shared``: the quotas of the demo's first seed, which the later seeds keep, so that seeds differ only
    in their random draws."""
    if state.budget is None:
        options = setup.options
        pretrain_flops, finetune_steps = options.budget_flops(setup.size)
        archs = setup.pretraining_archs()
        pretrain = None
        if archs:
            records = [state.units[pretrain_unit(arch)] for arch in archs]
            if shared is not None and shared.pretrain_flops:
                pretrain = shared.pretrain_flops
            elif options.minutes is None:
                pretrain = pretrain_flops
            else:
                pretrain = equal_quota(options.pretrain_seconds, [r.probe for r in records if r.probe])
            for record in records:
                assert record.probe is not None
                record.plan = plan(record.probe, pretrain, timed=options.minutes is not None)
        task_flops = {}
        for task in setup.tasks:
            records = [state.units[finetune_unit(task.name, arch)] for arch in ARCHITECTURES]
            trained = [r for r in records if r.status != "n/a"]
            if not trained:
                continue
            if shared is not None and task.name in shared.task_flops:
                task_flops[task.name] = shared.task_flops[task.name]
            elif options.minutes is None:
                reference = state.units[finetune_unit(task.name, "decoder")].probe
                assert reference is not None
                task_flops[task.name] = finetune_steps * reference.flops_per_step
            else:
                task_flops[task.name] = equal_quota(options.finetune_seconds, [r.probe for r in trained if r.probe])
            for record in trained:
                assert record.probe is not None
                record.plan = plan(record.probe, task_flops[task.name], timed=options.minutes is not None)
        planned = sum(r.plan.planned_seconds for r in state.units.values() if r.plan)
        state.budget = Budget(pretrain, task_flops, planned)
        state.precision = setup.precision
        setup.save(state)
    budget = state.budget
    text = (f"{format_flops(budget.pretrain_flops)} of pre-training per architecture, "
            if budget.pretrain_flops else "")
    say(setup.dist, f"budget: {text}{len(budget.task_flops)} tasks at their own equal fine-tuning FLOPs; about "
                    f"{budget.planned_seconds:.0f} s of training in all, in {state.precision}")


def run_unit(setup: Setup, state: DemoState, name: str, make_job) -> None:
    """Train one unit to its plan (a resumed one from its last checkpoint; a finished one is skipped)."""
    record = state.units[name]
    if setup.stop.requested or record.finished or record.plan is None or record.probe is None:
        return
    job = make_job()
    say(setup.dist, f"{name}: {job.model.num_parameters():,} parameters, {record.plan.max_steps} steps for "
                    f"{format_flops(record.plan.quota)} (about {record.plan.planned_seconds:.0f} s)")
    was_started = record.status in ("training", "interrupted")
    record.status = "training"
    setup.save(state)
    result = train_unit(job, record.plan, record.probe.step_seconds, setup.stop, resume=was_started)
    for key, value in result.items():
        setattr(record, key, value)
    setup.save(state)
    say(setup.dist, f"{name}: {record.status} after {record.steps} steps, {format_flops(record.flops)}, "
                    f"{record.seconds:.0f} s")


def pretrain(setup: Setup, state: DemoState) -> None:
    for arch in setup.pretraining_archs():
        run_unit(setup, state, pretrain_unit(arch),
                 lambda arch=arch: setup.pretrain_job(arch, setup.fresh_model(arch)))


def fine_tune(setup: Setup, state: DemoState) -> None:
    """Each task, each architecture from its pre-trained weights (a model whose pre-training did not finish is
    not fine-tuned)."""
    for task in setup.tasks:
        for arch in ARCHITECTURES:
            if arch not in setup.options.checkpoints and not state.unit(pretrain_unit(arch)).finished:
                continue
            run_unit(setup, state, finetune_unit(task.name, arch),
                     lambda task=task, arch=arch: setup.finetune_job(
                         task, arch, fine_tune_model(setup.pretrained(arch), task, arch)))


def evaluate(setup: Setup, state: DemoState) -> None:
    """Each fine-tuned model's score on its task's held-out rows (kept in the state)."""
    for task in setup.tasks:
        for arch in ARCHITECTURES:
            name = finetune_unit(task.name, arch)
            record = state.units[name]
            if record.status not in ("done", "deadline") or record.score is not None or setup.stop.requested:
                continue
            started = time.perf_counter()
            model = from_pretrained(setup.out / name).to(setup.dist.device).eval()
            with torch.no_grad():
                record.score = score(model, task, arch, model.tokenizer, setup.size.seq_len,
                                              setup.size.batch_size)
            record.eval_seconds = round(time.perf_counter() - started, 2)
            setup.save(state)
            say(setup.dist, f"{name}: {task.metric} {record.score:.3f} ({record.eval_seconds:.0f} s)")


def run_seed(options: DemoOptions, out: Path, stop: StopRequest, dist: Distributed, resume: bool = False,
             budget: Budget | None = None) -> dict:
    """Run (or continue) one seed of the demo in ``out`` as this rank (``join``), with the first seed's
    ``budget`` when given; returns its results (``findings.seed_results``)."""
    out = Path(out)
    if not resume and (out / STATE_FILE).exists():
        raise TrilogyError(f"{out} already holds a demo; continue it with --resume, or choose another --out")
    state = load_state(out) if resume and (out / STATE_FILE).exists() else DemoState(options)
    dist.barrier()  # every rank has read demo.json before the main rank writes it
    out.mkdir(parents=True, exist_ok=True)
    if dist.is_main:
        save_state(out, state)
    setup = prepare(options, out, stop, dist)
    probe_units(setup, state)
    if not stop.requested:
        plan_budget(setup, state, budget)
        pretrain(setup, state)
        fine_tune(setup, state)
        say(setup.dist, "evaluating the fine-tuned models on their tasks' held-out rows")
        evaluate(setup, state)
    return seed_results(setup, state, interrupted=stop.requested)

