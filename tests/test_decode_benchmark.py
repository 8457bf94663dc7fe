"""``benchmarks/decode.py`` on a tiny Llama shape: the verdict against a target from the repeats' range, the
shares' and speed-ups' per-repeat values behind the medians, and the head's stored bytes against its shape."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
from pathlib import Path

import pytest

from trilogy.blocks.inference_linear import int4_supported

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1)


@pytest.fixture(scope="module")
def decode():
    spec = importlib.util.spec_from_file_location("decode_benchmark", ROOT / "benchmarks" / "decode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.SHAPE = {**module.SHAPE, **TINY}
    return module


def test_a_target_is_met_only_when_every_repeat_reaches_it(decode):
    assert decode.verdict([0.81, 0.85, 0.90], 0.80, "%") == ">= 80% met"
    assert decode.verdict([0.50, 0.79], 0.80, "%") == ">= 80% NOT met"
    assert decode.verdict([0.75, 0.83], 0.80, "%") == ">= 80% tie (repeats on both sides)"
    assert decode.verdict([2.9, 3.1], 3.0, "x") == ">= 3.0x tie (repeats on both sides)"
    assert decode.verdict([1.0], None, "x") == "-"


@pytest.mark.slow
@pytest.mark.skipif(not int4_supported(), reason="the benchmark decodes int4 too (torch >= 2.6)")
def test_the_benchmark_runs_end_to_end_on_a_tiny_model(decode, tmp_path, capsys):
    models = decode.build(str(tmp_path), seed=0)
    args = argparse.Namespace(seed=0, prompt=8, new_tokens=4, repeats=2, batches=[1])

    class Progress:
        def update(self):
            pass

    result = decode.measure(1, args, models, Progress())
    heads = decode.head_products(models, rounds=4)
    json.dumps({"results": [result], "head_products": heads})  # what --json prints
    for name, runs in result["share_of_roofline_runs"].items():
        assert len(runs) == args.repeats
        assert result["share_of_roofline"][name] == statistics.median(runs)
    for pair, runs in result["speedup_runs"].items():  # (a tiny model's step times are noise: no sign checked)
        fast, slow = pair.split(" vs ")
        assert len(runs) == args.repeats, pair
        assert result["speedups"][pair] == pytest.approx(result["ms_per_step"][slow] / result["ms_per_step"][fast])
    vocab, width = TINY["vocab_size"], TINY["hidden_size"]
    stored = heads["stored_bytes"]
    assert stored["float32 eager"] == stored["float32 compiled"] == vocab * width * 4
    assert stored["bfloat16 compiled"] == vocab * width * 2
    assert stored["int8 eager"] == vocab * width + vocab * 2  # int8 levels, a bfloat16 scale per row
    assert stored["int4 eager"] == vocab * width // 2 + (width // 64) * vocab * 2 * 2  # levels, scale and offset
    decode.report([result], args, (0.0, 0.0))
    decode.report_head(heads)
    out = capsys.readouterr().out
    assert "float32 compiled" in out and "int4 compiled vs float32 compiled" in out and "GB/s" in out
