"""``trilogy demo`` from top to bottom, in named phases over typed records: prepare (corpora, tokenizers, three
equal-size models) -> probe (what a step of each unit costs here) -> plan (the same training FLOPs for each
family, by default) -> train (each unit until its quota is spent) -> report (evaluation against baselines and
on one common question, samples, attention pictures).

The output folder holds ``demo.json`` (the options, the probes, the budget and how far each unit got),
``tokenizers/``, one checkpoint folder per unit (``bert``, ``gpt``, ``t5-code``, ``t5``), the pictures,
``report.html``, ``report.md`` and ``report.json``. ``--resume`` reads ``demo.json`` and goes on from there.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..convert import from_pretrained
from ..data import load_corpus, train_tokenizer
from ..errors import TrilogyError
from ..models import Tokenization, build_model
from ..train.distributed import Distributed
from ..train.precision import cpu_has_fast_bf16, resolve_precision
from .budget import StopRequest, first_ctrl_c_requests_stop
from .families import FAMILY_ARCH, UNITS, Unit, matched_configs
from .findings import build_report
from .report import format_flops, format_quota, write_reports
from .slices import TOKENIZER_CHARS, capped_texts
from .state import BUDGETS, STATE_FILE, TOKENIZER_DATA, Budget, DemoOptions, DemoState, load_state, save_state
from .training import Job, Probe, plan, probe, train_unit


def family_quota(options: DemoOptions, probes: dict[str, Probe]) -> float:
    """Each family's budget in its measure: ``--flops`` if given, else as much as lets the four units train in
    ``train_seconds`` at the step costs the probe measured (each unit spends its share of its family's quota).
    A time budget splits the seconds equally."""
    measure = BUDGETS[options.budget]
    if options.flops is not None:
        return options.flops
    if measure == "seconds":
        return options.train_seconds / len(FAMILY_ARCH)
    return options.train_seconds / training_seconds(probes, measure)


def training_seconds(probes: dict[str, Probe], measure: str = "flops") -> float:
    """Seconds of training steps the four units take at these step costs when each family gets one unit of
    ``measure`` (each unit its share of it)."""
    return sum(unit.budget_share * probes[unit.name].step_seconds / probes[unit.name].per_step(measure)
               for unit in UNITS)


def prepare_tokenizers(out: Path, corpora: dict, vocab_size: int) -> dict[str, Tokenizer]:
    """family -> its tokenizer, trained on a slice of what the family trains on (BERT and GPT the text, T5 the
    code and docstrings), or loaded from ``tokenizers/`` when a resumed demo already trained it."""
    folder = out / "tokenizers"
    folder.mkdir(exist_ok=True)
    tokenizers = {}
    for family, arch in FAMILY_ARCH.items():
        path = folder / f"{family}.json"
        if not path.is_file():
            started = time.perf_counter()
            texts = itertools.chain.from_iterable(capped_texts(corpora[kind], TOKENIZER_CHARS[kind])
                                                  for kind in TOKENIZER_DATA[family])
            tokenizer = train_tokenizer(arch, texts, vocab_size)
            tokenizer.save(str(path.with_suffix(".tmp")))
            os.replace(path.with_suffix(".tmp"), path)
            print(f"  {family} tokenizer: {tokenizer.get_vocab_size():,} tokens "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)
        tokenizers[family] = Tokenizer.from_file(str(path))
    return tokenizers


@dataclass
class Setup:
    """What every phase works with: the options, the output folder, the data, tokenizers and model configs,
    where the models run, and the Ctrl-C request."""

    options: DemoOptions
    out: Path
    corpora: dict
    tokenizers: dict[str, Tokenizer]
    configs: dict
    dist: Distributed
    stop: StopRequest

    def fresh_model(self, unit: Unit):
        """A new model of the unit's family, seeded, with its tokenizer."""
        torch.manual_seed(self.options.seed)
        return build_model(self.configs[unit.family], tokenization=Tokenization(self.tokenizers[unit.family]))

    def starting_model(self, unit: Unit):
        """A fresh model of the unit's family (seeded), or the final weights of the unit it starts from."""
        if unit.starts_from is not None:
            return from_pretrained(self.out / unit.starts_from)
        return self.fresh_model(unit)

    def job(self, unit: Unit, model, precision: str) -> Job:
        options = self.options
        return Job(unit, self.out / unit.name, model.to(self.dist.device), self.corpora[unit.data],
                   unit.seq_len(options.seq_len), unit.batch_size(options.batch_size), options.eval_batches,
                   options.seed, self.dist, precision)


def prepare(options: DemoOptions, out: Path, stop: StopRequest) -> Setup:
    """The corpora, the tokenizers (trained, or read back when resuming) and the families' configs."""
    corpora = {"text": load_corpus(options.data), "pairs": load_corpus(options.pairs)}
    if corpora["text"].kind != "text" or corpora["pairs"].kind != "pairs":
        raise TrilogyError("--data must be text (a file, a folder, JSONL with 'text', or shakespeare) and "
                           "--pairs source/target pairs (JSONL with 'source' and 'target', or stdlib-docstrings)")
    corpora["code"] = corpora["pairs"].sources(documented=True)
    print("training tokenizers", flush=True)
    tokenizers = prepare_tokenizers(out, corpora, options.vocab_size)
    configs = matched_configs(tokenizers, options.d_model, options.heads, options.layers, options.seq_len)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Setup(options, out, corpora, tokenizers, configs, Distributed(0, 1, device), stop)


def precisions_to_try(options: DemoOptions, device: torch.device) -> tuple[str, ...]:
    """On a CPU with bf16 instructions, "auto" times both precisions: whether bf16 pays off depends on the
    sizes."""
    if options.precision == "auto" and device.type == "cpu" and cpu_has_fast_bf16():
        return ("fp32", "bf16")
    return (resolve_precision(options.precision, device),)


def probe_units(setup: Setup, state: DemoState, candidates: tuple[str, ...]) -> None:
    """What a step of each unit costs on this machine, in each candidate precision (kept in the state)."""
    for number, unit in enumerate(UNITS, start=1):
        probes = state.units[unit.name].probes
        for precision in candidates:
            if precision not in probes and not setup.stop.requested:
                print(f"[{number}/{len(UNITS)}] {unit.label}: timing training steps ({precision})", flush=True)
                probes[precision] = probe(setup.job(unit, setup.fresh_model(unit), precision))
                save_state(setup.out, state)


def plan_budget(setup: Setup, state: DemoState, candidates: tuple[str, ...]) -> None:
    """The faster precision, each family's quota, and each unit's plan (once: a resumed demo keeps its own)."""
    if state.budget is None:
        options = setup.options
        state.precision = min(candidates, key=lambda p: training_seconds(state.probes(p)))
        probes = state.probes(state.precision)
        quota = family_quota(options, probes)
        planned_seconds = 0.0
        for unit in UNITS:
            planned = plan(probes[unit.name], BUDGETS[options.budget], quota * unit.budget_share)
            state.units[unit.name].plan = planned
            planned_seconds += planned.planned_seconds
        state.budget = Budget(options.budget, BUDGETS[options.budget], quota, planned_seconds)
        save_state(setup.out, state)
    print(f"budget: {format_quota(state.budget.measure, state.budget.per_family)} per family; about "
          f"{state.budget.planned_seconds:.0f} s of training in all, in {state.precision}", flush=True)


def train_units(setup: Setup, state: DemoState) -> None:
    """Each unit in turn until its plan is spent (or Ctrl-C, or its deadline); a resumed unit goes on from its
    last checkpoint, a finished one is skipped."""
    for number, unit in enumerate(UNITS, start=1):
        record = state.units[unit.name]
        if setup.stop.requested or record.finished:
            continue
        planned = record.plan
        assert planned is not None and state.precision is not None  # plan_budget ran
        job = setup.job(unit, setup.starting_model(unit), state.precision)
        print(f"[{number}/{len(UNITS)}] {unit.label}: {job.model.num_parameters():,} parameters, "
              f"{planned.max_steps} steps for {format_quota(planned.measure, planned.quota)} "
              f"(about {planned.planned_seconds:.0f} s)", flush=True)
        was_started = record.status in ("training", "interrupted")
        record.status = "training"
        save_state(setup.out, state)
        result = train_unit(job, planned, record.probes[state.precision].step_seconds, setup.stop,
                            resume=was_started)
        previous_peak = record.peak_memory_bytes or 0
        result["peak_memory_bytes"] = max(previous_peak, result["peak_memory_bytes"] or 0) or None
        for name, value in result.items():
            setattr(record, name, value)
        save_state(setup.out, state)
        print(f"[{number}/{len(UNITS)}] {unit.label}: {record.status} after {record.steps} steps, "
              f"{format_flops(record.flops)}, {record.tokens:,} tokens, {record.seconds:.0f} s", flush=True)


def run_demo(options: DemoOptions, out: Path, resume: bool = False) -> dict:
    """Run (or continue) the demo in ``out`` and write its report. Returns the report's data; its
    ``interrupted`` is True when Ctrl-C stopped the training (the report is then partial)."""
    out = Path(out)
    if not resume and (out / STATE_FILE).exists():
        raise TrilogyError(f"{out} already holds a demo; continue it with --resume, or choose another --out")
    started = time.perf_counter()
    with first_ctrl_c_requests_stop() as stop:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        candidates = precisions_to_try(options, device)
        print(f"trilogy demo: {options.minutes:g} minutes on {device.type} ({' or '.join(candidates)}); each "
              f"family gets the same budget of training {options.budget}", flush=True)
        state = load_state(out) if resume else DemoState(options)
        out.mkdir(parents=True, exist_ok=True)
        save_state(out, state)
        setup = prepare(options, out, stop)
        probe_units(setup, state, candidates)
        if not stop.requested:  # Ctrl-C during the probe: nothing to plan or train
            plan_budget(setup, state, candidates)
            train_units(setup, state)
        print("evaluating and writing the report", flush=True)
        report = build_report(out, options, state, setup.corpora, setup.tokenizers, setup.dist,
                              interrupted=stop.requested)
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
        write_reports(out, report)
        return report
