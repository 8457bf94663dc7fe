"""What the demo found, gathered for the report: each trained unit evaluated against its baseline, the
pictures, and examples of what each family learned."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..convert import from_pretrained
from ..train.distributed import Distributed
from . import baselines, evaluation, samples
from .attention import draw_attention, family_maps, write_pages
from .charts import draw_loss_curves
from .families import UNITS
from .memory import describe
from .report import summary_rows
from .slices import TOKENIZER_CHARS, capped_texts
from .training import Job

if TYPE_CHECKING:
    from .run import DemoOptions

SHOWN = {"gpt": 4, "bert": 8, "t5": 8}  # examples shown per family


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
        verdict=evaluation.verdict(figure), curve=points,
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
