"""Bad input gets a clear ValueError/TypeError naming the value and the limit, before any tensor work."""

import pytest
import torch

import trilogy
from trilogy import ModelConfig

from .conftest import tiny


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-gpt2", "tiny-llama"])
def test_ids_outside_the_vocabulary(name):
    model = tiny(name)
    with pytest.raises(ValueError, match=r"token id 1024, outside \[0, 1024\)"):
        model(torch.tensor([[1, 2, 1024]]))
    with pytest.raises(ValueError, match=r"token id -1"):
        model(torch.tensor([[1, -1, 3]]))


def test_float_and_bool_ids_are_refused():
    model = tiny("tiny-gpt2")
    with pytest.raises(TypeError, match="integer token ids, got dtype torch.float32"):
        model(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(TypeError, match="torch.bool"):
        model(torch.tensor([[True, False]]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[1, 2, 3]])


def test_sequences_longer_than_the_positions():
    model = tiny("tiny-gpt2")
    with pytest.raises(ValueError, match="max_seq_len=128"):
        model(torch.zeros(1, 129, dtype=torch.long))
    nb = trilogy.EncoderOnlyTransformer(50, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_seq_len=8)
    with pytest.raises(ValueError, match="max_seq_len=8"):
        nb(torch.zeros(1, 9, dtype=torch.long))


def test_mask_shape_must_match_the_ids():
    model = tiny("tiny-bert")
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\) but the ids need \(2, 5\)"):
        model(ids, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"mask has shape \(1, 5\)"):
        model(ids, torch.zeros(1, 5, dtype=torch.bool))
    t5 = tiny("tiny-t5")
    with pytest.raises(ValueError, match="src_mask"):
        t5(ids, ids, src_mask=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="tgt_mask must be the"):
        t5(ids, ids, tgt_mask=torch.ones(5, 5, dtype=torch.bool))


def test_rows_without_a_real_token_and_conflicting_masks():
    model = tiny("tiny-gpt2")
    ids = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] have no real token"):
        model(ids, attention_mask=torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="not both"):
        model(ids, torch.zeros(2, 4, dtype=torch.bool), attention_mask=torch.ones(2, 4))


def test_empty_batch_or_sequence():
    model = tiny("tiny-bert")
    with pytest.raises(ValueError, match="empty"):
        model(torch.zeros(0, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(batch, length\)"):
        model(torch.zeros(5, dtype=torch.long))


def test_bad_configs():
    with pytest.raises(ValueError, match=r"d_model \(100\) must be divisible by n_heads \(3\)"):
        trilogy.DecoderOnlyTransformer(1000, d_model=100, n_heads=3)
    with pytest.raises(ValueError, match=r"d_model \(100\) must be divisible by n_heads \(3\)"):
        ModelConfig(arch="decoder", vocab_size=10, d_model=100, n_heads=3)
    with pytest.raises(ValueError, match="unknown preset 'gpt5'; known presets: bert-base-uncased"):
        trilogy.build("gpt5")
    with pytest.raises(ValueError, match="norm must be one of"):
        ModelConfig(arch="decoder", vocab_size=10, norm="batchnorm")
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        ModelConfig(arch="decoder", vocab_size=0)
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        ModelConfig(arch="decoder", vocab_size=10, d_model=64, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="unknown ModelConfig fields: colour"):
        ModelConfig.from_dict({"arch": "decoder", "vocab_size": 10, "colour": "red"})
    with pytest.raises(TypeError, match="needs vocab_size"):
        trilogy.EncoderOnlyTransformer()
