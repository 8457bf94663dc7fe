"""``from_pretrained`` and ``save_pretrained``: a checkpoint folder <-> a trilogy model.

Two folder formats. Hugging Face's (config.json with a ``model_type`` transformers knows, weights under its
names), read for every supported class and written whenever the model's architecture has an equivalent.
trilogy's own (config.json holding our ModelConfig with ``"model_type": "trilogy"``, weights under our
names), written for the rest; transformers cannot load it, and saving says so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig
from ..errors import TrilogyError, TrilogyTypeError
from ..models import TransformerModel, build_model
from . import hf
from .errors import CheckpointError
from .files import (
    CONFIG,
    SAFETENSORS,
    checkpoint_folder,
    read_json,
    read_tensors,
    read_tokenizer,
    write_json,
    write_safetensors,
    write_tokenizer,
)
from .mapping import Rule, check_tensors, expected_shapes

NATIVE = "trilogy"  # the model_type of trilogy's own format
FORMATS = ("auto", "hf", "trilogy")


@dataclass
class Layout:
    """How a folder's tensors relate to a trilogy model: the config, and the family module and architecture
    for a Hugging Face checkpoint (None for trilogy's own format, whose names are ours)."""

    config: ModelConfig
    family: ModuleType | None = None
    architecture: str | None = None

    @property
    def prefix(self) -> str:
        return self.family.PREFIX if self.family is not None else ""

    def rules(self, our_keys: list[str]) -> list[Rule]:
        if self.family is None:
            return [Rule(key, (key,)) for key in our_keys]
        return hf.rules_for(self.family, self.config, our_keys)


def read_layout(folder: Path) -> Layout:
    """The config.json of a folder, in either format."""
    data = read_json(folder / CONFIG)
    if data.get("model_type") != NATIVE:
        return Layout(*hf.config_from_hf(data))
    fields = {k: v for k, v in data.items() if k not in ("model_type", "trilogy_version")}
    try:
        return Layout(ModelConfig.from_dict(fields))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CONFIG} is not a valid trilogy config: {error}") from None


def tied_keys(model: TransformerModel) -> dict[str, str]:
    """Parameter names that are the same tensor as an earlier name (a tied head) -> that earlier name."""
    first_name: dict[int, str] = {}
    tied = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first_name:
            tied[name] = first_name[id(tensor)]
        else:
            first_name[id(tensor)] = name
    return tied


def expected_tensors(layout: Layout, model: TransformerModel) -> tuple[list[Rule], dict[str, tuple], list]:
    """The rules for every distinct parameter, the shape each checkpoint tensor must have, and the names that
    may be present or not (duplicates of tied weights, known buffers)."""
    state = model.state_dict()
    tied = tied_keys(model)
    rules = layout.rules([k for k in state if k not in tied])
    expected = expected_shapes(rules, {k: v.shape for k, v in state.items()}, layout.config)
    tied_names = [name for rule in layout.rules(list(tied)) for name in rule.theirs]
    ignored = hf.ignored_patterns(layout.family.IGNORED if layout.family else (), tied_names)
    return rules, expected, ignored


def has_distinct_tied_head(layout: Layout, model: TransformerModel, tensors: dict[str, Tensor]) -> bool:
    """Whether the checkpoint stores a tied head's weight with values of its own (transformers then unties)."""
    for name, source in tied_keys(model).items():
        head, embedding = layout.rules([name, source])
        if all(n in tensors for n in head.theirs + embedding.theirs):
            stored = head.to_ours([tensors[n] for n in head.theirs], layout.config)
            if stored.shape != model.state_dict()[name].shape or not torch.equal(
                    stored, embedding.to_ours([tensors[n] for n in embedding.theirs], layout.config)):
                return True
    return False


def from_pretrained(path: str | Path, dtype: torch.dtype | None = None) -> TransformerModel:
    """Load a checkpoint folder (Hugging Face's or trilogy's own format) into the matching trilogy model.

    The class follows config.json (``model_type`` and ``architectures``); weights come from model.safetensors,
    sharded safetensors with their index, or pytorch_model.bin (tensors only). Every tensor name and shape is
    checked before anything is loaded. A tokenizer.json beside the weights is loaded as ``model.tokenizer``.

    Args:
        path: the checkpoint folder.
        dtype: the parameters' dtype (default float32, whatever the file stores).
    Returns:
        The model, in eval mode.
    Raises:
        CheckpointError: unsupported model type or architecture, missing / unexpected / wrongly shaped
            tensors, unreadable files; the message says which and what was expected.
    """
    folder = checkpoint_folder(path)
    layout = read_layout(folder)
    tensors, file = read_tensors(folder)
    model = build_model(layout.config)
    rules, expected, ignored = expected_tensors(layout, model)
    tensors = hf.current_names(tensors, set(expected), layout.prefix)
    if has_distinct_tied_head(layout, model, tensors):
        warnings.warn(f"{folder / CONFIG} ties the output layer to the embeddings, but the weights hold a "
                      "different output layer; loaded untied, as transformers does", UserWarning, stacklevel=2)
        layout.config = layout.config.replace(tie_embeddings=False)
        model = build_model(layout.config)
        rules, expected, ignored = expected_tensors(layout, model)
    check_tensors(tensors, expected, ignored, source=str(file))
    state = {rule.ours: rule.to_ours([tensors[name] for name in rule.theirs], layout.config) for rule in rules}
    for name, source in tied_keys(model).items():
        state[name] = state[source]
    model.load_state_dict(state, strict=True)
    if dtype is not None:
        model.to(dtype)
    model.tokenizer = read_tokenizer(folder)
    return model.eval()


def save_pretrained(model: TransformerModel, path: str | Path, format: str = "auto") -> Path:
    """Write ``model`` to a folder: config.json, model.safetensors and, when the model has a tokenizer,
    tokenizer.json with a tokenizer_config.json for transformers' AutoTokenizer.

    Args:
        format: "hf" writes the Hugging Face layout, which transformers' ``from_pretrained`` loads with
            identical outputs, and fails when the architecture has no equivalent; "trilogy" writes our own
            format; "auto" (default) writes the Hugging Face layout when possible and otherwise our own format,
            with a warning that transformers cannot load it.
    Returns:
        The folder.
    """
    if format not in FORMATS:
        raise TrilogyError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if not isinstance(model, TransformerModel):
        raise TrilogyTypeError(f"save_pretrained needs a trilogy model, got {type(model).__name__}")
    config = model.config
    hf_config, layout = None, Layout(config)
    if format != NATIVE:
        try:
            hf_config, family, architecture = hf.config_to_hf(config)
            layout = Layout(config, family, architecture)
        except CheckpointError as error:
            if format == "hf":
                raise
            warnings.warn(f"{error}. Saved in trilogy's own format instead: trilogy.from_pretrained loads it, "
                          "Hugging Face transformers cannot.", UserWarning, stacklevel=3)
    rules, _, _ = expected_tensors(layout, model)
    state = model.state_dict()
    tensors: dict[str, Tensor] = {}
    for rule in rules:
        tensors.update(zip(rule.theirs, rule.to_theirs(state[rule.ours], config), strict=True))
    if hf_config is not None:
        tensors = hf.without_prefix(tensors, layout.prefix, layout.architecture, layout.family)
        config_data: dict[str, Any] = {**hf_config, "dtype": str(state[rules[0].ours].dtype).removeprefix("torch.")}
    else:
        from .. import __version__

        config_data = {"model_type": NATIVE, "trilogy_version": __version__, **config.to_dict()}
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(tensors, folder / SAFETENSORS)
    write_json(config_data, folder / CONFIG)
    if model.tokenizer is not None:
        write_tokenizer(model.tokenizer, folder, {"bos_token": config.bos_token_id, "eos_token": config.eos_token_id,
                                                  "pad_token": config.pad_token_id})
    return folder
