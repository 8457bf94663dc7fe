"""Training-step throughput (forward + backward + fused AdamW) of trilogy against Hugging Face transformers.

GPT-2 (causal LM), BERT (masked LM) and T5 (span-corruption-shaped seq2seq) at d_model 256, 4 layers, 4 heads,
d_ff 1024, vocabulary 8192, sequence 256 (T5: 128 source + 128 target), batch 8. Each transformers model is
randomly initialised, saved, and loaded by ``trilogy.from_pretrained``, so both sides train identical weights
(the first step's losses are printed to show it). The contenders take turns step by step; every figure is a
median over the rounds. Also: the fraction of this machine's measured fp32 matmul peak each side reaches, and
bf16 autocast against fp32.

    python benchmarks/train.py                # all three families, fp32 and bf16
    python benchmarks/train.py --rounds 15 --families gpt2 --no-bf16 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import transformers
from torch import nn

import trilogy

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

D_MODEL, N_LAYERS, N_HEADS, D_FF, VOCAB, SEQ, BATCH = 256, 4, 4, 1024, 8192, 256, 8


def hf_model(family: str) -> nn.Module:
    common = dict(vocab_size=VOCAB)
    if family == "gpt2":
        config = transformers.GPT2Config(n_embd=D_MODEL, n_layer=N_LAYERS, n_head=N_HEADS, n_inner=D_FF,
                                         n_positions=SEQ, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                         **common)
        return transformers.GPT2LMHeadModel(config)
    if family == "bert":
        config = transformers.BertConfig(hidden_size=D_MODEL, num_hidden_layers=N_LAYERS,
                                         num_attention_heads=N_HEADS, intermediate_size=D_FF,
                                         max_position_embeddings=SEQ, hidden_dropout_prob=0.0,
                                         attention_probs_dropout_prob=0.0, **common)
        return transformers.BertForMaskedLM(config)
    config = transformers.T5Config(d_model=D_MODEL, d_kv=D_MODEL // N_HEADS, num_heads=N_HEADS,
                                   num_layers=N_LAYERS, d_ff=D_FF, dropout_rate=0.0, **common)
    return transformers.T5ForConditionalGeneration(config)


def make_batch(family: str, generator: torch.Generator) -> dict:
    """Random ids shaped like the family's training batch; labels -100 where no loss is taken."""
    if family == "t5":
        src = torch.randint(2, VOCAB, (BATCH, SEQ // 2), generator=generator)
        tgt = torch.randint(2, VOCAB, (BATCH, SEQ // 2), generator=generator)
        decoder_input = torch.cat([torch.zeros(BATCH, 1, dtype=torch.long), tgt[:, :-1]], dim=1)
        return dict(input_ids=src, decoder_input_ids=decoder_input, labels=tgt)
    ids = torch.randint(2, VOCAB, (BATCH, SEQ), generator=generator)
    if family == "gpt2":
        return dict(input_ids=ids, labels=ids)
    masked = torch.rand(BATCH, SEQ, generator=generator) < 0.15
    return dict(input_ids=ids.masked_fill(masked, 1), labels=ids.masked_fill(~masked, -100))


def hf_loss(model: nn.Module, family: str, batch: dict) -> torch.Tensor:
    return model(**batch).loss


def our_loss(model: trilogy.TransformerModel, family: str, batch: dict) -> torch.Tensor:
    """The library's training path: labels go into ``run``, which fuses the head with the cross-entropy."""
    if family == "t5":
        return model.run(batch["input_ids"], batch["decoder_input_ids"], labels=batch["labels"]).loss
    labels = batch["labels"]
    if family == "gpt2":  # run() takes labels already shifted: labels[:, t] is what position t predicts
        labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], dim=1)
    return model.run(batch["input_ids"], labels=labels).loss


class Contender:
    def __init__(self, name: str, model: nn.Module, loss_fn, family: str, bf16: bool):
        self.name, self.model, self.loss_fn, self.family, self.bf16 = name, model.train(), loss_fn, family, bf16
        # fused, as both trainers step it (trilogy's build_optimizer; transformers' Trainer from torch 2.8)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        self.times: list[float] = []

    def step(self, batch: dict) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss_fn(self.model, self.family, batch)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.times.append(time.perf_counter() - start)
        return loss.item()


def step_flops(model: trilogy.TransformerModel, family: str, batch: dict) -> float:
    """Matmul FLOPs of one training step: every Linear (measured with hooks on one forward) plus attention's
    two products, times 3 for forward + backward."""
    total = 0.0

    def count(module, inputs, output):
        nonlocal total
        total += 2.0 * inputs[0].numel() * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():  # without labels, so that the LM head runs as a module the hooks see
        if family == "t5":
            model.run(batch["input_ids"], batch["decoder_input_ids"])
        else:
            model.run(batch["input_ids"])
    for hook in hooks:
        hook.remove()
    d_attn = model.config.n_heads * model.config.d_head
    if family == "t5":
        src = tgt = SEQ // 2
        attention = N_LAYERS * (src * src + tgt * tgt + tgt * src)
    else:
        attention = N_LAYERS * SEQ * SEQ
    total += 2 * 2 * BATCH * attention * d_attn  # q @ k^T and weights @ v, full square
    return 3.0 * total


def matmul_peak(n: int = 1024, repeats: int = 20) -> float:
    """Median fp32 GFLOP/s of an n x n matmul on this machine now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def bench_family(family: str, rounds: int, bf16: bool) -> dict:
    torch.manual_seed(0)
    reference = hf_model(family)
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = trilogy.from_pretrained(folder)
    contenders = [Contender("transformers fp32", reference, hf_loss, family, False),
                  Contender("trilogy fp32", ours, our_loss, family, False)]
    if bf16:
        hf_copy, our_copy = hf_model(family), trilogy.build(ours.config)
        hf_copy.load_state_dict(reference.state_dict())
        our_copy.load_state_dict(ours.state_dict())
        contenders += [Contender("transformers bf16", hf_copy, hf_loss, family, True),
                       Contender("trilogy bf16", our_copy, our_loss, family, True)]
    generator = torch.Generator().manual_seed(0)
    batches = [make_batch(family, generator) for _ in range(rounds + 2)]
    first_losses = {c.name: c.step(batches[0]) for c in contenders}  # warm-up, and the same-weights check
    for c in contenders:
        c.step(batches[1])
        c.times.clear()
    for i, batch in enumerate(batches[2:]):
        order = contenders if i % 2 == 0 else contenders[::-1]  # alternate who goes first
        for c in order:
            c.step(batch)
    flops = step_flops(ours, family, batches[0])
    tokens = sum(v.numel() for k, v in batches[0].items() if k.endswith("input_ids"))
    medians = {c.name: statistics.median(c.times) for c in contenders}
    return dict(family=family, tokens_per_step=tokens, gflop_per_step=flops / 1e9, first_step_loss=first_losses,
                median_s=medians, tokens_per_s={k: tokens / v for k, v in medians.items()},
                gflops={k: flops / v / 1e9 for k, v in medians.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9, help="timed steps per contender (default 9)")
    parser.add_argument("--families", default="gpt2,bert,t5", help="comma-separated subset of gpt2,bert,t5")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 only")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    families = args.families.split(",")
    unknown = sorted(set(families) - {"gpt2", "bert", "t5"})
    if unknown:
        parser.error(f"unknown families: {', '.join(unknown)}")
    peak_before = matmul_peak()
    results = [bench_family(family, args.rounds, not args.no_bf16) for family in families]
    peak = max(peak_before, matmul_peak())
    report = dict(threads=torch.get_num_threads(), torch=torch.__version__, transformers=transformers.__version__,
                  matmul_peak_gflops=peak, rounds=args.rounds, results=results)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {report['threads']} threads; "
          f"fp32 matmul peak {peak:.1f} GFLOP/s (1024^3, best of two measurements); medians of {args.rounds} "
          "interleaved steps")
    for r in results:
        print(f"\n{r['family']}: {r['tokens_per_step']} tokens/step, {r['gflop_per_step']:.1f} GFLOP/step; "
              "first-step loss " + ", ".join(f"{k} {v:.5f}" for k, v in r["first_step_loss"].items()))
        print(f"  {'contender':18s} {'step s':>8s} {'tokens/s':>9s} {'% peak':>7s}")
        for name, seconds in r["median_s"].items():
            print(f"  {name:18s} {seconds:8.3f} {r['tokens_per_s'][name]:9.0f} "
                  f"{100 * r['gflops'][name] / peak:6.1f}%")
        tps = r["tokens_per_s"]
        line = f"  trilogy / transformers, fp32: {tps['trilogy fp32'] / tps['transformers fp32']:.2f}x"
        if "trilogy bf16" in tps:
            line += (f"; bf16: {tps['trilogy bf16'] / tps['transformers bf16']:.2f}x"
                     f"; trilogy bf16 / fp32: {tps['trilogy bf16'] / tps['trilogy fp32']:.2f}x")
        print(line)
    if "bert" in families:
        print("\n% peak divides the FLOPs of a dense step (every position through the LM head) by the step time; "
              "trilogy's masked-LM head\nprojects only the masked positions, so its BERT figure can pass 100%.")


if __name__ == "__main__":
    main()
