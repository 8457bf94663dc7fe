"""The training loop's parts, in process: AdamW groups, the schedule, checkpoints kept and published, a
non-finite loss, the output folder, and the evaluation figures against an independent computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

import trilogy
from trilogy.cli import main
from trilogy.data import load_corpus, special_tokens
from trilogy.data.task_metrics import word_f1
from trilogy.objectives import Batches
from trilogy.train.distributed import Distributed
from trilogy.train.evaluate import evaluate
from trilogy.train.loop import NonFiniteLoss, TrainSettings, train
from trilogy.train.optim import decay_groups, lr_at
from trilogy.train.state import checkpoint_steps

from .train_helpers import train_args, weights, write_text

ONE_PROCESS = Distributed(rank=0, world_size=1, device=torch.device("cpu"))


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-bert", "tiny-t5", "tiny-llama"])
def test_weight_decay_only_on_linear_weight_matrices(preset):
    model = trilogy.build(preset)
    decayed, not_decayed = (group["params"] for group in decay_groups(model, 0.1))
    linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    embedding = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    assert {id(p) for p in decayed} == linear - embedding  # a head tied to the embedding is not decayed
    assert all(p.dim() == 2 for p in decayed)
    assert all(p.dim() == 1 for p in not_decayed if id(p) not in embedding)
    assert len(decayed) + len(not_decayed) == len(list(model.parameters()))


def test_warmup_then_cosine():
    peak, warmup, total = 1e-3, 10, 110
    lrs = [lr_at(s, peak, warmup, total, 0.1) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(peak / warmup) and lrs[warmup - 1] == pytest.approx(peak)
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1:warmup], strict=False))
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:], strict=False))
    assert lrs[warmup + 50] == pytest.approx(peak * (0.1 + 0.9 * 0.5))  # half way down the cosine
    assert lrs[total] == pytest.approx(0.1 * peak)


class Counting:
    """A resumable stream of random-token LM batches in the objectives' format."""

    def __init__(self):
        self.index = 0

    def __next__(self):
        ids = torch.randint(3, 1024, (4, 17), generator=torch.Generator().manual_seed(self.index))
        self.index += 1
        labels = ids[:, 1:]
        return {"input_ids": ids[:, :-1], "attention_mask": torch.ones_like(labels), "labels": labels,
                "loss_normalizer": torch.tensor(float(labels.numel()))}

    def state_dict(self):
        return {"index": self.index}

    def load_state_dict(self, state):
        self.index = state["index"]


def lm_loss(model, batch):
    out = model.run(batch["input_ids"], labels=batch["labels"])
    loss_sum = out.loss * out.label_count
    return loss_sum / batch["loss_normalizer"], {"loss_sum": float(loss_sum.detach()), "targets": int(out.label_count)}


def save_files(model, folder):
    model.save_pretrained(folder)


@pytest.mark.parametrize("poison_reported_loss", [True, False])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, poison_reported_loss):
    torch.manual_seed(0)
    model = trilogy.build("tiny-gpt2", dropout=0.0)

    def poisoned(model, batch):
        loss, metrics = lm_loss(model, batch)
        if batches.index != 8:
            return loss, metrics
        if poison_reported_loss:
            metrics["loss_sum"] = float("inf")
        return loss * float("nan"), metrics  # the gradient is NaN either way

    batches = Counting()
    with pytest.raises(NonFiniteLoss, match="step 8"):
        train(model, batches, poisoned, TrainSettings(max_steps=20, save_every=3, warmup_steps=2), tmp_path,
              save_files, None, ONE_PROCESS)
    assert checkpoint_steps(tmp_path) == [3, 6]
    saved = weights(tmp_path / "checkpoints" / "step-00000006")
    assert saved.keys() == weights(tmp_path).keys()
    assert all(torch.equal(saved[k], v) for k, v in weights(tmp_path).items())  # the top level is step 6
    assert all(torch.isfinite(v).all() for v in saved.values())
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 8 and last["event"] == "non-finite loss or gradient"


def test_keeps_the_last_k_checkpoints_and_the_best(tmp_path):
    torch.manual_seed(0)
    model = trilogy.build("tiny-gpt2", dropout=0.0)
    validation = iter([5.0, 3.0, 4.0, 4.5, 4.2, 4.1])  # best at the second evaluation (step 4)
    settings = TrainSettings(max_steps=12, save_every=2, eval_every=2, keep_last=2, warmup_steps=2)
    result = train(model, Counting(), lm_loss, settings, tmp_path, save_files,
                   lambda m: {"loss": next(validation)}, ONE_PROCESS)
    assert checkpoint_steps(tmp_path) == [4, 10, 12]
    assert (result.best_step, result.best_loss) == (4, 3.0)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_training_flushes_denormals_while_it_runs(tmp_path, precision):
    """Denormal floats take the CPU's microcode path, many times slower: the loop flushes them in every
    precision, and only while it runs."""
    flushed = []

    def watching(model, batch):
        flushed.append(float(torch.tensor([1e-39]) * 1.0) == 0.0)  # 1e-39 is a denormal in fp32
        return lm_loss(model, batch)

    torch.manual_seed(0)
    train(trilogy.build("tiny-gpt2", dropout=0.0), Counting(), watching,
          TrainSettings(max_steps=2, warmup_steps=1, precision=precision), tmp_path, save_files, None, ONE_PROCESS)
    assert flushed == [True, True]
    assert float(torch.tensor([1e-39]) * 1.0) > 0.0


def test_output_folder_loads_and_records_the_run(tmp_path):
    data = write_text(tmp_path / "text.txt")
    out = tmp_path / "run"
    assert main(train_args(out, data, "decoder", max_steps=6, save_every=3, eval_every=3)) == 0
    model = trilogy.from_pretrained(out)
    assert model.tokenizer is not None and model.config.vocab_size == model.tokenizer.get_vocab_size()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) and r["lr"] > 0 for r in records if r["split"] == "train")
    assert [r["step"] for r in records if r["split"] == "validation"] == [3, 6]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert checkpoint_steps(out) == [3, 6]


def independent_nats_per_char(model, corpus, tokenizer, seq_len) -> float:
    """Causal-LM loss of the whole validation text, computed directly: the documents joined by the separator
    (one in front), cut into windows of seq_len + 1 tokens that overlap by one, summed, over the characters."""
    eos = special_tokens(tokenizer)["eos"]
    stream = [eos]
    for document in corpus.validation:
        stream += tokenizer.encode(document, add_special_tokens=False).ids + [eos]
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(stream) - 1, seq_len):
            window = torch.tensor(stream[start:start + seq_len + 1])
            logits = model.run(window[None, :-1]).logits[0]  # (T, V)
            total += float(F.cross_entropy(logits, window[1:], reduction="sum"))
    return total / sum(len(d) for d in corpus.validation)


def test_bits_per_character_match_an_independent_computation(tmp_path):
    data = write_text(tmp_path / "text.txt", chars=30_000)
    out = tmp_path / "run"
    assert main(train_args(out, data, "decoder", max_steps=4, save_every=0, eval_every=0)) == 0
    model, corpus = trilogy.from_pretrained(out), load_corpus(str(data))
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    figures = evaluate(model, "clm", corpus, tokenizer, 32, 4, None, ONE_PROCESS)
    expected = independent_nats_per_char(model, corpus, tokenizer, 32)
    assert figures["nats_per_char"] == pytest.approx(expected, rel=1e-5)
    assert figures["bits_per_char"] == pytest.approx(expected / math.log(2), rel=1e-5)


def test_word_f1():
    assert word_f1("Return the value.", "return the value") == 1.0
    assert word_f1("return a value", "return the value") == pytest.approx(2 / 3)
    assert word_f1("", "something") == 0.0


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "x.txt", "--out", "o"], "--arch is required"),
    (["train", "--arch", "decoder"], "--out DIR is required"),
    (["train", "--arch", "decoder", "--preset", "tiny-bert", "--out", "o"], "is a encoder model"),
    (["train", "--arch", "decoder", "--max-steps", "0", "--out", "o"], "--max-steps must be positive"),
    (["train", "--arch", "gpt", "--out", "o"], "--arch must be one of"),
    (["train", "--arch", "decoder", "--objective", "mlm", "--out", "o"], "objective 'mlm' trains"),
    (["train", "--resume", "nowhere"], "no run.json"),
    (["train", "--arch", "decoder", "--data", "missing.txt", "--out", "o"], "no such file"),
    (["eval", "nowhere"], "'nowhere' is neither a folder nor a model in the Hugging Face cache"),
    (["train", "--arch", "encoder", "--position", "spiral", "--out", "o"], "--position must be one of"),
])
def test_bad_command_lines_give_one_line_errors(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_resume_refuses_changed_options(tmp_path, capsys):
    data = write_text(tmp_path / "text.txt")
    out = tmp_path / "run"
    assert main(train_args(out, data, "decoder", max_steps=2, save_every=0, eval_every=0)) == 0
    assert main(["train", "--resume", str(out), "--lr", "0.5"]) == 2
    assert "differs from the run being resumed" in capsys.readouterr().err
    assert main(train_args(out, data, "decoder", max_steps=2)) == 2  # an existing run is not overwritten


@pytest.mark.filterwarnings("ignore:no Hugging Face equivalent")  # rotary BERT: trilogy's own format
def test_eval_prints_the_training_figures_and_a_baseline(tmp_path, capsys):
    data = write_text(tmp_path / "text.txt")
    out = tmp_path / "run"
    assert main(train_args(out, data, "encoder", max_steps=3, save_every=0, eval_every=0, position="rope")) == 0
    assert json.loads((out / "config.json").read_text())["position"] == "rope"
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--batch-size", "4", "--max-batches", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["objective"] == "mlm"
    assert report["metrics"]["loss"] == pytest.approx(final["loss"], rel=1e-5)
    assert report["metrics"]["accuracy"] == pytest.approx(final["accuracy"])
    assert report["metrics"]["blank_accuracy"] == pytest.approx(final["blank_accuracy"])
    assert 0 <= report["baselines"]["most frequent token"]["accuracy"] <= 1
    assert 0 <= report["baselines"]["most frequent token"]["blank_accuracy"] <= 1
    assert Path(out / "run.json").is_file()


def test_init_fine_tunes_from_a_checkpoint(tmp_path, capsys):
    """--init starts from the checkpoint's weights (zero learning rate: they come out unchanged), keeps its
    tokenizer, and gives a head the checkpoint lacks fresh weights (a classifier on a masked-LM model)."""
    text = write_text(tmp_path / "text.txt")
    pretrained = tmp_path / "mlm"
    assert main(train_args(pretrained, text, "encoder", max_steps=3, save_every=0, eval_every=0)) == 0
    start = weights(pretrained)

    same = tmp_path / "same"
    assert main(train_args(same, text, "encoder", max_steps=2, save_every=0, eval_every=0, lr=1e-12,
                           d_model=None, d_ff=None, init=pretrained)) == 0
    assert (same / "tokenizer.json").read_text() == (pretrained / "tokenizer.json").read_text()
    assert all(torch.allclose(start[k], v, atol=1e-9) for k, v in weights(same).items())

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"source": f"the king {w} spoke", "target": w[0]}) + "\n"
                             for w in ("and", "queen", "war", "peace", "love", "fool", "moon", "river") * 8))
    classifier = tmp_path / "classifier"
    assert main(train_args(classifier, pairs, "encoder", max_steps=2, save_every=0, eval_every=0, d_model=None,
                           d_ff=None, init=pretrained)) == 0
    assert "head tensors start fresh" in capsys.readouterr().err
    tuned = trilogy.from_pretrained(classifier)
    assert tuned.config.head == "sequence-classification" and tuned.config.d_model == 32

    assert main(train_args(tmp_path / "bad", text, "encoder", init=str(pretrained))) == 2
    assert "gives the architecture; drop --d-model" in capsys.readouterr().err
    assert main(train_args(tmp_path / "bad", text, "decoder", d_model=None, d_ff=None, init=pretrained)) == 2
    assert "a model of the encoder family; --arch decoder cannot start from it" in capsys.readouterr().err
    untokenized = tmp_path / "no-tokenizer"
    trilogy.build("tiny-bert").save_pretrained(untokenized)
    assert main(train_args(tmp_path / "bad", text, "encoder", d_model=None, d_ff=None, init=untokenized)) == 2
    assert "has no tokenizer.json; pass the one it was trained with as --tokenizer" in capsys.readouterr().err


def test_seq2seq_eval_with_a_repetition_penalty_scores_the_penalised_generations(tmp_path, capsys, monkeypatch):
    pairs = tmp_path / "pairs.jsonl"
    words = ("king", "queen", "war", "peace", "love", "fool", "moon", "river")
    pairs.write_text("".join(json.dumps({"source": f"the {a} and the {b}", "target": f"{b} {a} {b}"}) + "\n"
                             for a in words for b in words))
    out = tmp_path / "t5"
    assert main(train_args(out, pairs, "encoder-decoder", max_steps=4, save_every=0, eval_every=0)) == 0
    model, corpus = trilogy.from_pretrained(out), load_corpus(str(pairs))
    penalties = []
    generate = model.generate

    def spy(*args, **kwargs):
        penalties.append(kwargs.get("repetition_penalty"))
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    figures = evaluate(model, "seq2seq", corpus, model.tokenizer, 32, 4, None, ONE_PROCESS, repetition_penalty=2.0)
    assert penalties and set(penalties) == {2.0}
    expected, count = 0.0, 0
    for batch in Batches("seq2seq", corpus.validation, model.tokenizer, 32, 4, seed=0, epochs=1, shuffle=False):
        generated = model.generate(batch["input_ids"], batch["attention_mask"], repetition_penalty=2.0,
                                   max_new_tokens=batch["labels"].size(1))
        predictions = model.tokenizer.decode_batch(generated[:, 1:].tolist(), skip_special_tokens=True)
        references = [model.tokenizer.decode([t for t in row if t >= 0], skip_special_tokens=True)
                      for row in batch["labels"].tolist()]
        expected += sum(word_f1(p, r) for p, r in zip(predictions, references, strict=True))
        count += len(predictions)
    assert figures["word_f1"] == pytest.approx(expected / count)

    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--repetition-penalty", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["generation"] == {"greedy": True, "repetition_penalty": 2.0}
    assert report["metrics"]["word_f1"] == pytest.approx(figures["word_f1"])
    assert main(["eval", str(out), "--repetition-penalty", "0"]) == 2
    assert "--repetition-penalty must be > 0" in capsys.readouterr().err


def test_denoise_pretrains_on_the_sources_of_pairs_then_seq2seq_fine_tunes(tmp_path, capsys):
    """A text objective on a pairs corpus trains on the sources alone (the targets never reach the model),
    with the tokenizer trained on both; the checkpoint then fine-tunes on the pairs with --init."""
    pairs = tmp_path / "pairs.jsonl"
    words = ("king", "queen", "war", "peace", "love", "fool", "moon", "river")
    pairs.write_text("".join(json.dumps({"source": f"def {a}_{b}(x):\n    return x", "target": f"Zz {a} {b}"})
                             + "\n" for a in words for b in words))
    pretrained = tmp_path / "denoise"
    assert main(train_args(pretrained, pairs, "encoder-decoder", max_steps=2, save_every=0, eval_every=0,
                           objective="denoise", seq_len=32)) == 0
    assert json.loads((pretrained / "run.json").read_text())["objective"] == "denoise"
    tokenizer = Tokenizer.from_file(str(pretrained / "tokenizer.json"))
    unknown = special_tokens(tokenizer)["unk"]
    assert unknown not in tokenizer.encode("Zz").ids  # trained on the targets too, so fine-tuning can keep it
    corpus = load_corpus(str(pairs))
    texts = [tokenizer.decode([t for t in row if t >= 0]) for batch in
             Batches("denoise", corpus.sources().train, tokenizer, 32, 8, epochs=1) for row in batch["labels"].tolist()]
    assert any("def" in text for text in texts) and not any("Z" in text for text in texts)
    capsys.readouterr()
    assert main(["eval", str(pretrained), "--json", "--batch-size", "4", "--max-batches", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["objective"] == "denoise"

    tuned = tmp_path / "tuned"
    assert main(train_args(tuned, pairs, "encoder-decoder", max_steps=2, save_every=0, eval_every=0,
                           d_model=None, d_ff=None, init=pretrained)) == 0
    assert json.loads((tuned / "run.json").read_text())["objective"] == "seq2seq"

    assert main(train_args(tmp_path / "bad", write_text(tmp_path / "text.txt"), "encoder-decoder",
                           objective="seq2seq")) == 2
    assert "needs source/target pairs" in capsys.readouterr().err
