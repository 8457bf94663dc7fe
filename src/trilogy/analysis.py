"""The notebook's four analysis cells, with every number computed by the library or measured on this machine.

- ``visualize_attention_patterns``: the masks the models really use (``trilogy masks``).
- ``compare_architectures``: the families side by side, the notebook's table corrected, plus parameters, FLOPs
  and memory of an equal-size configuration of each, and optionally measured throughput (``trilogy compare``).
- ``practical_implementation_example``: real parameter counts of BERT-base, GPT-2 and T5-base and the memory
  of their attention weights, which grows with heads and layers (the notebook counted one head of one layer).
- ``architecture_decision_guide``: the notebook's twelve tasks run through ``recommend`` (``trilogy recommend``).

Each returns its results; ``show=True`` also prints them as the notebook did.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .config import ModelConfig
from .errors import TrilogyError
from .evidence import matrix_lines, read_report
from .models import build_model
from .recommend import FAMILIES, NOTEBOOK_TASKS, recommend
from .sizing import attention_map_elements, count_parameters, size_report


def _millions(preset: str) -> str:
    return f"{count_parameters(ModelConfig.from_preset(preset)) / 1e6:.0f}M"


def family_table() -> dict[str, dict]:
    """The notebook's comparison table, corrected: parameter counts computed from the presets, T5-base's
    12 + 12 layers, and limitations stated as what the architecture does rather than what it cannot."""
    return {
        "encoder-only": {
            "name": FAMILIES["encoder-only"],
            "attention_type": "bidirectional self-attention (padding masked)",
            "use_cases": ["classification", "named-entity recognition", "extractive question answering",
                          "embeddings and retrieval"],
            "examples": [f"BERT-base ({_millions('bert-base-uncased')})",
                         f"BERT-large ({_millions('bert-large-uncased')})", "RoBERTa", "DeBERTa"],
            "strengths": ["every token sees the whole input", "one forward pass per input: cheap to serve"],
            "limitations": ["no causal LM head: it fills masks and labels inputs rather than writing text",
                            "input length capped by its learned positions (512 for BERT)"],
        },
        "decoder-only": {
            "name": FAMILIES["decoder-only"],
            "attention_type": "causal self-attention (each token sees itself and earlier tokens)",
            "use_cases": ["text generation", "language modelling", "code generation", "chat / dialogue",
                          "few-shot prompting"],
            "examples": [f"GPT-2 ({_millions('gpt2')}, not 117M)", f"GPT-2 medium ({_millions('gpt2-medium')})",
                         "GPT-3/4", "Llama"],
            "strengths": ["one objective (next token) on any text", "scales well; one stack to train and serve"],
            "limitations": ["a token never sees what follows it, even within the input",
                            "writes one token per forward pass (the KV cache keeps each pass cheap)"],
        },
        "encoder-decoder": {
            "name": FAMILIES["encoder-decoder"],
            "attention_type": "bidirectional encoder; causal decoder with cross-attention to the encoder",
            "use_cases": ["translation", "summarization", "paraphrasing", "text-to-text tasks"],
            "examples": [f"T5-small ({_millions('t5-small')}, 6 + 6 layers)",
                         f"T5-base ({_millions('t5-base')}, 12 encoder + 12 decoder layers)", "BART", "mT5"],
            "strengths": ["reads the whole input bidirectionally, writes an output of its own length",
                          "the encoder runs once per input, however long the output"],
            "limitations": ["two stacks and cross-attention: more parameters per layer pair",
                            "generation also keeps a cross-attention KV cache (see the memory columns)"],
        },
    }


def equal_size_configs(d_model: int = 256, n_heads: int = 4, d_ff: int = 1024, n_layers: int = 4,
                       vocab_size: int = 8192, max_seq_len: int = 512) -> dict[str, ModelConfig]:
    """One configuration per family from the same blocks (pre-norm, GELU, learned positions, tied LM head):
    ``n_layers`` layers for the encoder and the decoder, ``n_layers / 2`` + ``n_layers / 2`` for the
    encoder-decoder, so all three have about the same parameters."""
    if n_layers < 2 or n_layers % 2:
        raise TrilogyError(f"--layers must be an even number >= 2 (the encoder-decoder gets half per side), "
                           f"got {n_layers}")
    common = dict(vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, d_ff=d_ff, max_seq_len=max_seq_len,
                  position="learned", norm_position="pre", activation="gelu", dropout=0.0, pad_token_id=0,
                  eos_token_id=None, bos_token_id=1, decoder_start_token_id=0)
    return {
        "encoder-only": ModelConfig(arch="encoder", n_layers=n_layers, head="mlm", **common),
        "decoder-only": ModelConfig(arch="decoder", n_layers=n_layers, head="lm", **common),
        "encoder-decoder": ModelConfig(arch="encoder-decoder", n_layers=n_layers // 2, head="lm", **common),
    }


def _lengths(config: ModelConfig, seq: int) -> tuple[int, int | None]:
    """(target, source) lengths: the encoder-decoder splits the ``seq`` tokens into source and target halves."""
    return (seq - seq // 2, seq // 2) if config.structure.has_source else (seq, None)


def _depth(config: ModelConfig, separator: str = "+") -> str:
    """The layers of each stack: "12", or "6+6" for an encoder-decoder."""
    return separator.join(str(stack.n_layers) for stack in config.structure.stacks)


def computed_columns(configs: dict[str, ModelConfig], batch: int, seq: int) -> dict[str, dict]:
    """Parameters, FLOPs per token and memory of each family for ``batch`` sequences of ``seq`` tokens."""
    columns = {}
    for family, config in configs.items():
        target, source = _lengths(config, seq)
        train = size_report(config, batch, target, source, training=True)
        infer = size_report(config, batch, target, source, training=False)
        columns[family] = {
            "layers": _depth(config, " + "),
            "params": train["params"],
            "flops_per_token": train["flops_per_token"],
            "training_memory_bytes": train["memory_bytes"]["total"],
            "inference_memory_bytes": infer["memory_bytes"]["total"],
            "kv_cache_bytes": infer["memory_bytes"]["kv_cache"],
            "attention_maps_bytes": infer["memory_bytes"]["attention_maps"],
        }
    return columns


def _batch(family: str, config: ModelConfig, batch: int, seq: int, generator: torch.Generator):
    target, source = _lengths(config, seq)
    ids = torch.randint(2, config.vocab_size, (batch, target), generator=generator)
    src = torch.randint(2, config.vocab_size, (batch, source), generator=generator) if source else None
    return ids, src


def measure_throughput(configs: dict[str, ModelConfig], batch: int = 8, seq: int = 128, steps: int = 3,
                       new_tokens: int = 32, progress: bool = True) -> dict[str, dict]:
    """Training tokens/s (forward, backward, AdamW step; median of ``steps`` after a warm-up) and greedy
    generation tokens/s with the KV cache (batch 1, ``new_tokens`` new tokens after a 16-token prompt or
    source), measured on this machine with the contenders interleaved step by step."""
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    models = {family: build_model(config) for family, config in configs.items()}
    optimizers = {family: torch.optim.AdamW(model.parameters(), lr=1e-4) for family, model in models.items()}
    batches = {family: _batch(family, config, batch, seq, generator) for family, config in configs.items()}
    train_times: dict[str, list[float]] = {family: [] for family in models}
    gen_times: dict[str, list[float]] = {family: [] for family in models if configs[family].structure.generates}
    prompt = torch.randint(2, 1000, (1, 16), generator=generator)

    def train_step(family: str) -> None:
        model, (ids, src) = models[family], batches[family]
        model.train()
        out = model.run(src, ids) if src is not None else model.run(ids)
        F.cross_entropy(out.logits.flatten(0, 1), ids.flatten()).backward()
        optimizers[family].step()
        optimizers[family].zero_grad(set_to_none=True)

    for round_ in tqdm(range(steps + 1), desc="measuring", unit="round", disable=not progress):
        for family in models:
            start = time.perf_counter()
            train_step(family)
            if round_:  # round 0 warms up
                train_times[family].append(time.perf_counter() - start)
            if family in gen_times:
                models[family].eval()
                start = time.perf_counter()
                models[family].generate(prompt, max_new_tokens=new_tokens)  # no eos: always new_tokens
                if round_:
                    gen_times[family].append(time.perf_counter() - start)
    tokens = {family: batch * seq for family in models}
    return {family: {"training_tokens_per_s": tokens[family] / statistics.median(train_times[family]),
                     "generation_tokens_per_s": (new_tokens / statistics.median(gen_times[family])
                                                 if family in gen_times else None)}
            for family in models}


def compare_architectures(measure: bool = False, batch: int = 8, seq: int = 128, show: bool = True,
                          evidence: str | Path | None = None, **config_sizes) -> dict:
    """The three families side by side: the (corrected) descriptive table, computed sizes of an equal-size
    configuration of each, with ``measure=True`` training and generation speed on this machine, and with
    ``evidence`` (a ``trilogy demo`` report.json) the task x architecture matrix it measured."""
    configs = equal_size_configs(**config_sizes, max_seq_len=max(512, seq))
    result = {"table": family_table(), "workload": {"batch": batch, "seq": seq},
              "config": {k: v for k, v in configs["decoder-only"].to_dict().items()
                         if k in ("d_model", "n_heads", "d_ff", "vocab_size")},
              "computed": computed_columns(configs, batch, seq)}
    if measure:
        result["measured"] = measure_throughput(configs, batch, seq, progress=show)
    if evidence is not None:
        result["evidence"] = read_report(evidence).to_dict()
    if show:
        print(format_comparison(result))
    return result


def _mib(count: float) -> str:
    return f"{count / 2**20:,.1f} MiB"


def format_comparison(result: dict) -> str:
    lines = ["Transformer architecture comparison", "=" * 35]
    for row in result["table"].values():
        lines += [f"\n{row['name']}:", f"  Attention:   {row['attention_type']}",
                  f"  Use cases:   {', '.join(row['use_cases'])}", f"  Examples:    {', '.join(row['examples'])}",
                  f"  Strengths:   {'; '.join(row['strengths'])}",
                  f"  Limitations: {'; '.join(row['limitations'])}"]
    cfg, work = result["config"], result["workload"]
    lines += ["", f"Equal-size configurations (d_model {cfg['d_model']}, {cfg['n_heads']} heads, d_ff {cfg['d_ff']}, "
                  f"vocab {cfg['vocab_size']}), batch {work['batch']} x {work['seq']} tokens "
                  "(encoder-decoder: half source, half target), fp32:"]
    header = f"  {'':28s}" + "".join(f"{FAMILIES[f].split(' (')[0]:>18s}" for f in result["computed"])
    lines.append(header)
    rows = [
        ("layers", lambda c: c["layers"]),
        ("parameters", lambda c: f"{c['params'] / 1e6:.2f}M"),
        ("forward FLOPs / token", lambda c: f"{c['flops_per_token']['forward'] / 1e6:.1f}M"),
        ("training FLOPs / token", lambda c: f"{c['flops_per_token']['training'] / 1e6:.1f}M"),
        ("training memory (AdamW)", lambda c: _mib(c["training_memory_bytes"])),
        ("inference memory", lambda c: _mib(c["inference_memory_bytes"])),
        ("KV cache for the batch", lambda c: _mib(c["kv_cache_bytes"]) if c["kv_cache_bytes"] else "none"),
        ("attention weights, all layers", lambda c: _mib(c["attention_maps_bytes"])),
    ]
    for label, cell in rows:
        lines.append(f"  {label:28s}" + "".join(f"{cell(c):>18s}" for c in result["computed"].values()))
    if "measured" in result:
        lines.append("  measured on this machine:")
        for label, key in (("training tokens/s", "training_tokens_per_s"),
                           ("generation tokens/s (greedy)", "generation_tokens_per_s")):
            lines.append(f"  {label:28s}" + "".join(
                f"{(f'{m[key]:,.0f}' if m[key] is not None else 'n/a (no LM)'):>18s}"
                for m in result["measured"].values()))
    if "evidence" in result:
        lines += ["", *matrix_lines(result["evidence"])]
    return "\n".join(lines)


def visualize_attention_patterns(path: str | None = None, seq: int = 4, src: int | None = 4, pad: int = 1):
    """The masks each family's attention really receives (see ``trilogy.viz.mask_panels``); drawn to ``path``
    (a PNG) when given. Returns the panels."""
    from .viz.mask_panels import draw_masks, family_masks

    panels = family_masks(seq, src, pad)
    if path is not None:
        draw_masks(panels, path)
    return panels


def practical_implementation_example(batch: int = 8, seq: int = 512, show: bool = True) -> dict:
    """The notebook's practical considerations, computed: parameter counts of the real presets, and the
    memory of the attention weights at ``batch`` x ``seq`` in fp32, for every head of every layer (the
    notebook's figure, batch x seq x seq x 4 bytes, counted one head of one layer)."""
    models = {"BERT-base": "bert-base-uncased", "GPT-2": "gpt2", "T5-base": "t5-base"}
    notebook_attention = batch * seq * seq * 4
    rows = {}
    for name, preset in models.items():
        config = ModelConfig.from_preset(preset)
        source = seq if config.structure.has_source else None
        rows[name] = {
            "preset": preset,
            "layers": _depth(config),
            "d_model": config.d_model, "heads": config.n_heads, "params": count_parameters(config),
            "attention_bytes": 4 * attention_map_elements(config, batch, seq, source),
        }
    result: dict[str, Any] = {"batch": batch, "seq": seq, "models": rows, "notebook_attention_bytes": notebook_attention,
              "objectives": {"BERT": "masked language modelling (+ next-sentence prediction in the original)",
                             "GPT": "causal language modelling (next token)",
                             "T5": "span corruption (text-to-text)"}}
    if show:
        print("Practical implementation considerations\n" + "=" * 39)
        print(f"{'Model':10s} | {'Layers':>6s} | {'d_model':>7s} | {'Heads':>5s} | {'Parameters':>12s}")
        print("-" * 52)
        for name, row in rows.items():
            print(f"{name:10s} | {row['layers']:>6s} | {row['d_model']:7d} | {row['heads']:5d} | "
                  f"{row['params']:>12,d}")
        print(f"\nAttention weights at batch {batch} x {seq} tokens, fp32, all heads and layers "
              f"(explicit attention; fused SDPA never stores them):")
        for name, row in rows.items():
            print(f"  {name:10s} {_mib(row['attention_bytes']):>14s}  "
                  f"({row['attention_bytes'] / notebook_attention:.0f}x the notebook's "
                  f"{_mib(notebook_attention)} for one head of one layer)")
        print("  They grow with seq^2, heads and layers; T5 adds decoder self- and cross-attention.")
        print("\nTraining objectives:")
        for family, objective in result["objectives"].items():
            print(f"  {family}: {objective}")
    return result


def architecture_decision_guide(tasks: list[str] | None = None, show: bool = True) -> dict:
    """The decision guide: each task (default the notebook's twelve) run through ``recommend``."""
    tasks = list(NOTEBOOK_TASKS) if tasks is None else tasks
    answers = {task: recommend(task).to_dict() for task in tasks}
    if show:
        print("Architecture decision guide\n" + "=" * 27)
        for task, answer in answers.items():
            choice = answer["family"] or "nothing to go on"
            runner = f"  (runner-up: {FAMILIES[answer['runner_up']]})" if answer["runner_up"] else ""
            print(f"{task:25s}: {choice}{runner}")
        print("\nKey decision factors:\n1. Generation vs understanding\n2. Bidirectional vs causal context\n"
              "3. Input-output relationship\n4. Computational efficiency (trilogy size, trilogy compare)\n"
              "5. Available training data")
    return answers
