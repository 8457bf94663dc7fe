"""Hugging Face config.json <-> ModelConfig, and the weights in between.

Reading: ``model_type`` picks the family module, ``architectures`` the class (and so our head), the family's
``config_from_hf`` the sizes, its KEY_MAP the tensors. Writing: a trilogy config has a Hugging Face
equivalent when some family's ``config_to_hf`` followed by ``config_from_hf`` gives back the same model; the
fields that differ otherwise are the reason it has none.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

from torch import Tensor

from ..config import ModelConfig
from ..errors import CheckpointError
from . import (
    bart,
    bert,
    distilbert,
    gemma,
    gemma2,
    gemma3_text,
    gpt2,
    gpt_neox,
    llama,
    marian,
    mistral,
    modernbert,
    mt5,
    phi3,
    qwen2,
    qwen3,
    roberta,
    t5,
    xlm_roberta,
)
from .mapping import Rule, expand

#: in the order ``config_to_hf`` tries them: a config both Llama and Mistral compute is written as Llama
CONVERTERS: dict[str, ModuleType] = {module.MODEL_TYPE: module for module in (
    bert, gpt2, llama, t5, mistral, qwen2, qwen3, roberta, xlm_roberta, distilbert, gpt_neox, phi3, gemma, bart,
    marian, mt5, gemma2, gemma3_text, modernbert)}


def supported() -> str:
    return "; ".join(f"{m.MODEL_TYPE}: {', '.join(m.ARCHITECTURES)}" for m in CONVERTERS.values())


def family_of(hf: dict[str, Any]) -> tuple[ModuleType, str]:
    """The family module and architecture name a config.json describes."""
    model_type = hf.get("model_type")
    if model_type not in CONVERTERS:
        raise CheckpointError(f"config.json: model_type {model_type!r} is not supported; supported model types "
                              f"and architectures: {supported()}")
    family = CONVERTERS[model_type]
    names = hf.get("architectures")
    if not isinstance(names, list) or not names:
        raise CheckpointError(f"config.json names no architecture; add \"architectures\": [NAME] with NAME one "
                              f"of {', '.join(family.ARCHITECTURES)}")
    for name in names:
        if name in family.ARCHITECTURES:
            return family, name
    raise CheckpointError(f"config.json: architecture {', '.join(map(str, names))} is not supported for "
                          f"model_type {model_type!r}; supported: {', '.join(family.ARCHITECTURES)}")


def config_from_hf(hf: dict[str, Any]) -> tuple[ModelConfig, ModuleType, str]:
    family, architecture = family_of(hf)
    try:
        config = family.config_from_hf(hf, architecture)
    except (TypeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"config.json describes no valid {architecture}: {error}") from None
    config.extra = {**config.extra, "hf_architecture": architecture}
    return config, family, architecture


# --- writing ---------------------------------------------------------------------------------------------
def _behaviour(config: ModelConfig) -> dict[str, Any]:
    """The fields that decide what the model computes; those that do not (dropout, provenance, sizes of parts
    the model does not have) are blanked, so two configs compare equal when their models do."""
    fields = config.to_dict()
    for name in ("extra", "dropout"):
        fields.pop(name)
    fields["attention_scale"] = config.scale
    fields["layer_attention"], fields["sliding_window"] = config.layer_windows, None  # each layer's window
    local = config.rope_theta_local  # the sliding layers' rotary table, when it differs from the others'
    if all(w is None for w in config.layer_windows) or (local == config.rope_theta and config.rope_linear_factor == 1):
        fields["rope_theta_local"] = None
    structure = config.structure
    activation = fields.pop("pooler_activation")
    pooler = ", ".join([activation] + ["mean"] * (config.pooling == "mean") + ["norm"] * config.head_transform)
    fields["pooler"] = structure.pooler and pooler  # False, or its activation (its mean pooling, its norm)
    fields.pop("pooling")
    transformed = config.head_transform and structure.classifier is not None and structure.summary != "pooler"
    fields["head_transform"] = transformed and activation  # the classifier's own transform (False: none)
    blank = {
        "max_seq_len": config.position not in ("learned", "sinusoidal"),
        "rope_theta": config.position != "rope",
        "rope_linear_factor": config.position != "rope",
        "rope_theta_local": config.position != "rope",
        "rotary_fraction": config.position != "rope",
        "relative_buckets": config.position != "relative",
        "relative_max_distance": config.position != "relative",
        "sinusoidal_layout": config.position != "sinusoidal",
        "embeddings_per_stack": config.position != "learned" and not config.embedding_norm,  # nothing of its own
        "norm_bias": config.norm == "rmsnorm" and structure.vocabulary != "mlm",  # the MLM head's LayerNorm
        "tie_embeddings": not config.has_lm_head,
        "head_bias": config.structure.vocabulary != "lm",
        "head_scale": not (config.structure.has_source and config.structure.vocabulary == "lm"),
        "num_labels": config.structure.classifier in (None, "span"),
    }
    fields.update({name: None for name, is_blank in blank.items() if is_blank})
    return fields


def _differences(config: ModelConfig, family: ModuleType, architecture: str) -> list[str]:
    """Why ``config`` is not ``architecture``: the fields whose values it cannot express ([] when it can)."""
    try:
        hf = family.config_to_hf(config)
        back = family.config_from_hf(hf, architecture)
    except (CheckpointError, ValueError, TypeError) as error:
        return [str(error)]
    ours, theirs = _behaviour(config), _behaviour(back)
    return [f"{name}={ours[name]!r} (needs {theirs[name]!r})" for name in ours if ours[name] != theirs[name]]


def config_to_hf(config: ModelConfig) -> tuple[dict[str, Any], ModuleType, str]:
    """The config.json of the Hugging Face class that computes what ``config`` does.

    Raises:
        CheckpointError: no supported class does; the message lists the closest one's differences.
    """
    candidates = [(family, name) for family in CONVERTERS.values() for name, fields in family.ARCHITECTURES.items()
                  if fields["arch"] == config.arch and fields["head"] == config.head]
    preferred = config.extra.get("hf_architecture")
    candidates.sort(key=lambda c: c[1] != preferred)
    reasons = []
    for family, name in candidates:
        differences = _differences(config, family, name)
        if not differences:
            hf = family.config_to_hf(config)
            return {"architectures": [name], "model_type": family.MODEL_TYPE, **hf}, family, name
        reasons.append((len(differences), f"as {name}: {'; '.join(differences)}"))
    if not reasons:
        raise CheckpointError(f"no Hugging Face class has arch={config.arch!r} with head={config.head!r}")
    raise CheckpointError("no Hugging Face equivalent: " + min(reasons)[1])


# --- weights ---------------------------------------------------------------------------------------------
def rules_for(family: ModuleType, config: ModelConfig, our_keys: list[str]) -> list[Rule]:
    return expand(family.key_map(config), our_keys)


def ignored_patterns(patterns: tuple[str, ...], tied_names: list[str]) -> list[re.Pattern]:
    """Checkpoint names that may be present or not: a family's known extras and copies of tied weights."""
    return [re.compile(p) for p in patterns] + [re.compile(re.escape(n)) for n in tied_names]


LEGACY_NAMES = ((re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"), (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias"))


def current_names(names: list[str], expected: set[str], prefix: str) -> dict[str, str]:
    """Stored names -> as the head model has them today, as a mapping {today's name: stored name}: the
    LayerNorm ``gamma``/``beta`` of old (TensorFlow-converted) BERT files become ``weight``/``bias``, and the
    body's prefix (``transformer.``, ``bert.``, ``model.``), which the bare base models (GPT2Model, BertModel,
    LlamaModel) save without, is added back."""
    renamed = {}
    for stored in names:
        name = stored
        for pattern, replacement in LEGACY_NAMES:
            name = pattern.sub(replacement, name)
        if prefix and not name.startswith(prefix) and prefix + name in expected:
            name = prefix + name
        renamed[name] = stored
    return renamed


def computed_tensors(family: ModuleType, model: Any) -> dict[str, Tensor]:
    """Tensors that a family's classes keep in their files and trilogy computes instead (Marian's sinusoidal
    tables), by checkpoint name: written beside the weights, skipped when read (the family's IGNORED)."""
    return family.computed_tensors(model) if hasattr(family, "computed_tensors") else {}


def without_prefix(tensors: dict[str, Tensor], prefix: str, architecture: str, family: ModuleType) -> dict:
    """Names as transformers saves ``architecture``: base models drop the body's prefix."""
    if not prefix or family.ARCHITECTURES[architecture]["head"] != "none":
        return tensors
    return {k.removeprefix(prefix): v for k, v in tensors.items()}
