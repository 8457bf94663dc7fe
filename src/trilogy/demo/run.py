"""``trilogy demo`` from top to bottom: corpora, tokenizers, three equal-size models, a probe of what a step of
each costs here, training at equal compute (the same training FLOPs for each family, by default), evaluation
against baselines and on one common question, samples, attention pictures, the report.

The output folder holds ``demo.json`` (the options, the probes, the budget and how far each unit got),
``tokenizers/``, one checkpoint folder per unit (``bert``, ``gpt``, ``t5-code``, ``t5``), the pictures,
``report.html``, ``report.md`` and ``report.json``. ``--resume`` reads ``demo.json`` and goes on from there.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..convert import from_pretrained
from ..data import load_corpus, train_tokenizer
from ..errors import TrilogyError
from ..models import Tokenization, build_model
from ..train.distributed import Distributed
from ..train.precision import PRECISIONS, cpu_has_fast_bf16, resolve_precision
from .budget import first_ctrl_c_requests_stop
from .families import FAMILY_ARCH, UNITS, matched_configs
from .findings import build_report
from .report import format_flops, format_quota, write_reports
from .slices import TOKENIZER_CHARS, capped_texts
from .training import Job, Plan, Probe, plan, probe, train_unit

STATE_FILE = "demo.json"
TRAIN_SHARE = 0.8  # of --minutes planned as training steps; the rest: tokenizers, the probe, evaluations,
#                    checkpoints, samples, the report (a 10-minute demo ran 6.8 minutes with 68% planned)
#: --budget -> what it counts (``budget.MEASURES``)
BUDGETS = {"flops": "flops", "tokens": "tokens", "time": "seconds"}
TOKENIZER_DATA = {"bert": ("text",), "gpt": ("text",), "t5": ("pairs",)}  # what each family trains on


@dataclass
class DemoOptions:
    """What decides what a demo computes; saved in demo.json so that ``--resume`` continues the same demo."""

    minutes: float = 10.0
    budget: str = "flops"
    flops: float | None = None  # training FLOPs per family; None: as many as fit in --minutes here
    precision: str = "auto"
    data: str = "shakespeare"
    pairs: str = "stdlib-docstrings"
    seed: int = 0
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    seq_len: int = 128
    batch_size: int = 16
    vocab_size: int = 2048
    eval_batches: int = 10

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise TrilogyError(f"--minutes must be positive, got {self.minutes}")
        if self.budget not in BUDGETS:
            raise TrilogyError(f"--budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if self.flops is not None and (self.budget != "flops" or not self.flops > 0):
            raise TrilogyError(f"--flops must be positive and goes with --budget flops, got {self.flops} with "
                               f"--budget {self.budget}")
        if self.precision not in PRECISIONS:
            raise TrilogyError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("d_model", "layers", "heads", "seq_len", "batch_size", "vocab_size", "eval_batches"):
            if getattr(self, name) <= 0:
                raise TrilogyError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.layers % 2:
            raise TrilogyError(f"--layers must be an even number (T5 splits them into encoder and decoder), "
                               f"got {self.layers}")
        if self.d_model % self.heads:
            raise TrilogyError(f"--d-model ({self.d_model}) must be divisible by --heads ({self.heads})")

    @property
    def train_seconds(self) -> float:
        """Wall-clock planned for training, all families together."""
        return self.minutes * 60 * TRAIN_SHARE


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


def load_state(out: Path) -> dict:
    file = out / STATE_FILE
    if not file.is_file():
        raise TrilogyError(f"--resume: {out} holds no {STATE_FILE}, so no demo to continue")
    return json.loads(file.read_text())


def save_state(out: Path, state: dict) -> None:
    temp = out / f".{STATE_FILE}.tmp"
    temp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(temp, out / STATE_FILE)


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


def fresh_model(unit, configs: dict, tokenizers: dict, seed: int):
    """A new model of the unit's family, seeded, with its tokenizer."""
    torch.manual_seed(seed)
    return build_model(configs[unit.family], tokenization=Tokenization(tokenizers[unit.family]))


def starting_model(unit, configs: dict, tokenizers: dict, out: Path, seed: int):
    """A fresh model of the unit's family (seeded), or the final weights of the unit it starts from."""
    if unit.starts_from is not None:
        return from_pretrained(out / unit.starts_from)
    return fresh_model(unit, configs, tokenizers, seed)


def run_demo(options: DemoOptions, out: Path, resume: bool = False) -> dict:
    """Run (or continue) the demo in ``out`` and write its report. Returns the report's data; its
    ``interrupted`` is True when Ctrl-C stopped the training (the report is then partial)."""
    out = Path(out)
    if not resume and (out / STATE_FILE).exists():
        raise TrilogyError(f"{out} already holds a demo; continue it with --resume, or choose another --out")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dist = Distributed(0, 1, device)
    # on a CPU with bf16 instructions, "auto" times both precisions: whether bf16 pays off depends on the sizes
    candidates = ("fp32", "bf16") if options.precision == "auto" and device.type == "cpu" and \
        cpu_has_fast_bf16() else (resolve_precision(options.precision, device),)
    started = time.perf_counter()
    with first_ctrl_c_requests_stop() as stop:
        print(f"trilogy demo: {options.minutes:g} minutes on {device.type} ({' or '.join(candidates)}); each "
              f"family gets the same budget of training {options.budget}", flush=True)
        corpora = {"text": load_corpus(options.data), "pairs": load_corpus(options.pairs)}
        if corpora["text"].kind != "text" or corpora["pairs"].kind != "pairs":
            raise TrilogyError("--data must be text (a file, a folder, JSONL with 'text', or shakespeare) and "
                             "--pairs source/target pairs (JSONL with 'source' and 'target', or stdlib-docstrings)")
        corpora["code"] = corpora["pairs"].sources(documented=True)
        state = load_state(out) if resume else {"options": asdict(options), "units": {}}
        out.mkdir(parents=True, exist_ok=True)
        save_state(out, state)
        print("training tokenizers", flush=True)
        tokenizers = prepare_tokenizers(out, corpora, options.vocab_size)
        configs = matched_configs(tokenizers, options.d_model, options.heads, options.layers, options.seq_len)

        def job(unit, model, precision: str) -> Job:
            return Job(unit, out / unit.name, model.to(device), corpora[unit.data], unit.seq_len(options.seq_len),
                       unit.batch_size(options.batch_size), options.eval_batches, options.seed, dist, precision)

        for number, unit in enumerate(UNITS, start=1):  # what a step of each unit costs on this machine
            probes = state["units"].setdefault(unit.name, {"status": "pending"}).setdefault("probes", {})
            for precision in candidates:
                if precision not in probes and not stop.requested:
                    print(f"[{number}/{len(UNITS)}] {unit.label}: timing training steps ({precision})", flush=True)
                    model = fresh_model(unit, configs, tokenizers, options.seed)
                    probes[precision] = asdict(probe(job(unit, model, precision)))
                    save_state(out, state)
        if stop.requested:  # Ctrl-C during the probe: nothing was trained
            return _finish(out, options, state, corpora, tokenizers, dist, stop, started)
        if "budget" not in state:
            state["precision"] = min(candidates, key=lambda p: training_seconds(
                {u.name: Probe(**state["units"][u.name]["probes"][p]) for u in UNITS}))
            probes = {unit.name: Probe(**state["units"][unit.name]["probes"][state["precision"]]) for unit in UNITS}
            quota = family_quota(options, probes)
            state["budget"] = {"kind": options.budget, "measure": BUDGETS[options.budget], "per_family": quota,
                               "planned_seconds": 0.0}
            for unit in UNITS:
                planned = plan(probes[unit.name], BUDGETS[options.budget], quota * unit.budget_share)
                state["units"][unit.name]["plan"] = asdict(planned)
                state["budget"]["planned_seconds"] += planned.planned_seconds
            save_state(out, state)
        print(f"budget: {format_quota(state['budget']['measure'], state['budget']['per_family'])} per family; about {state['budget']['planned_seconds']:.0f} s of "
              f"training in all, in {state['precision']}", flush=True)

        for number, unit in enumerate(UNITS, start=1):
            record = state["units"][unit.name]
            if stop.requested or record["status"] in ("done", "deadline"):
                continue
            planned = Plan(**record["plan"])
            unit_job = job(unit, starting_model(unit, configs, tokenizers, out, options.seed), state["precision"])
            print(f"[{number}/{len(UNITS)}] {unit.label}: {unit_job.model.num_parameters():,} parameters, "
                  f"{planned.max_steps} steps for {format_quota(planned.measure, planned.quota)} "
                  f"(about {planned.planned_seconds:.0f} s)", flush=True)
            was_started = record["status"] in ("training", "interrupted")
            previous_peak = record.get("peak_memory_bytes") or 0
            record["status"] = "training"
            save_state(out, state)
            step_seconds = record["probes"][state["precision"]]["step_seconds"]
            result = train_unit(unit_job, planned, step_seconds, stop, resume=was_started)
            result["peak_memory_bytes"] = max(previous_peak, result["peak_memory_bytes"] or 0) or None
            record.update(result)
            save_state(out, state)
            print(f"[{number}/{len(UNITS)}] {unit.label}: {record['status']} after {record['steps']} steps, "
                  f"{format_flops(record['flops'])}, {record['tokens']:,} tokens, {record['seconds']:.0f} s",
                  flush=True)
        return _finish(out, options, state, corpora, tokenizers, dist, stop, started)


def _finish(out: Path, options: DemoOptions, state: dict, corpora: dict, tokenizers: dict, dist: Distributed,
            stop, started: float) -> dict:
    print("evaluating and writing the report", flush=True)
    report = build_report(out, options, state, corpora, tokenizers, dist, interrupted=stop.requested)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_reports(out, report)
    return report
