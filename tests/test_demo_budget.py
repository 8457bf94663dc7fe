"""The demo's budget: each unit stops at the step nearest its quota of FLOPs (counted per batch by
``trilogy.sizing``), the quota is planned so the probed step costs fill the time asked for, the counts survive a
resume; ``--precision auto``; and the fill-the-blank question against an independent computation."""

from __future__ import annotations

import itertools
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import trilogy
from trilogy import Tokenization, build
from trilogy.demo.budget import BudgetedBatches, StopRequest, StopTraining, read_timeline
from trilogy.demo.families import FAMILY_ARCH, UNITS
from trilogy.demo.fill_blank import WORD, fill_blank, make_blanks, masked_answers, next_word_answers
from trilogy.demo.run import family_quota
from trilogy.demo.state import DemoOptions
from trilogy.demo.training import PLAN_SHARE, Probe, plan
from trilogy.objectives import Batches
from trilogy.sizing import batch_rows, training_flops
from trilogy.train.precision import cpu_has_fast_bf16, denormals_flushed, resolve_precision

from .test_data import sample_documents, trained_tokenizers


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    return trained_tokenizers()


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return sample_documents()


def pairs(documents):
    return [(line, line.split()[0]) for d in documents for line in d.splitlines() if len(line.split()) > 3]


def drain(stream: BudgetedBatches) -> int:
    """Take batches as the training loop would, until the stream stops; returns the reason."""
    with pytest.raises(StopTraining) as stopped:
        while True:
            next(stream)
    return stopped.value.reason


def test_a_unit_stops_at_the_step_nearest_its_flops_quota(tmp_path, tokenizers, documents):
    """Seq2seq batches vary in size: every step's FLOPs are sizing's count of that batch, and the stream stops
    where one more step would end further from the quota than stopping."""
    model = build("tiny-t5", vocab_size=tokenizers["encoder-decoder"].get_vocab_size())
    data = pairs(documents)
    costs = [training_flops(model.config, batch_rows(b))
             for b in itertools.islice(Batches("seq2seq", data, tokenizers["encoder-decoder"], 32, 4, seed=3), 12)]
    assert len(set(costs)) > 1  # the batches differ
    quota = sum(costs[:5]) + 0.4 * costs[5]
    stream = BudgetedBatches(Batches("seq2seq", data, tokenizers["encoder-decoder"], 32, 4, seed=3), model.config,
                             "flops", quota, math.inf, StopRequest(), tmp_path / "timeline.jsonl")
    assert drain(stream) == "done"
    assert stream.steps == 5 and stream.counts["flops"] == sum(costs[:5])
    assert [r["flops"] for r in read_timeline(tmp_path / "timeline.jsonl")] == \
        [sum(costs[:i]) for i in range(1, 6)]
    stream = BudgetedBatches(Batches("seq2seq", data, tokenizers["encoder-decoder"], 32, 4, seed=3), model.config,
                             "flops", sum(costs[:5]) + 0.6 * costs[5], math.inf, StopRequest(),
                             tmp_path / "other.jsonl")
    drain(stream)
    assert stream.steps == 6


def test_counts_and_clock_survive_a_resume(tmp_path, tokenizers, documents):
    model = build("tiny-bert", vocab_size=tokenizers["encoder"].get_vocab_size())

    def stream():
        return BudgetedBatches(Batches("mlm", documents, tokenizers["encoder"], 32, 4, seed=1), model.config,
                               "flops", math.inf, math.inf, StopRequest(), tmp_path / "timeline.jsonl")

    whole = stream()
    for _ in range(6):
        next(whole)
    first = stream()
    for _ in range(3):
        next(first)
    saved = first.state_dict()
    resumed = stream()
    resumed.load_state_dict(saved)
    for _ in range(3):
        next(resumed)
    assert resumed.counts == whole.counts and resumed.steps == 6
    assert whole.counts["loss_tokens"] < 0.3 * whole.counts["tokens"]  # MLM: ~15% of the tokens bear the loss


def test_stops_on_ctrl_c_and_at_its_deadline(tmp_path, tokenizers, documents):
    model = build("tiny-gpt2", vocab_size=tokenizers["decoder"].get_vocab_size())
    data = Batches("clm", documents, tokenizers["decoder"], 32, 4)
    stop = StopRequest()
    stream = BudgetedBatches(data, model.config, "flops", math.inf, math.inf, stop, tmp_path / "a.jsonl")
    next(stream)
    stop.requested = True
    assert drain(stream) == "interrupted"
    late = BudgetedBatches(data, model.config, "tokens", math.inf, -1.0, StopRequest(), tmp_path / "b.jsonl")
    assert drain(late) == "deadline"
    with pytest.raises(ValueError, match="budget counts one of"):
        BudgetedBatches(data, model.config, "joules", 1.0, 1.0, StopRequest(), tmp_path / "c.jsonl")


PROBES = {"bert": Probe(0.12, 2.0e10, 2048), "gpt": Probe(0.10, 1.5e10, 2048),
          "t5-code": Probe(0.20, 2.4e10, 4000), "t5": Probe(0.08, 0.9e10, 1500)}


@pytest.mark.parametrize("budget", ["flops", "tokens", "time"])
def test_the_plan_gives_every_family_the_same_budget_and_fills_the_time(budget):
    options = DemoOptions(minutes=10, budget=budget)
    measure = {"flops": "flops", "tokens": "tokens", "time": "seconds"}[budget]
    quota = family_quota(options, PROBES)
    plans = {u.name: plan(PROBES[u.name], measure, quota * u.budget_share) for u in UNITS}
    planned = sum(p.planned_seconds for p in plans.values())
    share = PLAN_SHARE if measure == "seconds" else 1.0  # a time budget leaves room for evaluations itself
    assert planned == pytest.approx(share * options.train_seconds, rel=0.02)
    if measure != "seconds":  # what the planned steps spend adds up to the same quota for each family
        spent = {family: sum(plans[u.name].max_steps * PROBES[u.name].per_step(measure) for u in UNITS
                             if u.family == family) for family in FAMILY_ARCH}
        assert all(value == pytest.approx(quota, rel=0.01) for value in spent.values())
    else:
        assert all(p.quota is None for p in plans.values())


def test_an_explicit_flops_budget_and_bad_options():
    assert family_quota(DemoOptions(flops=3e13), PROBES) == 3e13
    with pytest.raises(ValueError, match="--budget must be one of"):
        DemoOptions(budget="joules")
    with pytest.raises(ValueError, match="--flops"):
        DemoOptions(budget="time", flops=1e12)
    with pytest.raises(ValueError, match="--precision"):
        DemoOptions(precision="fp8")


def test_auto_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"  # on a CPU the demo times both; train keeps fp32
    flags = open("/proc/cpuinfo").read().split()  # noqa: SIM115 - the independent source: the kernel's flags
    assert cpu_has_fast_bf16() == any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="--precision"):
        resolve_precision("fp16", cpu)


class TextCorpus:
    def __init__(self, validation):
        self.validation = validation


def test_fill_the_blank_against_a_direct_computation(tokenizers, documents):
    """Blanks hide one single-token word per line; BERT's answer is the argmax at [MASK] over the whole line,
    GPT's the next-token argmax after the left side only, each computed here without the module's batching."""
    models = {}
    for family, arch, preset in (("bert", "encoder", "tiny-bert"), ("gpt", "decoder", "tiny-gpt2")):
        torch.manual_seed(0)
        models[family] = build(preset, vocab_size=tokenizers[arch].get_vocab_size(),
                               tokenization=Tokenization(tokenizers[arch])).eval()
    both = {family: model.tokenizer for family, model in models.items()}
    blanks = make_blanks(documents, both, 70, seed=0)
    assert len(blanks) >= 20
    for blank in blanks:
        assert WORD.fullmatch(blank.word) and "\n" in blank.before  # the line before comes too
        for tokenizer in both.values():
            assert len(tokenizer.encode(" " + blank.word, add_special_tokens=False).ids) == 1
    bert, gpt = models["bert"], models["gpt"]
    with torch.no_grad():
        for blank, answer in zip(blanks, masked_answers(bert, blanks), strict=True):
            ids = bert.tokenizer.encode(f"{blank.before} [MASK]{blank.after}").ids
            at = ids.index(bert.tokenizer.token_to_id("[MASK]"))
            logits = bert.run(torch.tensor([ids])).logits[0, at]
            assert answer == bert.tokenizer.decode([int(logits.argmax())]).strip()
        for blank, answer in zip(blanks, next_word_answers(gpt, blanks), strict=True):
            ids = gpt.tokenizer.encode(blank.before, add_special_tokens=False).ids
            logits = gpt.run(torch.tensor([ids])).logits[0, -1]
            assert answer == gpt.tokenizer.decode([int(logits.argmax())]).strip()
    result = fill_blank(models, TextCorpus(documents), documents, 70, seed=0)
    assert result["blanks"] == len(blanks) and result["t5"] is None
    counts = {}
    for document in documents:
        for word in re.findall(r"\b[a-z]{3,}\b", document):
            counts[word] = counts.get(word, 0) + 1
    eligible = sorted((w for w in counts if all(len(t.encode(" " + w, add_special_tokens=False).ids) == 1
                                                for t in both.values())), key=lambda w: -counts[w])
    assert result["baseline_word"] == eligible[0]
    assert result["baseline"] == pytest.approx(sum(b.word == eligible[0] for b in blanks) / len(blanks))


def test_denormals_are_flushed_only_inside():
    tiny = torch.tensor([1e-39])  # a denormal in fp32
    with denormals_flushed():
        assert float(tiny * 1.0) == 0.0
    assert float(tiny * 1.0) > 0.0
    with denormals_flushed(enabled=False):
        assert float(tiny * 1.0) > 0.0


@pytest.mark.parametrize("workers_first", [False, True])
def test_a_flush_set_before_parallel_work_reaches_every_worker_thread(workers_first):
    """What ``trilogy train`` and ``trilogy demo`` rely on, in a fresh process with two threads: set before the
    thread pool starts, the flush holds in every worker's share of an elementwise op; set after, only in the
    main thread's (which is why the commands set it at their start)."""
    script = f"""
import numpy, torch
from trilogy.train.precision import denormals_flushed
torch.set_num_threads(2)
denormals = torch.from_numpy(numpy.full(1 << 22, 1e-39, dtype=numpy.float32))  # made without torch's threads
if {workers_first}:
    denormals * 1.0  # starts the thread pool
with denormals_flushed():
    print(int((denormals * 1.0 != 0).sum()))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(trilogy.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert (int(out.stdout) > 0) == workers_first


def test_bert_examples_blank_whole_words_only(tokenizers):
    """A blank is a whole word: "the" inside "Othe" is none (blanking it left the line without a [MASK])."""
    from trilogy.demo.samples import blank_sentences

    tokenizer = tokenizers["encoder"]
    inside = next(w for w in ("the", "and", "you", "not") if tokenizer.token_to_id(w) is not None)
    line = f"O{inside} spoke many fair words to me"  # "O{inside}" holds {inside}, but not as a word
    for seed in range(20):
        for sentence, word in blank_sentences([line], tokenizer, 1, seed, 64):
            assert "[MASK]" in sentence and re.search(rf"\b{word}\b", line)
