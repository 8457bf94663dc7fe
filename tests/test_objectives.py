"""Objectives: BERT's masking statistics, T5's span corruption against its published lengths and by
reconstruction, packing boundaries, exact resume, sharding of global batches, and the losses against an
explicit per-token sum."""

from __future__ import annotations

import functools
import itertools
import json
import math

import pytest
import torch
from transformers.models.bart.modeling_bart import shift_tokens_right

from trilogy import build
from trilogy.data import special_ids, special_tokens
from trilogy.objectives import (
    IGNORE,
    LENGTH_GROUP_BATCHES,
    OBJECTIVES,
    Batches,
    compute_loss,
    corrupt_spans,
    mask_tokens,
    random_spans_noise_mask,
    span_lengths,
)

from .test_data import sample_documents, trained_tokenizers

FAMILY = {"clm": "decoder", "mlm": "encoder", "span": "encoder-decoder", "denoise": "encoder-decoder",
          "seq2seq": "encoder-decoder", "classification": "encoder"}
PRESET = {"decoder": "tiny-gpt2", "encoder": "tiny-bert", "encoder-decoder": "tiny-t5"}


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return sample_documents()


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    return trained_tokenizers()


def pairs_of(documents: list[str], objective: str) -> list[tuple[str, str]]:
    """(line, first word) pairs for seq2seq; (line, "long"/"short") for classification."""
    lines = [line.strip() for document in documents for line in document.splitlines() if len(line.split()) > 2]
    if objective == "classification":
        return [(line, "long" if len(line) > 40 else "short") for line in lines]
    return [(line, line.split()[0]) for line in lines]


def batches(objective, tokenizers, documents, seq_len=32, batch_size=4, max_pairs=None, **options) -> Batches:
    data = documents if OBJECTIVES[objective].corpus_kind == "text" else pairs_of(documents, objective)[:max_pairs]
    return Batches(objective, data, tokenizers[FAMILY[objective]], seq_len, batch_size, seed=7, **options)


def expected_stream(tokenizer, documents, separator) -> list[int]:
    """The documents tokenised one by one, each followed by ``separator``: what packing must preserve."""
    return [i for document in documents for i in [*tokenizer.encode(document, add_special_tokens=False).ids,
                                                    separator]]


# --- masked LM -------------------------------------------------------------------------------------------


def test_mask_tokens_proportions():
    generator = torch.Generator().manual_seed(0)
    vocab, specials = 1000, torch.arange(5)
    ids = torch.randint(5, vocab, (400, 256), generator=generator)
    ids[:, 0], ids[:, -1], ids[::3, 200:] = 2, 3, 0  # [CLS] ... [SEP], padding
    maskable = ~torch.isin(ids, specials)
    inputs, labels = mask_tokens(ids, maskable, 4, torch.arange(5, vocab), generator)
    chosen = labels != IGNORE
    assert not chosen[~maskable].any() and torch.equal(inputs[~maskable], ids[~maskable])
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])

    def close(count, total, p):
        return abs(count / total - p) < 5 * math.sqrt(p * (1 - p) / total)

    n, k = int(maskable.sum()), int(chosen.sum())
    assert close(k, n, 0.15)
    masked = inputs[chosen] == 4
    unchanged = inputs[chosen] == ids[chosen]
    replaced = ~masked & ~unchanged
    assert close(int(masked.sum()), k, 0.8)
    assert close(int(unchanged.sum()), k, 0.1 + 0.1 / 995)  # a random draw may hit the original id
    assert close(int(replaced.sum()), k, 0.1 * (1 - 1 / 995))
    assert int(inputs[chosen][replaced].min()) >= 5


def test_mlm_batches_never_choose_specials_or_padding(tokenizers, documents):
    tokenizer = tokenizers["encoder"]
    specials = torch.tensor(sorted(special_ids(tokenizer)))
    maskable = chosen = 0
    for batch in batches("mlm", tokenizers, documents, seq_len=64, batch_size=8, epochs=1, shuffle=False):
        labels, real = batch["labels"], batch["attention_mask"].bool()
        original = torch.where(labels != IGNORE, labels, batch["input_ids"])
        assert not torch.isin(labels[labels != IGNORE], specials).any()
        assert (labels[~real] == IGNORE).all() and (labels[:, 0] == IGNORE).all()
        maskable += int((~torch.isin(original, specials) & real).sum())
        chosen += int((labels != IGNORE).sum())
    assert abs(chosen / maskable - 0.15) < 0.01


# --- span corruption -------------------------------------------------------------------------------------


def test_span_lengths_match_t5():
    # T5 pre-training: 512 input tokens come from 568 raw tokens, with 114 target tokens (85 noise, 28 spans)
    assert span_lengths(512) == (568, 114)


def test_noise_mask_density_spans_and_uniform_lengths():
    generator = torch.Generator().manual_seed(0)
    noise, spans, draws = 85, 28, 1500
    first_lengths = torch.zeros(noise + 1)
    for _ in range(draws):
        mask = random_spans_noise_mask(568, generator)
        starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])
        assert int(mask.sum()) == noise and int(starts.sum()) == spans and not mask[0]
        first = starts.nonzero()[0, 0]
        first_lengths[int(mask[first:].logical_not().nonzero()[0, 0])] += 1
    # lengths of the first span when 85 noise tokens are cut uniformly into 28 non-empty spans
    for length in (1, 2, 3, 5):
        p = math.comb(noise - length - 1, spans - 2) / math.comb(noise - 1, spans - 1)
        assert abs(first_lengths[length] / draws - p) < 5 * math.sqrt(p * (1 - p) / draws)


def rebuild(inputs: list[int], targets: list[int], sentinels: list[int]) -> list[int]:
    """The original tokens from span-corrupted inputs and targets (both ending with </s>)."""
    spans, current = {}, None
    for token in targets[:-1]:
        if token in sentinels:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    return [t for token in inputs[:-1] for t in (spans[token] if token in sentinels else [token])]


def test_span_corruption_rebuilds_the_packed_stream(tokenizers, documents):
    tokenizer = tokenizers["encoder-decoder"]
    special = special_tokens(tokenizer)
    sentinels, eos, pad = special["sentinels"], special["eos"], special["pad"]
    rebuilt = []
    for batch in batches("span", tokenizers, documents[:6], seq_len=64, batch_size=8, epochs=1, shuffle=False):
        real = batch["labels"] != IGNORE
        assert torch.equal(batch["decoder_attention_mask"].bool(), real)
        expected_decoder = shift_tokens_right(batch["labels"], pad, special["decoder_start"])  # HF's reference
        assert torch.equal(batch["decoder_input_ids"][real], expected_decoder[real])
        for row in range(len(batch["input_ids"])):
            inputs = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            targets = batch["labels"][row][batch["labels"][row] != IGNORE].tolist()
            used = [t for t in inputs if t in sentinels]
            assert used == sentinels[:len(used)] == [t for t in targets if t in sentinels]
            assert inputs[-1] == targets[-1] == eos
            rebuilt += rebuild(inputs, targets, sentinels)
    assert rebuilt == expected_stream(tokenizer, documents[:6], eos)


def test_span_inputs_fill_seq_len(tokenizers, documents):
    batch = next(batches("span", tokenizers, documents, seq_len=128, batch_size=4))
    raw, target_len = span_lengths(128)
    assert batch["input_ids"].shape == (4, 128) and batch["labels"].shape == (4, target_len)
    assert bool(batch["attention_mask"].all())


def is_span_corruption(inputs: list[int], block: list[int], sentinels: set[int]) -> bool:
    """Whether ``inputs`` is ``block`` with some non-empty runs each replaced by one sentinel."""
    @functools.cache
    def matches(i: int, j: int) -> bool:  # inputs[i:] against block[j:]
        if i == len(inputs):
            return j == len(block)
        if inputs[i] in sentinels:
            return any(matches(i + 1, k) for k in range(j + 1, len(block) + 1))
        return j < len(block) and block[j] == inputs[i] and matches(i + 1, j + 1)
    return matches(0, 0)


def test_denoise_targets_are_the_packed_stream_and_inputs_its_span_corruption(tokenizers, documents):
    tokenizer = tokenizers["encoder-decoder"]
    special = special_tokens(tokenizer)
    sentinels, eos, pad = special["sentinels"], special["eos"], special["pad"]
    stream, noised = [], 0
    for batch in batches("denoise", tokenizers, documents[:6], seq_len=64, batch_size=8, epochs=1, shuffle=False):
        real = batch["labels"] != IGNORE
        assert batch["input_ids"].size(1) <= 64 and batch["labels"].size(1) <= 64
        expected_decoder = shift_tokens_right(batch["labels"], pad, special["decoder_start"])
        assert torch.equal(batch["decoder_input_ids"][real], expected_decoder[real])
        for row in range(len(batch["input_ids"])):
            inputs = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            targets = batch["labels"][row][real[row]].tolist()
            assert inputs[-1] == targets[-1] == eos
            block = targets[:-1]
            stream += block
            # the inputs are the block with each noise span replaced by the next sentinel, as in ``span``
            used = [t for t in inputs if t in sentinels]
            assert used == sentinels[:len(used)]
            assert is_span_corruption(inputs[:-1], block, set(sentinels))
            noised += len(block) - (len(inputs) - 1 - len(used))
    assert stream == expected_stream(tokenizer, documents[:6], eos)
    assert 0.12 < noised / len(stream) < 0.18  # T5's noise density, 0.15


def test_corrupt_spans_short_rows():
    generator = torch.Generator().manual_seed(0)
    inputs, targets = corrupt_spans(torch.tensor([7]), [3, 4], eos=1, generator=generator)
    assert inputs.tolist() == [7, 1] and targets.tolist() == [3, 1]  # no noise: one empty span
    inputs, targets = corrupt_spans(torch.tensor([7, 8]), [3, 4], eos=1, generator=generator)
    assert inputs.tolist() == [7, 3, 1] and targets.tolist() == [3, 8, 1]


# --- packing ---------------------------------------------------------------------------------------------


def test_clm_blocks_overlap_by_one_and_cover_every_token_once(tokenizers, documents):
    tokenizer = tokenizers["decoder"]
    eos = special_tokens(tokenizer)["eos"]
    stream, targets = [], 0
    previous_last_label = None
    for batch in batches("clm", tokenizers, documents[:5], seq_len=48, batch_size=4, epochs=1, shuffle=False):
        for inputs, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
            real = inputs[mask.bool()].tolist()
            scored = labels[labels != IGNORE].tolist()
            assert real[1:] == scored[:-1] and len(scored) == len(real)
            if previous_last_label is not None:
                assert real[0] == previous_last_label
            previous_last_label = scored[-1]
            stream += real
            targets += len(scored)
    stream.append(previous_last_label)
    expected = [eos, *expected_stream(tokenizer, documents[:5], eos)]
    assert stream == expected and targets == len(expected) - 1


def test_mlm_blocks_are_cls_text_sep(tokenizers, documents):
    tokenizer = tokenizers["encoder"]
    special = special_tokens(tokenizer)
    stream = []
    for batch in batches("mlm", tokenizers, documents[:5], seq_len=40, batch_size=4, epochs=1, shuffle=False):
        original = torch.where(batch["labels"] != IGNORE, batch["labels"], batch["input_ids"])
        for row, mask in zip(original, batch["attention_mask"], strict=True):
            real = row[mask.bool()].tolist()
            assert real[0] == special["cls"] and real[-1] == special["sep"] and len(real) <= 40
            stream += real[1:-1]
    assert stream == expected_stream(tokenizer, documents[:5], special["sep"])


# --- resume and sharding ---------------------------------------------------------------------------------


def assert_same_batches(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("objective", list(FAMILY))
def test_resume_gives_the_batches_an_uninterrupted_run_gets(objective, tokenizers, documents):
    small = [document[:1000] for document in documents[:2]]  # a few batches per epoch: resume crosses epochs
    uninterrupted = list(itertools.islice(batches(objective, tokenizers, small, max_pairs=18), 14))
    first = batches(objective, tokenizers, small, max_pairs=18)
    head = list(itertools.islice(first, 5))
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    resumed = batches(objective, tokenizers, small, max_pairs=18)
    resumed.load_state_dict(state)
    tail = list(itertools.islice(resumed, 9))
    assert_same_batches(head + tail, uninterrupted)
    assert resumed.state_dict()["epoch"] >= 1  # the run went past an epoch boundary


@pytest.mark.parametrize("objective", list(FAMILY))
@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_share_each_global_batch_exactly(objective, world_size, tokenizers, documents):
    documents = documents[:3]
    whole = list(itertools.islice(batches(objective, tokenizers, documents, batch_size=8, shuffle=False), 3))
    shards = [list(itertools.islice(batches(objective, tokenizers, documents, batch_size=8, rank=rank,
                                            world_size=world_size, shuffle=False), 3)) for rank in range(world_size)]
    for step, batch in enumerate(whole):
        parts = [shards[rank][step] for rank in range(world_size)]
        for key in batch:
            if key == "loss_normalizer":
                assert all(float(part[key]) * world_size == float(batch[key]) for part in parts)
            else:
                assert torch.equal(torch.cat([part[key] for part in parts]), batch[key]), key


@pytest.mark.parametrize("objective", ["seq2seq", "classification"])
def test_padded_rows_are_batched_by_length_in_groups(objective, tokenizers, documents):
    """Training draws LENGTH_GROUP_BATCHES batches' rows at a time and batches them by length: the same rows
    as the stream gives (within each group), far less padding, and the same batches every time."""
    group = LENGTH_GROUP_BATCHES * 4

    def rows(batch):  # each row's real tokens, as a sortable tuple
        mask = batch["attention_mask"].bool()
        return [tuple(ids[keep].tolist()) for ids, keep in zip(batch["input_ids"], mask, strict=True)]

    def real_share(run):
        masks = [b["attention_mask"] for b in run] + [b["decoder_attention_mask"] for b in run if
                                                       "decoder_attention_mask" in b]
        return sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)

    grouped = list(itertools.islice(batches(objective, tokenizers, documents), LENGTH_GROUP_BATCHES))
    plain = list(itertools.islice(batches(objective, tokenizers, documents, group_by_length=False),
                                  LENGTH_GROUP_BATCHES))  # the same stream, served in order
    assert sorted(r for b in grouped for r in rows(b)) == sorted(r for b in plain for r in rows(b))
    assert sum(len(rows(b)) for b in grouped) == group
    assert real_share(grouped) > real_share(plain) + 0.1
    again = list(itertools.islice(batches(objective, tokenizers, documents), LENGTH_GROUP_BATCHES))
    assert_same_batches(grouped, again)
    lengths = [int(b["attention_mask"].sum(1).max()) for b in grouped]
    assert lengths != sorted(lengths, reverse=True)  # the group's batches are served in a drawn order


def test_padded_rows_are_tokenised_once(tokenizers, documents, monkeypatch):
    run = batches("seq2seq", tokenizers, documents)
    texts = [line for line, _ in pairs_of(documents, "seq2seq")[:20]]
    expected = [e.ids for e in run.tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert [ids.tolist() for ids in run.encoded(texts)] == expected
    monkeypatch.setattr(run, "tokenizer", None)  # remembered: the tokenizer is not asked again
    assert [ids.tolist() for ids in run.encoded(texts[::-1])] == expected[::-1]


def test_epochs_reshuffle(tokenizers, documents):
    run = batches("clm", tokenizers, [d[:1500] for d in documents[:2]], batch_size=1)
    epoch0, epoch1 = [], []
    for batch in run:
        (epoch0 if run.state_dict()["epoch"] == 0 else epoch1).append(batch["input_ids"])
        if run.state_dict()["epoch"] == 1 and run.state_dict()["offset"] == len(epoch0):
            break
    assert sorted(map(tuple, torch.cat(epoch0).tolist())) == sorted(map(tuple, torch.cat(epoch1).tolist()))
    assert not torch.equal(torch.cat(epoch0), torch.cat(epoch1))


# --- losses ----------------------------------------------------------------------------------------------


def explicit_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int, int]:
    """(mean nats, count, argmax hits) over the scored positions, one position at a time."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    total, count, hits = 0.0, 0, 0
    for index in (labels != IGNORE).nonzero().tolist():
        row = log_probs[tuple(index)]
        total -= float(row[labels[tuple(index)]])
        count += 1
        hits += int(row.argmax() == labels[tuple(index)])
    return total / count, count, hits


@pytest.mark.parametrize("objective", list(FAMILY))
def test_loss_is_the_mean_over_targets_and_shards_add_up(objective, tokenizers, documents):
    documents = documents[:3]
    whole = batches(objective, tokenizers, documents, batch_size=4, shuffle=False)
    changes = {"vocab_size": tokenizers[FAMILY[objective]].get_vocab_size()}
    if objective == "classification":
        changes.update(head="sequence-classification", num_labels=len(whole.label_names))
    model = build(PRESET[FAMILY[objective]], **changes).eval()
    batch = next(whole)
    loss, metrics = compute_loss(objective, model, batch)
    with torch.no_grad():
        _, evaluated = compute_loss(objective, model, batch)  # argmax hits are counted when evaluating
        if FAMILY[objective] == "encoder-decoder":
            logits = model(batch["input_ids"], batch["decoder_input_ids"], attention_mask=batch["attention_mask"],
                           decoder_attention_mask=batch["decoder_attention_mask"])
        else:
            logits = model(batch["input_ids"], attention_mask=batch["attention_mask"])
    expected, count, hits = explicit_loss(logits, batch["labels"])
    assert metrics["targets"] == count and evaluated["correct"] == hits
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    shards = [next(batches(objective, tokenizers, documents, batch_size=4, rank=r, world_size=2, shuffle=False))
              for r in (0, 1)]
    shard_losses = [compute_loss(objective, model, shard)[0].item() for shard in shards]
    assert sum(shard_losses) / 2 == pytest.approx(loss.item(), rel=1e-5)


# --- errors ----------------------------------------------------------------------------------------------


def test_bad_arguments(tokenizers, documents):
    with pytest.raises(ValueError, match="objective must be one of"):
        Batches("nsp", documents, tokenizers["encoder"], 32, 4)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        Batches("clm", documents, tokenizers["encoder"], 32, 4)
    with pytest.raises(ValueError, match="sentinels"):
        Batches("span", documents, tokenizers["decoder"], 32, 4)
    with pytest.raises(ValueError, match="split evenly"):
        Batches("clm", documents, tokenizers["decoder"], 32, 6, world_size=4)
    with pytest.raises(ValueError, match="too small"):
        next(Batches("mlm", ["tiny"], tokenizers["encoder"], 32, 4))
    run = Batches("clm", documents, tokenizers["decoder"], 32, 4)
    state = run.state_dict()
    with pytest.raises(ValueError, match="seq_len=32"):
        Batches("clm", documents, tokenizers["decoder"], 64, 4).load_state_dict(state)
    with pytest.raises(ValueError, match="label 'x'"):
        next(Batches("classification", [("a b", "x")], tokenizers["encoder"], 32, 1, label_names=["y"]))


def test_blank_accuracy_counts_only_targets_shown_as_mask(tokenizers, documents):
    """Accuracy at [MASK] leaves out the chosen tokens left visible (which a model can copy); checked against
    the argmax of the model's own logits at the [MASK] positions."""
    from trilogy.objectives.masked import blank_counts, guess_accuracies

    tokenizer = tokenizers["encoder"]
    mask_id = special_tokens(tokenizer)["mask"]
    batch = next(iter(batches("mlm", tokenizers, documents, seq_len=64, batch_size=8)))
    chosen = batch["labels"] != IGNORE
    blank = batch["input_ids"] == mask_id
    assert (blank <= chosen).all() and blank.sum() < chosen.sum()  # some chosen tokens stay visible
    model = build("tiny-bert", vocab_size=tokenizer.get_vocab_size()).eval()
    with torch.no_grad():
        count, right = blank_counts(model, batch, mask_id)
        logits = model.run(batch["input_ids"], batch["attention_mask"]).logits  # (B, T, V)
    assert count == int(blank.sum())
    assert right == int((logits.argmax(-1) == batch["labels"])[blank].sum())

    guess = int(batch["labels"][blank][0])  # a guess that is right at one blank at least
    figures = guess_accuracies(guess, [batch], mask_id)
    assert figures["blank_accuracy"] == pytest.approx(float((batch["labels"][blank] == guess).float().mean()))
    assert figures["accuracy"] == pytest.approx(float((batch["labels"][chosen] == guess).float().mean()))


def test_tiny_bert_learns_to_fill_blanks_from_context():
    """Rows of one repeated token, 15% of them shown as [MASK]: only the context tells what a blank is, and
    a tiny BERT learns that in a couple of hundred steps (the MLM path carries context to the blanks)."""
    torch.manual_seed(0)
    vocab, mask_id = 64, 4
    model = build("tiny-bert", vocab_size=vocab, dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(10, vocab, (32, 1)).expand(32, 24)
        blanks = torch.rand(32, 24) < 0.15
        return tokens.masked_fill(blanks, mask_id), torch.where(blanks, tokens, IGNORE)

    for _ in range(200):
        ids, labels = batch()
        model.run(ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    ids, labels = batch()
    with torch.no_grad():
        out = model.run(ids, labels=labels)
    assert int(out.label_correct) / int(out.label_count) > 0.9  # a unigram guess gets 1/54
