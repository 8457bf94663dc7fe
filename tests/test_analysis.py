"""compare, recommend and the notebook's four analysis functions: their numbers against built models and
measured tensors, and the decision guide against the notebook's twelve tasks (phrasings: tests/test_recommend.py)."""

from __future__ import annotations

import json

import pytest
import torch

import trilogy
from trilogy.analysis import (
    architecture_decision_guide,
    compare_architectures,
    equal_size_configs,
    measure_throughput,
    practical_implementation_example,
    visualize_attention_patterns,
)
from trilogy.cli import main
from trilogy.config import ModelConfig
from trilogy.models import build_model
from trilogy.recommend import NOTEBOOK_TASKS, recommend
from trilogy.sizing import attention_map_elements


@pytest.mark.parametrize("task,family", list(NOTEBOOK_TASKS.items()))
def test_recommend_notebook_tasks(task, family):
    answer = recommend(task)
    assert answer.architecture == family
    assert answer.runner_up not in (None, family) and answer.reasons


def test_decision_guide_agrees_with_the_notebook():
    answers = architecture_decision_guide(show=False)
    assert {task: a["architecture"] for task, a in answers.items()} == NOTEBOOK_TASKS


def test_equal_size_columns_match_built_models():
    result = compare_architectures(show=False, batch=2, seq=32, d_model=64, n_heads=4, d_ff=128, n_layers=2)
    configs = equal_size_configs(d_model=64, n_heads=4, d_ff=128, n_layers=2, max_seq_len=512)
    for family, config in configs.items():
        assert result["computed"][family]["params"] == build_model(config).num_parameters()
    sizes = [c["params"] for c in result["computed"].values()]
    assert max(sizes) / min(sizes) < 1.25  # "equal size" means it
    assert result["computed"]["encoder-only"]["kv_cache_bytes"] == 0


def test_compare_table_is_corrected_from_the_presets():
    table = compare_architectures(show=False)["table"]
    with torch.device("meta"):
        gpt2 = build_model(ModelConfig.from_preset("gpt2")).num_parameters()
        t5 = build_model(ModelConfig.from_preset("t5-base"))
    assert round(gpt2 / 1e6) == 124 and any("GPT-2 (124M" in e for e in table["decoder-only"]["examples"])
    assert len(t5.encoder.layers) == len(t5.decoder.layers) == 12
    assert any("12 encoder + 12 decoder" in e for e in table["encoder-decoder"]["examples"])


def test_measured_throughput_is_positive_and_json(capsys):
    configs = equal_size_configs(d_model=32, n_heads=2, d_ff=64, n_layers=2, max_seq_len=64)
    measured = measure_throughput(configs, batch=2, seq=16, steps=1, new_tokens=4, progress=False)
    assert all(m["training_tokens_per_s"] > 0 for m in measured.values())
    assert measured["encoder-only"]["generation_tokens_per_s"] is None
    assert measured["decoder-only"]["generation_tokens_per_s"] > 0
    assert measured["encoder-decoder"]["generation_tokens_per_s"] > 0
    assert main(["compare", "--json", "--d-model", "32", "--heads", "2", "--d-ff", "64", "--layers", "2"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"table", "workload", "config", "computed"}
    assert main(["compare", "--layers", "3"]) == 2


def test_practical_example_counts_every_head_and_layer():
    result = practical_implementation_example(batch=2, seq=16, show=False)
    for row in result["models"].values():
        with torch.device("meta"):
            assert row["params"] == build_model(ModelConfig.from_preset(row["preset"])).num_parameters()
    assert result["models"]["GPT-2"]["attention_bytes"] == 12 * 12 * result["notebook_attention_bytes"]
    # the formula behind it, against the weights a real model returns
    model = trilogy.build("tiny-t5").eval()
    with torch.no_grad():
        out = model.run(torch.randint(3, 1000, (2, 9)), torch.randint(3, 1000, (2, 5)), return_attention=True)
    measured = sum(w.numel() for layers in out.attentions.values() for w in layers)
    assert measured == attention_map_elements(model.config, 2, 5, 9)


def test_visualize_attention_patterns_writes_png(tmp_path):
    panels = visualize_attention_patterns(tmp_path / "masks.png")
    assert len(panels) == 8 and (tmp_path / "masks.png").read_bytes()[:4] == b"\x89PNG"
