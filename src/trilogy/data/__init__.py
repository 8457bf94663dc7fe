"""Data for training: corpora streamed from files or built in (``load_corpus``), tokenizers trained on them
(``train_tokenizer``, ``special_tokens``), and the streams that pack them (``stream.py``).
The objectives that turn these into batches live in ``trilogy.objectives``.

Typical use::

    corpus = load_corpus("shakespeare")                  # or a path, or "stdlib-docstrings"
    tokenizer = train_tokenizer("decoder", corpus.texts("train"), vocab_size=4096)
    tokenizer.save("out/tokenizer.json")
    batches = Batches("clm", corpus.train, tokenizer, seq_len=256, batch_size=8, seed=0)
"""

from .cache import cache_dir
from .corpus import Corpus, Split, held_out, load_corpus
from .tokenizer import special_ids, special_tokens, train_tokenizer

__all__ = ["Corpus", "Split", "cache_dir", "held_out", "load_corpus", "special_ids", "special_tokens",
           "train_tokenizer"]
