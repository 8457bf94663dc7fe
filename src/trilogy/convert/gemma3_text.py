"""Gemma 3, text only (``model_type: gemma3_text``): Gemma3ForCausalLM, Gemma3TextModel,
Gemma3TextForSequenceClassification. Gemma 2 (see ``gemma2``: sandwich norms, the query scale, sliding layers)
with:

- Gemma's RMSNorm over each head's q and k before rotary (``qk_norm``, the 1 + weight offset of the other
  norms; ``q_norm``, ``k_norm`` as Qwen3 names them);
- a rotary table of their own for the sliding layers (``rope_theta_local``): ``rope_parameters`` per layer type
  (``sliding_attention``, ``full_attention``), or, in older configs, ``rope_local_base_freq`` (10,000) beside
  ``rope_theta`` (1,000,000);
- linear RoPE scaling of the full-attention layers (``rope_linear_factor``: Gemma 3 4B and up use 8), from
  ``full_attention``'s ``rope_type: linear`` or the older ``rope_scaling``;
- five sliding layers out of six (``sliding_window_pattern``, 6) when config.json has no ``layer_types``;
- no soft-capping of the scores: transformers' Gemma 3 does not pass ``attn_logit_softcapping`` to its
  attention, so trilogy leaves it out too; ``final_logit_softcapping`` caps the logits as in Gemma 2.

Refused: rope types other than default and linear (and any scaling of the sliding layers' table), and what
Gemma refuses (attention biases, ``use_bidirectional_attention``: EmbeddingGemma's bidirectional windows).
The multimodal checkpoints (``model_type: gemma3``, Gemma3ForConditionalGeneration) are not read.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from . import gemma2, llama, qwen3
from .common import field

MODEL_TYPE = "gemma3_text"
ARCHITECTURES = {
    "Gemma3ForCausalLM": dict(arch="decoder", head="lm"),
    "Gemma3TextModel": dict(arch="decoder", head="none"),
    "Gemma3TextForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
}
PREFIX, IGNORED = llama.PREFIX, llama.IGNORED
KEY_MAP = gemma2.KEY_MAP | qwen3.QK_NORMS
#: Gemma3TextConfig's defaults where they differ from Llama's, for fields config.json leaves out
DEFAULTS = gemma2.DEFAULTS | dict(attn_logit_softcapping=None, final_logit_softcapping=None)
MAX_POSITIONS = 131072
THETA, LOCAL_THETA, PATTERN = 1_000_000.0, 10_000.0, 6  # the rotary bases and the sliding pattern's default


def key_map(config: ModelConfig) -> dict:
    return gemma2.key_map(config) | qwen3.QK_NORMS


def rope_fields(hf: dict[str, Any]) -> dict[str, Any]:
    """``rope_theta``, ``rope_linear_factor`` and ``rope_theta_local``, as Gemma3TextConfig reads them: per layer
    type from ``rope_parameters``, else from the older top-level fields (``rope_scaling`` scales the full layers).

    Raises:
        CheckpointError: a rope type other than default (and linear, for the full-attention layers).
    """
    params = field(hf, "rope_parameters") or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"config.json: rope_parameters must be an object, got {params!r}")
    full = dict(params.get("full_attention") or {}) | (field(hf, "rope_scaling") or {})
    local = dict(params.get("sliding_attention") or {})
    for layers, rope, allowed in (("full_attention", full, ("default", "linear")),
                                  ("sliding_attention", local, ("default",))):
        kind = rope.get("rope_type", rope.get("type", "default"))
        if kind not in allowed:
            raise CheckpointError(f"config.json: rope_type {kind!r} of the {layers} layers is not supported; "
                                  f"supported: {', '.join(allowed)}")
    linear = full.get("rope_type", full.get("type")) == "linear"
    return dict(rope_theta=float(full.get("rope_theta", field(hf, "rope_theta", THETA))),
                rope_linear_factor=float(full["factor"]) if linear else 1.0,
                rope_theta_local=float(local.get("rope_theta", field(hf, "rope_local_base_freq", LOCAL_THETA))))


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    rope = rope_fields(hf)
    pattern = field(hf, "sliding_window_pattern", PATTERN)
    fields = gemma2.gemma2_fields(hf, ARCHITECTURES[architecture], DEFAULTS, rope["rope_theta"], MAX_POSITIONS,
                                  sliding=lambda i: (i + 1) % pattern != 0)
    return ModelConfig(**fields | rope | dict(qk_norm=True, attention_softcap=None))


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    full: dict[str, Any] = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_linear_factor != 1.0:
        full = {"rope_type": "linear", "rope_theta": config.rope_theta, "factor": config.rope_linear_factor}
    local = {"rope_type": "default", "rope_theta": config.rope_theta_local or config.rope_theta}
    return gemma2.gemma2_to_hf(config) | dict(rope_parameters={"full_attention": full, "sliding_attention": local},
                                              attn_logit_softcapping=None)
