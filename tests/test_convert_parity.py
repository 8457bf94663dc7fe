"""Parity with Hugging Face transformers for every supported class, both directions.

HF -> trilogy: a tiny random transformers model, weights perturbed away from their init, saved with its own
``save_pretrained`` and loaded with ``trilogy.from_pretrained``. trilogy -> HF: that model perturbed again,
saved with ``save_pretrained(format="hf")`` and loaded with transformers' own ``from_pretrained`` (which must
report no missing, unexpected or mismatched keys). Padded batches (right padding; left padding with explicit
positions for the decoders, with each encoder's own in ``test_convert_encoders.py``); only real positions are
compared; fp32, max |delta| <= 1e-4. The decoders' sequence classifiers find the last real token from the pad id
in transformers and from the attention mask in trilogy, and RoBERTa numbers real tokens from the pad id in
transformers and from the attention mask in trilogy: the batches pad with the pad id and keep it out of the real
tokens, where the two agree.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from transformers import (
    BartConfig,
    BertConfig,
    DistilBertConfig,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MarianConfig,
    MistralConfig,
    ModernBertConfig,
    MT5Config,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
    RobertaConfig,
    T5Config,
    XLMRobertaConfig,
)

import trilogy

from .convert_helpers import max_diff, perturb

TOLERANCE = 1e-4
VOCAB = 99

BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, type_vocab_size=2, num_labels=3)
GPT2 = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64)
T5_V10 = dict(vocab_size=VOCAB, d_model=32, d_kv=6, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=4,
              relative_attention_num_buckets=8, relative_attention_max_distance=20, feed_forward_proj="relu",
              tie_word_embeddings=True, decoder_start_token_id=0)
T5_V11 = dict(T5_V10, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
# RoBERTa's real layout: one token type, padding index 1, positions from row 2 (so 64 of them)
ROBERTA = dict(BERT, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
DISTILBERT = dict(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64,
                  num_labels=3)
LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
             rope_parameters={"rope_type": "default", "rope_theta": 500.0})
# sliding windows of 3 tokens, shorter than the 8-token rows: Qwen2's layers from max_window_layers on slide,
# Qwen3's as layer_types says (and q/k norms over a head size that is not hidden_size / heads), every Mistral layer
QWEN2 = dict(LLAMA, use_sliding_window=True, sliding_window=3, max_window_layers=1)
QWEN3 = dict(LLAMA, head_dim=6, use_sliding_window=True, sliding_window=3,
             layer_types=["sliding_attention", "full_attention"])
MISTRAL = dict(LLAMA, sliding_window=3)
# BART's defaults (pad 1, bos 0, eos and decoder start 2); Marian as Opus-MT configs are (SiLU, scaled embeddings,
# the decoder starting from the pad token); mT5 with MT5Config's gated-GELU
BART = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64)
MARIAN = dict(BART, activation_function="swish", scale_embedding=True, pad_token_id=1, decoder_start_token_id=1,
              eos_token_id=0)
MT5 = dict(vocab_size=VOCAB, d_model=32, d_kv=6, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=4,
           relative_attention_num_buckets=8, relative_attention_max_distance=20)
# partial rotary: 6 of each head's 12 dims
NEOX = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=64,
            rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5})
PHI3 = dict(NEOX, num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
# head_dim 12 with a width of 32 (4 heads)
GEMMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=12, max_position_embeddings=64,
             rope_parameters={"rope_type": "default", "rope_theta": 500.0})
# every other layer sliding (Gemma2Config's rule) through 3 tokens, queries scaled by 16 ** -0.5, scores and
# logits soft-capped low enough to bite
GEMMA2 = dict(GEMMA, sliding_window=3, query_pre_attn_scalar=16, attn_logit_softcapping=1.0,
              final_logit_softcapping=2.0)
# Gemma 2's layers with q/k norms, a rotary base of their own for the sliding layers and linearly scaled
# rotary in the full ones
GEMMA3 = dict(GEMMA2, attn_logit_softcapping=None, layer_types=["sliding_attention", "full_attention"],
              rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 500.0},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}})
# ModernBERT: layer 0 global, layers 1 and 2 attending 2 tokens to each side (local_attention 4), rotary bases
# of their own for each kind; no biases
MODERNBERT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
                  max_position_embeddings=64, local_attention=4, global_rope_theta=500.0, local_rope_theta=50.0,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, num_labels=3)
MODERNBERT_BIASES = dict(MODERNBERT, attention_bias=True, mlp_bias=True, classifier_bias=True, norm_bias=True,
                         tie_word_embeddings=False, classifier_activation="relu")

# id -> (config class, config fields, model class)
CASES = {
    "BertModel": (BertConfig, BERT, "BertModel"),
    "BertForMaskedLM": (BertConfig, BERT, "BertForMaskedLM"),
    "BertForPreTraining": (BertConfig, BERT, "BertForPreTraining"),
    "BertForSequenceClassification": (BertConfig, BERT, "BertForSequenceClassification"),
    "BertForTokenClassification": (BertConfig, BERT, "BertForTokenClassification"),
    "BertForQuestionAnswering": (BertConfig, dict(BERT, num_labels=2), "BertForQuestionAnswering"),
    "GPT2Model": (GPT2Config, GPT2, "GPT2Model"),
    "GPT2LMHeadModel": (GPT2Config, GPT2, "GPT2LMHeadModel"),
    # the padding id is what transformers' sequence classifiers find the last real token by
    "GPT2ForSequenceClassification": (GPT2Config, dict(GPT2, num_labels=3, pad_token_id=0),
                                      "GPT2ForSequenceClassification"),
    "GPT2ForTokenClassification": (GPT2Config, dict(GPT2, num_labels=3), "GPT2ForTokenClassification"),
    "GPT2ForQuestionAnswering": (GPT2Config, GPT2, "GPT2ForQuestionAnswering"),
    "T5ForConditionalGeneration-v1.0": (T5Config, T5_V10, "T5ForConditionalGeneration"),
    "T5ForConditionalGeneration-v1.1": (T5Config, T5_V11, "T5ForConditionalGeneration"),
    # what transformers >= 5 builds from tie_word_embeddings=False: tied, but not scaled
    "T5ForConditionalGeneration-tied-unscaled": (T5Config, T5_V11, "T5ForConditionalGeneration"),
    "T5Model": (T5Config, T5_V11, "T5Model"),
    "T5EncoderModel": (T5Config, T5_V10, "T5EncoderModel"),
    "LlamaForCausalLM-gqa-untied": (LlamaConfig, LLAMA, "LlamaForCausalLM"),
    "LlamaForCausalLM-tied": (LlamaConfig, dict(LLAMA, tie_word_embeddings=True), "LlamaForCausalLM"),
    "LlamaModel": (LlamaConfig, LLAMA, "LlamaModel"),
    "LlamaForSequenceClassification": (LlamaConfig, dict(LLAMA, num_labels=3, pad_token_id=0),
                                       "LlamaForSequenceClassification"),
    "LlamaForTokenClassification": (LlamaConfig, dict(LLAMA, num_labels=3), "LlamaForTokenClassification"),
    "Qwen2ForCausalLM-sliding-upper-layers": (Qwen2Config, QWEN2, "Qwen2ForCausalLM"),
    "Qwen2ForCausalLM-full-tied": (Qwen2Config, dict(LLAMA, tie_word_embeddings=True), "Qwen2ForCausalLM"),
    "Qwen2Model": (Qwen2Config, QWEN2, "Qwen2Model"),
    "Qwen2ForSequenceClassification": (Qwen2Config, dict(QWEN2, num_labels=3, pad_token_id=0),
                                       "Qwen2ForSequenceClassification"),
    "Qwen2ForTokenClassification": (Qwen2Config, dict(QWEN2, num_labels=3), "Qwen2ForTokenClassification"),
    "Qwen3ForCausalLM-sliding-first-layer": (Qwen3Config, QWEN3, "Qwen3ForCausalLM"),
    "Qwen3ForCausalLM-full-tied": (Qwen3Config, dict(LLAMA, tie_word_embeddings=True), "Qwen3ForCausalLM"),
    "Qwen3Model": (Qwen3Config, QWEN3, "Qwen3Model"),
    "Qwen3ForSequenceClassification": (Qwen3Config, dict(QWEN3, num_labels=3, pad_token_id=0),
                                       "Qwen3ForSequenceClassification"),
    "Qwen3ForTokenClassification": (Qwen3Config, dict(QWEN3, num_labels=3), "Qwen3ForTokenClassification"),
    "MistralForCausalLM-sliding": (MistralConfig, MISTRAL, "MistralForCausalLM"),
    "MistralForCausalLM-full-tied": (MistralConfig, dict(LLAMA, sliding_window=None, tie_word_embeddings=True),
                                     "MistralForCausalLM"),
    "MistralModel": (MistralConfig, MISTRAL, "MistralModel"),
    "MistralForSequenceClassification": (MistralConfig, dict(MISTRAL, num_labels=3, pad_token_id=0),
                                         "MistralForSequenceClassification"),
    "MistralForTokenClassification": (MistralConfig, dict(MISTRAL, num_labels=3), "MistralForTokenClassification"),
    "MistralForQuestionAnswering": (MistralConfig, MISTRAL, "MistralForQuestionAnswering"),
    **{name: (RobertaConfig, dict(ROBERTA, num_labels=2) if "Question" in name else ROBERTA, name) for name in (
        "RobertaModel", "RobertaForMaskedLM", "RobertaForSequenceClassification", "RobertaForTokenClassification",
        "RobertaForQuestionAnswering")},
    **{name: (XLMRobertaConfig, dict(ROBERTA, num_labels=2) if "Question" in name else ROBERTA, name) for name in (
        "XLMRobertaModel", "XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification",
        "XLMRobertaForTokenClassification", "XLMRobertaForQuestionAnswering")},
    **{name: (DistilBertConfig, dict(DISTILBERT, num_labels=2) if "Question" in name else DISTILBERT, name)
       for name in ("DistilBertModel", "DistilBertForMaskedLM", "DistilBertForSequenceClassification",
                    "DistilBertForTokenClassification", "DistilBertForQuestionAnswering")},
    "BartForConditionalGeneration": (BartConfig, BART, "BartForConditionalGeneration"),
    "BartForConditionalGeneration-scaled-embeddings": (BartConfig, dict(BART, scale_embedding=True),
                                                       "BartForConditionalGeneration"),
    "BartModel": (BartConfig, BART, "BartModel"),
    "MarianMTModel": (MarianConfig, MARIAN, "MarianMTModel"),
    "MarianModel": (MarianConfig, MARIAN, "MarianModel"),
    "MT5ForConditionalGeneration": (MT5Config, MT5, "MT5ForConditionalGeneration"),
    # as Google's mT5 files load: a head of its own
    "MT5ForConditionalGeneration-untied": (MT5Config, dict(MT5, tie_word_embeddings=False),
                                           "MT5ForConditionalGeneration"),
    "MT5Model": (MT5Config, MT5, "MT5Model"),
    "MT5EncoderModel": (MT5Config, MT5, "MT5EncoderModel"),
    "GPTNeoXForCausalLM-parallel": (GPTNeoXConfig, NEOX, "GPTNeoXForCausalLM"),
    "GPTNeoXForCausalLM-sequential-tied": (GPTNeoXConfig, dict(NEOX, use_parallel_residual=False,
                                                               tie_word_embeddings=True), "GPTNeoXForCausalLM"),
    "GPTNeoXModel": (GPTNeoXConfig, NEOX, "GPTNeoXModel"),
    "GPTNeoXForSequenceClassification": (GPTNeoXConfig, dict(NEOX, num_labels=3, pad_token_id=0),
                                         "GPTNeoXForSequenceClassification"),
    "GPTNeoXForTokenClassification": (GPTNeoXConfig, dict(NEOX, num_labels=3), "GPTNeoXForTokenClassification"),
    "GPTNeoXForQuestionAnswering": (GPTNeoXConfig, NEOX, "GPTNeoXForQuestionAnswering"),
    "Phi3ForCausalLM-partial-rotary": (Phi3Config, PHI3, "Phi3ForCausalLM"),
    "Phi3ForCausalLM-sliding": (Phi3Config, dict(PHI3, sliding_window=3), "Phi3ForCausalLM"),
    "Phi3ForCausalLM-tied": (Phi3Config, dict(PHI3, rope_parameters=None, tie_word_embeddings=True),
                             "Phi3ForCausalLM"),
    "Phi3Model": (Phi3Config, PHI3, "Phi3Model"),
    "Phi3ForSequenceClassification": (Phi3Config, dict(PHI3, num_labels=3), "Phi3ForSequenceClassification"),
    "Phi3ForTokenClassification": (Phi3Config, dict(PHI3, num_labels=3), "Phi3ForTokenClassification"),
    "GemmaForCausalLM": (GemmaConfig, GEMMA, "GemmaForCausalLM"),
    "GemmaForCausalLM-untied": (GemmaConfig, dict(GEMMA, tie_word_embeddings=False), "GemmaForCausalLM"),
    "GemmaModel": (GemmaConfig, GEMMA, "GemmaModel"),
    "GemmaForSequenceClassification": (GemmaConfig, dict(GEMMA, num_labels=3), "GemmaForSequenceClassification"),
    "GemmaForTokenClassification": (GemmaConfig, dict(GEMMA, num_labels=3), "GemmaForTokenClassification"),
    "Gemma2ForCausalLM": (Gemma2Config, GEMMA2, "Gemma2ForCausalLM"),
    "Gemma2ForCausalLM-untied-uncapped-full": (Gemma2Config, dict(
        GEMMA2, tie_word_embeddings=False, attn_logit_softcapping=None, final_logit_softcapping=None,
        layer_types=["full_attention", "full_attention"]), "Gemma2ForCausalLM"),
    "Gemma2Model": (Gemma2Config, GEMMA2, "Gemma2Model"),
    "Gemma2ForSequenceClassification": (Gemma2Config, dict(GEMMA2, num_labels=3), "Gemma2ForSequenceClassification"),
    "Gemma2ForTokenClassification": (Gemma2Config, dict(GEMMA2, num_labels=3), "Gemma2ForTokenClassification"),
    "Gemma3ForCausalLM": (Gemma3TextConfig, GEMMA3, "Gemma3ForCausalLM"),
    "Gemma3ForCausalLM-untied-unscaled": (Gemma3TextConfig, dict(
        GEMMA3, tie_word_embeddings=False, final_logit_softcapping=None,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 500.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}}), "Gemma3ForCausalLM"),
    "Gemma3TextModel": (Gemma3TextConfig, GEMMA3, "Gemma3TextModel"),
    "Gemma3TextForSequenceClassification": (Gemma3TextConfig, dict(GEMMA3, num_labels=3),
                                            "Gemma3TextForSequenceClassification"),
    "ModernBertModel": (ModernBertConfig, MODERNBERT, "ModernBertModel"),
    "ModernBertForMaskedLM": (ModernBertConfig, MODERNBERT, "ModernBertForMaskedLM"),
    "ModernBertForMaskedLM-biases-untied": (ModernBertConfig, dict(MODERNBERT_BIASES, classifier_activation="gelu"),
                                            "ModernBertForMaskedLM"),
    "ModernBertForSequenceClassification-cls": (ModernBertConfig, MODERNBERT, "ModernBertForSequenceClassification"),
    "ModernBertForSequenceClassification-mean-biases": (ModernBertConfig, dict(
        MODERNBERT_BIASES, classifier_pooling="mean"), "ModernBertForSequenceClassification"),
    "ModernBertForTokenClassification": (ModernBertConfig, MODERNBERT, "ModernBertForTokenClassification"),
    "ModernBertForTokenClassification-biases": (ModernBertConfig, MODERNBERT_BIASES,
                                                "ModernBertForTokenClassification"),
    "ModernBertForQuestionAnswering": (ModernBertConfig, dict(MODERNBERT, num_labels=2),
                                       "ModernBertForQuestionAnswering"),
}
#: cases whose head gets weights of its own, as checkpoints with an untied head load
UNTIED = ("T5ForConditionalGeneration-v1.1", "MT5ForConditionalGeneration-untied")


def make_inputs(config: trilogy.ModelConfig, left_padding: bool = False) -> dict:
    """A padded batch: 3 rows of 8 tokens with 8, 6 and 3 real ones (targets: 5 with 5, 4, 2 real), padded with
    the pad id (0 without one), which no real token is."""
    generator = torch.Generator().manual_seed(7)
    pad = config.pad_token_id or 0

    def padded(lengths: list[int], length: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.randint(1, VOCAB, (len(lengths), length), generator=generator)
        ids = ids.masked_fill(ids == pad, pad + 1)
        mask = torch.zeros(len(lengths), length, dtype=torch.long)
        for row, n in enumerate(lengths):
            real = slice(length - n, length) if left_padding else slice(0, n)
            mask[row, real] = 1
        return ids.masked_fill(mask == 0, pad), mask

    ids, mask = padded([8, 6, 3], 8)
    inputs = dict(input_ids=ids, attention_mask=mask)
    if config.type_vocab_size > 1:
        inputs["token_type_ids"] = (torch.arange(8) >= 4).long().expand(3, 8) * mask
    if config.arch == "encoder-decoder":
        inputs["decoder_input_ids"], inputs["decoder_attention_mask"] = padded([5, 4, 2], 5)
    return inputs


def run_ours(model: trilogy.TransformerModel, inputs: dict, positions: torch.Tensor | None) -> trilogy.ModelOutput:
    if model.config.arch == "encoder-decoder":
        return model.run(inputs["input_ids"], inputs["decoder_input_ids"], inputs["attention_mask"],
                         inputs["decoder_attention_mask"])
    if model.config.arch == "decoder":
        return model.run(inputs["input_ids"], inputs["attention_mask"], positions=positions)
    return model.run(inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"))


def differences(ours: trilogy.TransformerModel, reference, inputs: dict, left_padding: bool = False) -> dict:
    """max |delta| of every output the class has, over real positions."""
    kwargs = dict(inputs)
    positions = None
    if left_padding:
        positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        kwargs["position_ids"] = positions
    with torch.no_grad():
        theirs = reference(**kwargs)
        mine = run_ours(ours, inputs, positions)
    source, target = inputs["attention_mask"], inputs.get("decoder_attention_mask", inputs["attention_mask"])
    pairs = {}  # name -> (ours, theirs, mask)
    if hasattr(theirs, "last_hidden_state"):
        pairs["hidden"] = (mine.hidden_states, theirs.last_hidden_state, target)
    if getattr(theirs, "pooler_output", None) is not None:
        pairs["pooled"] = (mine.pooled, theirs.pooler_output, None)
    if getattr(theirs, "encoder_last_hidden_state", None) is not None:
        pairs["encoder_hidden"] = (mine.encoder_hidden_states, theirs.encoder_last_hidden_state, source)
    if hasattr(theirs, "prediction_logits"):
        pairs["logits"] = (mine.logits, theirs.prediction_logits, source)
        pairs["sentence_logits"] = (mine.sentence_logits, theirs.seq_relationship_logits, None)
    elif hasattr(theirs, "start_logits"):  # ours: (B, T, 2), -inf at padding
        pairs["logits"] = (mine.logits, torch.stack([theirs.start_logits, theirs.end_logits], -1), target)
    elif hasattr(theirs, "logits"):
        per_token = theirs.logits.dim() == 3
        pairs["logits"] = (mine.logits, theirs.logits, target if per_token else None)
    assert pairs, f"nothing to compare for {type(reference).__name__}"
    return {name: max_diff(a, b, mask) for name, (a, b, mask) in pairs.items()}


def hf_model(case: str):
    config_class, fields, class_name = CASES[case]
    torch.manual_seed(0)
    reference = getattr(transformers, class_name)(config_class(**fields)).eval()
    if case in UNTIED:  # as Flan-T5 and mT5 checkpoints load: a head of its own
        reference.lm_head.weight = torch.nn.Parameter(reference.shared.weight.detach().clone())
        reference.config.tie_word_embeddings = False
    perturb(reference, seed=1)
    with torch.no_grad():
        for module in reference.modules():  # Marian's sinusoidal tables: computed, not saved, so not perturbed
            if hasattr(module, "create_weight"):
                module.weight.copy_(module.create_weight())
    return reference


def load_hf(class_name: str, folder):
    reference, info = getattr(transformers, class_name).from_pretrained(folder, output_loading_info=True)
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    assert not problems, problems
    return reference.eval()


@pytest.mark.parametrize("case", list(CASES))
def test_parity_both_directions(tmp_path, case):
    reference = hf_model(case)
    reference.save_pretrained(tmp_path / "hf")
    ours = trilogy.from_pretrained(tmp_path / "hf")
    assert ours.config.extra["hf_architecture"] == CASES[case][2]
    inputs = make_inputs(ours.config)
    worst = differences(ours, reference, inputs)
    assert max(worst.values()) <= TOLERANCE, ("HF -> trilogy", worst)

    perturb(ours, seed=2)  # weights HF has never seen
    ours.save_pretrained(tmp_path / "ours", format="hf")
    back = load_hf(CASES[case][2], tmp_path / "ours")
    worst = differences(ours, back, inputs)
    assert max(worst.values()) <= TOLERANCE, ("trilogy -> HF", worst)


@pytest.mark.parametrize("case", ["GPT2LMHeadModel", "LlamaForCausalLM-gqa-untied", "GPT2ForSequenceClassification",
                                  "GPT2ForQuestionAnswering", "LlamaForSequenceClassification",
                                  "LlamaForTokenClassification", "Qwen2ForCausalLM-sliding-upper-layers",
                                  "Qwen3ForSequenceClassification", "MistralForCausalLM-sliding",
                                  "MistralForQuestionAnswering", "GPTNeoXForCausalLM-parallel",
                                  "GPTNeoXForSequenceClassification", "Phi3ForCausalLM-partial-rotary",
                                  "Phi3ForCausalLM-sliding", "GemmaForCausalLM",
                                  "GemmaForSequenceClassification", "Gemma2ForCausalLM",
                                  "Gemma2ForSequenceClassification", "Gemma3ForCausalLM",
                                  "Gemma3TextForSequenceClassification"])
def test_decoders_with_left_padding(tmp_path, case):
    """Left padding: the sequence classifiers read the last position, as transformers' rightmost non-pad token."""
    reference = hf_model(case)
    reference.save_pretrained(tmp_path)
    ours = trilogy.from_pretrained(tmp_path)
    worst = differences(ours, reference, make_inputs(ours.config, left_padding=True),
                        left_padding=True)
    assert max(worst.values()) <= TOLERANCE, worst


def test_llama_rope_theta_in_the_old_top_level_form(tmp_path):
    reference = hf_model("LlamaForCausalLM-gqa-untied")
    reference.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("rope_parameters")
    config["rope_theta"] = 500.0
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = trilogy.from_pretrained(tmp_path)
    assert ours.config.rope_theta == 500.0
    worst = differences(ours, reference, make_inputs(ours.config))
    assert max(worst.values()) <= TOLERANCE, worst


def test_rope_theta_matters(tmp_path):
    """The parity tests can see a wrong theta: the default 10000 instead of 500 moves the logits."""
    reference = hf_model("LlamaForCausalLM-gqa-untied")
    reference.save_pretrained(tmp_path)
    ours = trilogy.from_pretrained(tmp_path)
    wrong = trilogy.build(ours.config.replace(rope_theta=10000.0)).eval()
    wrong.load_state_dict(ours.state_dict())
    assert max(differences(wrong, reference, make_inputs(ours.config)).values()) > 10 * TOLERANCE


@pytest.mark.parametrize("preset,class_name", [
    ("tiny-bert", "BertForMaskedLM"), ("tiny-gpt2", "GPT2LMHeadModel"), ("tiny-t5", "T5ForConditionalGeneration"),
    ("tiny-llama", "LlamaForCausalLM"),
])
def test_presets_export_to_transformers(tmp_path, preset, class_name):
    ours = trilogy.build(preset, vocab_size=VOCAB).eval()
    perturb(ours, seed=3)
    ours.save_pretrained(tmp_path, format="hf")
    reference = load_hf(class_name, tmp_path)
    worst = differences(ours, reference, make_inputs(ours.config))
    assert max(worst.values()) <= TOLERANCE, worst
