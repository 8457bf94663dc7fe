"""What the demo found, gathered for the report: each trained unit evaluated against its baseline, what each
family spent, the question all of them answer (fill the blank), the pictures, and examples of what each family
learned."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..convert import from_pretrained
from ..train.distributed import Distributed
from . import evaluation, samples, unit_baselines
from .attention_figure import draw_attention, family_maps, write_pages
from .charts import draw_loss_curves
from .families import FAMILY_ARCH, UNITS
from .families import unit as unit_of
from .fill_blank import fill_blank
from .memory import describe
from .report import summary_rows
from .slices import TOKENIZER_CHARS, capped_texts
from .training import REPETITION_PENALTY, Job

if TYPE_CHECKING:
    from .state import DemoOptions, DemoState, UnitRecord

SHOWN = {"gpt": 4, "bert": 8, "t5": 8}  # examples shown per family
BLANKS = 500  # held-out lines in the fill-the-blank question


def build_report(out: Path, options: DemoOptions, state: DemoState, corpora: dict, tokenizers: dict,
                 dist: Distributed, interrupted: bool) -> dict:
    """Evaluate every unit that has weights, collect samples and pictures: the report's data."""
    models, units = {}, []
    for unit in UNITS:
        record = state.units[unit.name]
        if not (out / unit.name / "model.safetensors").is_file() or record.steps is None:
            units.append(dict(name=unit.name, family=unit.family, label=unit.label, objective=unit.objective,
                              status=record.status))
            continue
        model = from_pretrained(out / unit.name).to(dist.device).eval()
        models[unit.name] = model
        units.append(evaluate_unit(out, unit, record, model, corpora[unit.data], tokenizers[unit.family], options,
                                   dist))
    pictures = draw_pictures(out, units, models)
    shown = show_examples(models, units, corpora, options)
    common = fill_blank(models, corpora["text"], capped_texts(corpora["text"], TOKENIZER_CHARS["text"]), BLANKS,
                        options.seed)
    return dict(
        interrupted=interrupted, out=str(out), options=asdict(state.options), device=str(dist.device),
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        precision=state.precision, memory_kind=describe(dist.device), budget=budget_summary(state, units),
        units=units, summary=summary_rows(units), families=family_rows(units), pictures=pictures, samples=shown,
        common_ground={"fill_blank": common} if common else {},
    )


def budget_summary(state: DemoState, units: list[dict]) -> dict:
    """The budget as planned (``per_family`` in its measure) and as reached: FLOPs per family and how far
    apart the families ended (``flops_spread``: largest / smallest - 1)."""
    budget = asdict(state.budget) if state.budget is not None else {}
    reached = {family: sum(u["flops"] for u in units if u["family"] == family and u.get("flops") is not None)
               for family in FAMILY_ARCH}
    trained = [value for value in reached.values() if value]
    return {**budget, "flops_per_family": budget.get("per_family") if budget.get("kind") == "flops" else None,
            "flops_reached": reached,
            "flops_spread": max(trained) / min(trained) - 1 if len(trained) == len(FAMILY_ARCH) else None}


def family_rows(units: list[dict]) -> dict[str, dict]:
    """Per family (T5's two units added up): FLOPs, tokens, loss-bearing tokens, seconds, FLOP rate."""
    rows = {}
    for family in FAMILY_ARCH:
        trained = [u for u in units if u["family"] == family and u.get("steps") is not None]
        if not trained:
            continue
        totals = {key: sum(u[key] for u in trained) for key in ("flops", "tokens", "loss_tokens", "seconds")}
        totals["flops_per_s"] = totals["flops"] / totals["seconds"] if totals["seconds"] else None
        rows[family] = totals
    return rows


def evaluate_unit(out: Path, unit, record: UnitRecord, model, corpus, tokenizer, options: DemoOptions,
                  dist: Distributed) -> dict:
    folder = out / unit.name
    seq_len, batch_size = unit.seq_len(options.seq_len), unit.batch_size(options.batch_size)
    job = Job(unit, folder, model, corpus, seq_len, batch_size, options.eval_batches, options.seed, dist)

    def measure() -> dict:
        counts = (unit_baselines.unigram_counts(tokenizer, capped_texts(corpus, TOKENIZER_CHARS[unit.data]))
                  if unit.data == "text" else None)
        return dict(validation=job.evaluate(model),
                    baseline=evaluation.baseline_figures(unit, corpus, tokenizer, counts, seq_len, batch_size,
                                                         options.eval_batches))

    measured = evaluation.cached(folder, record.steps, measure)
    points = evaluation.curve(folder)
    first, last = evaluation.loss_fall(points)
    figure = evaluation.quality(unit, measured["validation"], measured["baseline"])
    return dict(
        name=unit.name, family=unit.family, label=unit.label, objective=unit.objective, status=record.status,
        steps=record.steps, max_steps=record.plan.max_steps if record.plan else None, tokens=record.tokens,
        seconds=record.seconds, **evaluation.common_ground(model.config, record),
        first_loss=first, last_loss=last, validation=measured["validation"], baseline=measured["baseline"],
        quality=figure, verdict=evaluation.verdict(figure), curve=points,
    )


def draw_pictures(out: Path, units: list[dict], models: dict) -> dict:
    """The loss curves, the masks, the attention picture and the interactive attention pages, in ``out``."""
    from ..viz.mask_panels import draw_masks, family_masks

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
        shown["t5"] = samples.docstrings(models["t5"], pairs, unit_of("t5").seq_len(options.seq_len),
                                         repetition_penalty=REPETITION_PENALTY)
    return shown
