"""The mask picture shows what attention really receives: captured from a real forward pass (a pre-hook on
the Attention modules) and, independently, read off the attention weights (zero exactly where blocked)."""

from __future__ import annotations

import json

import pytest
import torch

from trilogy.blocks.attention import Attention
from trilogy.blocks.masks import causal_mask
from trilogy.cli import main
from trilogy.config import PRESETS
from trilogy.viz.mask_panels import family_masks

SEQ, SRC, PAD = 7, 5, 2


def received(model, call):
    """Run ``call`` and return, per Attention module name, the (mask, bias, is_causal) it was given."""
    seen = {}

    def hook(name):
        def capture(module, args, kwargs):
            seen[name] = (kwargs.get("mask"), kwargs.get("bias"), kwargs.get("is_causal", False))
        return capture

    handles = [m.register_forward_pre_hook(hook(n), with_kwargs=True)
               for n, m in model.named_modules() if isinstance(m, Attention)]
    try:
        with torch.no_grad():
            out = call()
    finally:
        for h in handles:
            h.remove()
    return seen, out


def as_matrix(mask, bias, is_causal, t, s):
    """Independent of viz: the bool matrix row 0 of the batch gets."""
    if bias is not None:
        return bias[0, 0] > float("-inf")
    if mask is not None:
        return mask[0, 0].expand(t, s)
    return causal_mask(t, s)[0, 0] if is_causal else torch.ones(t, s, dtype=torch.bool)


@pytest.fixture(scope="module")
def panels():
    return {p.title.split("\n")[0] + " " + p.title.split("\n")[1]: p.allowed for p in family_masks(SEQ, SRC, PAD)}


def padded(length, pad):
    mask = torch.ones(1, length, dtype=torch.long)
    mask[:, length - pad:] = 0
    return mask


def pick(panels, words):
    (matrix,) = [m for title, m in panels.items() if all(w in title for w in words)]
    return matrix


def check(picture, captured, weights, t, s):
    assert picture.shape == (t, s)
    assert torch.equal(as_matrix(*captured, t, s), picture)
    # the explicit attention path gives zero weight exactly where the picture says "blocked", in every head
    for head in weights[0]:
        assert torch.equal(head > 0, picture)


def test_encoder_picture_is_what_bert_attention_receives(panels):
    import trilogy
    model = trilogy.build("tiny-bert").eval()
    ids, mask = torch.randint(5, 1000, (1, SEQ)), padded(SEQ, PAD)
    seen, out = received(model, lambda: model.run(ids, mask, return_attention=True))
    picture = pick(panels, ["BERT"])
    for layer in range(2):
        check(picture, seen[f"stack.layers.{layer}.self_attn"], out.attentions["encoder"][layer], SEQ, SEQ)
    assert not picture[:, SEQ - PAD:].any() and picture[:, : SEQ - PAD].all()


@pytest.mark.parametrize("with_padding", [False, True])
def test_decoder_pictures_are_what_gpt_attention_receives(panels, with_padding):
    import trilogy
    model = trilogy.build("tiny-gpt2").eval()
    ids = torch.randint(5, 1000, (1, SEQ))
    mask = padded(SEQ, PAD) if with_padding else None
    seen, out = received(model, lambda: model.run(ids, mask, return_attention=True))
    if with_padding:
        picture = pick(panels, ["GPT", "padding"])
    else:
        picture = pick({k: v for k, v in panels.items() if "padding" not in k}, ["GPT"])
        assert seen["stack.layers.0.self_attn"][2] is True  # SDPA applies causality itself here
    check(picture, seen["stack.layers.0.self_attn"], out.attentions["decoder"][0], SEQ, SEQ)
    assert torch.equal(picture[: SEQ - PAD, : SEQ - PAD], torch.ones(SEQ - PAD, SEQ - PAD).tril().bool())


def test_t5_pictures_are_what_t5_attention_receives(panels):
    import trilogy
    model = trilogy.build("tiny-t5").eval()
    src, tgt = torch.randint(5, 1000, (1, SRC)), torch.randint(5, 1000, (1, SEQ))
    seen, out = received(model, lambda: model.run(src, tgt, attention_mask=padded(SRC, PAD), return_attention=True))
    assert seen["decoder.layers.0.self_attn"][1] is not None  # T5 folds the causal mask into its bias
    check(pick(panels, ["T5 encoder"]), seen["encoder.layers.0.self_attn"], out.attentions["encoder"][0],
          SRC, SRC)
    check(pick(panels, ["T5 decoder"]), seen["decoder.layers.1.self_attn"], out.attentions["decoder"][1],
          SEQ, SEQ)
    check(pick(panels, ["cross"]), seen["decoder.layers.1.cross_attn"], out.attentions["cross"][1], SEQ, SRC)


def test_masks_command_writes_png_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "masks.png"
    assert main(["masks", "--seq", "6", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["masks", "--seq", "4", "--pad", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trilogy masks: error:") and "--pad" in err


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-bert"])
def test_one_models_masks_are_what_its_attention_receives(name):
    import trilogy
    from trilogy.viz.mask_panels import model_masks
    model = trilogy.build(name).eval()
    panels = model_masks(model, SEQ, pad=PAD)
    kind = "encoder" if model.config.arch == "encoder" else "decoder"
    ids = torch.randint(5, 1000, (1, SEQ))
    for key, mask in (("self", None), ("self+padding", padded(SEQ, PAD))):
        seen, out = received(model, lambda mask=mask: model.run(ids, mask, return_attention=True))
        check(panels[key].allowed, seen["stack.layers.1.self_attn"], out.attentions[kind][1], SEQ, SEQ)


@pytest.mark.parametrize("name", list(PRESETS))
def test_masks_command_for_every_preset(name, capsys):
    assert main(["masks", "--model", name, "--seq", "5", "--pad", "1", "--json"]) == 0
    panels = json.loads(capsys.readouterr().out)
    arch = PRESETS[name]["arch"]
    assert len(panels) == (4 if arch == "encoder-decoder" else 2)
    causal = [[int(k <= q) for k in range(5)] for q in range(5)]
    assert (panels[0]["allowed"] == causal) == (arch == "decoder" and not PRESETS[name].get("prefix_lm"))
