"""How fast ``trilogy.objectives.Batches`` produces batches, to check that data is not what limits training.

Prints, for one objective on one corpus: the first batch (tokenising enough to fill the shuffle buffer), the
steady cost per batch in the first epoch (tokenising as it goes) and in the second (tokens replayed from
memory), and the time a resumed iterator takes to reach its next batch; for objectives that pad their rows
(seq2seq, classification), the share of real tokens in the batches against the same rows served in the
shuffled order (``group_by_length=False``).

    .venv/bin/python benchmarks/data.py --data shakespeare --objective clm --seq-len 256 --batch-size 8
    .venv/bin/python benchmarks/data.py --data stdlib-docstrings --objective seq2seq --seq-len 96 --batch-size 32
"""

from __future__ import annotations

import argparse
import statistics
import time

from trilogy.data import load_corpus, train_tokenizer
from trilogy.objectives import OBJECTIVES, Batches

FAMILY = {"clm": "decoder", "mlm": "encoder", "span": "encoder-decoder", "seq2seq": "encoder-decoder",
          "classification": "encoder"}


def per_batch_ms(batches: Batches, count: int) -> tuple[float, float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        next(batches)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), 1000 * sum(times) / count


def real_share(batches: Batches, count: int) -> float:
    """Real tokens over all positions (sources and targets) in the next ``count`` batches."""
    real = total = 0
    for _ in range(count):
        batch = next(batches)
        for key in ("attention_mask", "decoder_attention_mask"):
            if key in batch:
                real, total = real + int(batch[key].sum()), total + batch[key].numel()
    return real / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="shakespeare")
    parser.add_argument("--objective", default="clm", choices=sorted(FAMILY))
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()

    corpus = load_corpus(args.data)
    start = time.perf_counter()
    tokenizer = train_tokenizer(FAMILY[args.objective], corpus.texts("train"), args.vocab_size)
    print(f"tokenizer trained in {time.perf_counter() - start:.1f} s")

    def make(group_by_length: bool = True) -> Batches:
        return Batches(args.objective, corpus.train, tokenizer, args.seq_len, args.batch_size, seed=0,
                       group_by_length=group_by_length)

    batches = make()
    start = time.perf_counter()
    next(batches)
    print(f"first batch: {time.perf_counter() - start:.2f} s")
    median, mean = per_batch_ms(batches, args.batches)
    print(f"epoch 0: median {median:.2f} ms/batch, mean {mean:.2f} ms/batch")
    while batches.state_dict()["epoch"] == 0:
        next(batches)
    median, mean = per_batch_ms(batches, args.batches)
    print(f"epoch 1: median {median:.2f} ms/batch, mean {mean:.2f} ms/batch "
          f"({args.batch_size * args.seq_len / mean * 1000:.0f} tokens/s)")
    state = batches.state_dict()
    resumed = make()
    start = time.perf_counter()
    resumed.load_state_dict(state)
    next(resumed)
    print(f"resume at epoch {state['epoch']}, item {state['offset']}: next batch after "
          f"{time.perf_counter() - start:.2f} s")
    if OBJECTIVES[args.objective].pads:
        grouped, plain = real_share(make(), args.batches), real_share(make(group_by_length=False), args.batches)
        print(f"real tokens: {grouped:.1%} of the batches' positions batched by length, {plain:.1%} in the "
              f"shuffled order ({args.batches} batches each)")


if __name__ == "__main__":
    main()
