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
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..convert import from_pretrained
from ..data import load_corpus, train_tokenizer
from ..models import build_model
from ..train.distributed import Distributed
from . import baselines, evaluation, samples
from .attention import draw_attention, family_maps, write_pages
from .budget import first_ctrl_c_requests_stop
from .families import FAMILY_ARCH, UNITS, matched_configs
from .memory import describe
from .report import draw_loss_curves, summary_rows, write_reports
from .training import Job, measure_step_seconds, plan_steps, train_unit

STATE_FILE = "demo.json"
TRAIN_SHARE = 0.7  # of --minutes spent training, split equally between the families; the rest: tokenizers,
#                    step-time measurements, evaluation, samples and the report
TOKENIZER_CHARS = {"text": 1_000_000, "pairs": 300_000}  # characters each tokenizer is trained on, at most
SHOWN = {"gpt": 4, "bert": 8, "t5": 8}  # examples shown per family


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


def capped_texts(corpus, max_chars: int):
    """Training texts of ``corpus`` (sources and targets for pairs) until ``max_chars`` characters."""
    total = 0
    for text in corpus.texts("train"):
        yield text
        total += len(text)
        if total >= max_chars:
            return


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
            result = train_unit(job, record["max_steps"], stop, resume=was_started)
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


def build_report(out: Path, options: DemoOptions, state: dict, corpora: dict, tokenizers: dict,
                 dist: Distributed, interrupted: bool) -> dict:
    """Evaluate every unit that has weights, collect samples and pictures: the report's data."""
    models, units = {}, []
    for unit in UNITS:
        record = state["units"].get(unit.name, {})
        if not (out / unit.name / "model.safetensors").is_file() or record.get("steps") is None:
            units.append(dict(name=unit.name, label=unit.label, objective=unit.objective,
                              status=record.get("status", "pending")))
            continue
        model = from_pretrained(out / unit.name).to(dist.device).eval()
        models[unit.name] = model
        units.append(evaluate_unit(out, unit, record, model, corpora[unit.data], tokenizers[unit.family], options,
                                   dist))
    pictures = draw_pictures(out, units, models)
    shown = show_examples(models, units, corpora, options)
    return dict(
        interrupted=interrupted, out=str(out), options=state["options"], device=str(dist.device),
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        memory_kind=describe(dist.device), family_seconds=options.family_seconds, units=units,
        summary=summary_rows(units), pictures=pictures, samples=shown,
    )


def evaluate_unit(out: Path, unit, record: dict, model, corpus, tokenizer, options: DemoOptions,
                  dist: Distributed) -> dict:
    folder = out / unit.name
    job = Job(unit, folder, model, corpus, options.seq_len, options.batch_size, options.eval_batches,
              options.seed, 0.0, dist)

    def measure() -> dict:
        counts = (baselines.unigram_counts(tokenizer, capped_texts(corpus, TOKENIZER_CHARS[unit.data]))
                  if unit.data == "text" else None)
        return dict(validation=job.evaluate(model),
                    baseline=evaluation.baseline_figures(unit, corpus, tokenizer, counts, options.seq_len,
                                                         options.batch_size, options.eval_batches))

    measured = evaluation.cached(folder, record["steps"], measure)
    points = evaluation.curve(folder)
    first, last = evaluation.loss_fall(points)
    figure = evaluation.quality(unit, measured["validation"], measured["baseline"])
    return dict(
        name=unit.name, label=unit.label, objective=unit.objective, status=record["status"], steps=record["steps"],
        max_steps=record["max_steps"], tokens=record["tokens"], seconds=record["seconds"],
        **evaluation.common_ground(model.config, record, options.seq_len, options.batch_size),
        first_loss=first, last_loss=last, validation=measured["validation"], baseline=measured["baseline"],
        quality=figure,
        beats_baseline=evaluation.beats(figure), curve=points,
    )


def draw_pictures(out: Path, units: list[dict], models: dict) -> dict:
    """The loss curves, the masks, the attention picture and the interactive attention pages, in ``out``."""
    from ..viz.masks import draw_masks, family_masks

    pictures = {"loss": "loss_curves.png", "masks": "masks.png", "pages": {}}
    draw_loss_curves([u for u in units if u.get("curve")], out / pictures["loss"])
    draw_masks(family_masks(), str(out / pictures["masks"]))
    maps = family_maps({name: models[name] for name in ("bert", "gpt", "t5") if name in models})
    if maps:
        pictures["attention"] = "attention.png"
        draw_attention(maps, out / pictures["attention"])
        pictures["pages"] = write_pages(maps, out)
    return pictures


def show_examples(models: dict, units: list[dict], corpora: dict, options: DemoOptions) -> dict:
    shown = {}
    if "gpt" in models:
        shown["gpt"] = samples.gpt_samples(models["gpt"], seed=options.seed)[:SHOWN["gpt"]]
    if "bert" in models:
        bert = models["bert"]
        guess = next(u for u in units if u["name"] == "bert")["baseline"]["most_frequent_token"]
        blanks = samples.blank_sentences(corpora["text"].validation, bert.tokenizer, SHOWN["bert"], options.seed,
                                         bert.config.max_seq_len)
        shown["bert"] = samples.fill_mask(bert, blanks, guess)
    if "t5" in models:
        pairs = [p for p in corpora["pairs"].validation if len(p[0]) <= 600][:SHOWN["t5"]]
        shown["t5"] = samples.docstrings(models["t5"], pairs, options.seq_len)
    return shown
