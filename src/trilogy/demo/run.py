"""``trilogy demo`` from top to bottom: corpora, tokenizers, three equal-size models, training under one
wall-clock budget per family, evaluation against baselines, samples, attention pictures, the report.

The output folder holds ``demo.json`` (the options and how far each unit got), ``tokenizers/``, one checkpoint
folder per unit (``bert``, ``gpt``, ``t5-span``, ``t5``), the pictures, ``report.html``, ``report.md`` and
``report.json``. ``--resume`` reads ``demo.json`` and goes on from there.
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
from ..models import build_model
from ..train.distributed import Distributed
from .budget import first_ctrl_c_requests_stop
from .families import FAMILY_ARCH, UNITS, matched_configs
from .findings import build_report
from .report import write_reports
from .slices import TOKENIZER_CHARS, capped_texts
from .training import Job, measure_step_seconds, plan_steps, train_unit

STATE_FILE = "demo.json"
TRAIN_SHARE = 0.8  # of --minutes spent training, split equally between the families; the rest: tokenizers,
#                    step-time measurements, evaluation, samples and the report


@dataclass
class DemoOptions:
    """What decides what a demo computes; saved in demo.json so that ``--resume`` continues the same demo."""

    minutes: float = 10.0
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
            raise ValueError(f"--minutes must be positive, got {self.minutes}")
        for name in ("d_model", "layers", "heads", "seq_len", "batch_size", "vocab_size", "eval_batches"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.layers % 2:
            raise ValueError(f"--layers must be an even number (T5 splits them into encoder and decoder), "
                             f"got {self.layers}")
        if self.d_model % self.heads:
            raise ValueError(f"--d-model ({self.d_model}) must be divisible by --heads ({self.heads})")

    @property
    def family_seconds(self) -> float:
        """Wall-clock training budget of each family."""
        return self.minutes * 60 * TRAIN_SHARE / len(FAMILY_ARCH)


def load_state(out: Path) -> dict:
    file = out / STATE_FILE
    if not file.is_file():
        raise ValueError(f"--resume: {out} holds no {STATE_FILE}, so no demo to continue")
    return json.loads(file.read_text())


def save_state(out: Path, state: dict) -> None:
    temp = out / f".{STATE_FILE}.tmp"
    temp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(temp, out / STATE_FILE)


def prepare_tokenizers(out: Path, corpora: dict, vocab_size: int) -> dict[str, Tokenizer]:
    """family -> its tokenizer, trained on a slice of the text (T5's also on the code pairs), or loaded from
    ``tokenizers/`` when a resumed demo already trained it."""
    folder = out / "tokenizers"
    folder.mkdir(exist_ok=True)
    tokenizers = {}
    for family, arch in FAMILY_ARCH.items():
        path = folder / f"{family}.json"
        if not path.is_file():
            started = time.perf_counter()
            texts = capped_texts(corpora["text"], TOKENIZER_CHARS["text"])
            if family == "t5":
                texts = itertools.chain(texts, capped_texts(corpora["pairs"], TOKENIZER_CHARS["pairs"]))
            tokenizer = train_tokenizer(arch, texts, vocab_size)
            tokenizer.save(str(path.with_suffix(".tmp")))
            os.replace(path.with_suffix(".tmp"), path)
            print(f"  {family} tokenizer: {tokenizer.get_vocab_size():,} tokens "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)
        tokenizers[family] = Tokenizer.from_file(str(path))
    return tokenizers


def starting_model(unit, configs: dict, tokenizers: dict, out: Path, seed: int):
    """A fresh model of the unit's family (seeded), or the final weights of the unit it starts from."""
    if unit.starts_from is not None:
        return from_pretrained(out / unit.starts_from)
    torch.manual_seed(seed)
    model = build_model(configs[unit.family])
    model.tokenizer = tokenizers[unit.family]
    return model


def run_demo(options: DemoOptions, out: Path, resume: bool = False) -> dict:
    """Run (or continue) the demo in ``out`` and write its report. Returns the report's data; its
    ``interrupted`` is True when Ctrl-C stopped the training (the report is then partial)."""
    out = Path(out)
    if not resume and (out / STATE_FILE).exists():
        raise ValueError(f"{out} already holds a demo; continue it with --resume, or choose another --out")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dist = Distributed(0, 1, device)
    started = time.perf_counter()
    with first_ctrl_c_requests_stop() as stop:
        print(f"trilogy demo: {options.minutes:g} minutes; each family trains for "
              f"{options.family_seconds:.0f} s of wall-clock on {device.type}", flush=True)
        corpora = {"text": load_corpus(options.data), "pairs": load_corpus(options.pairs)}
        if corpora["text"].kind != "text" or corpora["pairs"].kind != "pairs":
            raise ValueError("--data must be text (a file, a folder, JSONL with 'text', or shakespeare) and "
                             "--pairs source/target pairs (JSONL with 'source' and 'target', or stdlib-docstrings)")
        state = load_state(out) if resume else {"options": asdict(options), "units": {}}
        out.mkdir(parents=True, exist_ok=True)
        save_state(out, state)
        print("training tokenizers", flush=True)
        tokenizers = prepare_tokenizers(out, corpora, options.vocab_size)
        configs = matched_configs(tokenizers, options.d_model, options.heads, options.layers, options.seq_len)
        for number, unit in enumerate(UNITS, start=1):
            record = state["units"].setdefault(unit.name, {"status": "pending"})
            if stop.requested or record["status"] in ("done", "deadline"):
                continue
            job = Job(unit, out / unit.name, starting_model(unit, configs, tokenizers, out, options.seed).to(device),
                      corpora[unit.data], options.seq_len, options.batch_size, options.eval_batches, options.seed,
                      options.family_seconds * unit.budget_share, dist)
            if "max_steps" not in record:
                print(f"[{number}/{len(UNITS)}] {unit.label}: measuring the step time", flush=True)
                record["step_seconds"] = measure_step_seconds(job)
                record["max_steps"] = plan_steps(record["step_seconds"], job.allowance_s)
                save_state(out, state)
            if stop.requested:  # Ctrl-C while the step time was measured
                continue
            print(f"[{number}/{len(UNITS)}] {unit.label}: {job.model.num_parameters():,} parameters, "
                  f"{record['max_steps']} steps planned for {job.allowance_s:.0f} s "
                  f"({record['step_seconds']:.2f} s/step measured)", flush=True)
            was_started = record["status"] in ("training", "interrupted")
            previous_peak = record.get("peak_memory_bytes") or 0
            record["status"] = "training"
            save_state(out, state)
            result = train_unit(job, record["max_steps"], record["step_seconds"], stop, resume=was_started)
            result["peak_memory_bytes"] = max(previous_peak, result["peak_memory_bytes"] or 0) or None
            record.update(result)
            save_state(out, state)
            print(f"[{number}/{len(UNITS)}] {unit.label}: {record['status']} after {record['steps']} steps, "
                  f"{record['tokens']:,} tokens, {record['seconds']:.0f} s", flush=True)
        print("evaluating and writing the report", flush=True)
        report = build_report(out, options, state, corpora, tokenizers, dist, interrupted=stop.requested)
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
        write_reports(out, report)
    return report
