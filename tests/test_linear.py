"""``blocks.Linear`` stores its weight input-major but is nn.Linear in every other way: same shape, values,
results, state-dict keys, and checkpoints that hold ordinary contiguous tensors."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

import trilogy
from trilogy.blocks.linear import Linear


def test_weight_is_input_major_and_behaves_as_nn_linear():
    torch.manual_seed(0)
    layer = Linear(96, 32)
    assert layer.weight.shape == (32, 96) and layer.weight.stride() == (1, 32)
    assert layer.weight.t().is_contiguous()
    reference = torch.nn.Linear(96, 32)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(3, 5, 96, requires_grad=True)
    out = layer(x)
    torch.testing.assert_close(out, reference(x))
    out.square().sum().backward()
    expected = torch.autograd.grad(reference(x).square().sum(), reference.weight)[0]
    torch.testing.assert_close(layer.weight.grad, expected)
    assert layer.weight.grad.stride() == layer.weight.stride()  # no transposing copy in backward


def test_checkpoint_round_trip_keeps_values(tmp_path):
    model = trilogy.build_model(trilogy.ModelConfig(arch="decoder", vocab_size=64, d_model=32, n_heads=2,
                                                    n_layers=1, d_ff=64, max_seq_len=16))
    model.save_pretrained(tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    assert all(tensor.is_contiguous() for tensor in stored.values())
    loaded = trilogy.from_pretrained(tmp_path).eval()
    model.eval()
    ids = torch.randint(0, 64, (2, 8))
    torch.testing.assert_close(loaded(ids), model(ids))
    assert loaded.stack.layers[0].mlp.up.weight.stride() == (1, 64)
