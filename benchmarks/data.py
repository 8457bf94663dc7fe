"""How fast ``trilogy.objectives.Batches`` produces batches, to check that data is not what limits training.

Prints, for one objective on one corpus: the first batch (tokenising enough to fill the shuffle buffer), the
steady cost per batch in the first epoch (tokenising as it goes) and in the second (tokens replayed from
memory), and the time a resumed iterator takes to reach its next batch.

    .venv/bin/python benchmarks/data.py --data shakespeare --objective clm --seq-len 256 --batch-size 8
"""

from __future__ import annotations

import argparse
import statistics
import time

from trilogy.data import load_corpus, train_tokenizer
from trilogy.objectives import Batches

FAMILY = {"clm": "decoder", "mlm": "encoder", "span": "encoder-decoder", "seq2seq": "encoder-decoder",
          "classification": "encoder"}


def per_batch_ms(batches: Batches, count: int) -> tuple[float, float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        next(batches)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), 1000 * sum(times) / count


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

    def make() -> Batches:
        return Batches(args.objective, corpus.train, tokenizer, args.seq_len, args.batch_size, seed=0)

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


if __name__ == "__main__":
    main()
