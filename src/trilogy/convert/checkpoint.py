"""``from_pretrained`` and ``save_pretrained``: a checkpoint folder <-> a trilogy model.

Two folder formats. Hugging Face's (config.json with a ``model_type`` transformers knows, weights under its
names), read for every supported class and written whenever the model's architecture has an equivalent.
trilogy's own (config.json holding our ModelConfig with ``"model_type": "trilogy"``, weights under our
names), written for the rest; transformers cannot load it, and saving says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig
from ..errors import CheckpointError, TrilogyError, TrilogyTypeError
from ..models import Tokenization, TransformerModel
from ..quantize import inference_form
from ..quantize import quantize as quantize_weights
from . import hf
from .files import (
    CONFIG,
    read_chat_template,
    read_json,
    read_tokenizer,
    write_chat_template,
    write_json,
    write_tokenizer,
)
from .gguf_checkpoint import is_gguf, open_gguf
from .hub import resolve
from .loading import build_on_meta, materialize, resolve_dtype, tied_keys
from .mapping import Rule, check_tensors, checkpoint_tensors, expected_shapes
from .shards import write_weights
from .stored import open_weights

NATIVE = "trilogy"  # the model_type of trilogy's own format
FORMATS = ("auto", "hf", "trilogy")


@dataclass
class Layout:
    """How a folder's tensors relate to a trilogy model: the config, and the family module and architecture
    for a Hugging Face checkpoint (None for trilogy's own format, whose names are ours)."""

    config: ModelConfig
    family: ModuleType | None = None
    architecture: str | None = None
    dtype: str | None = None  # the dtype config.json says the weights are stored in, if it says

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
        return Layout(*hf.config_from_hf(data), dtype=data.get("dtype", data.get("torch_dtype")))
    fields = {k: v for k, v in data.items() if k not in ("model_type", "trilogy_version")}
    try:
        return Layout(ModelConfig.from_dict(fields))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CONFIG} is not a valid trilogy config: {error}") from None


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


def has_distinct_tied_head(layout: Layout, model: TransformerModel, shapes: dict[str, tuple],
                           read: Callable[[str], Tensor]) -> bool:
    """Whether the checkpoint stores a tied head's weight with values of its own (transformers then unties)."""
    for name, source in tied_keys(model).items():
        head, embedding = layout.rules([name, source])
        if all(n in shapes for n in head.theirs + embedding.theirs):
            if [shapes[n] for n in head.theirs] != [shapes[n] for n in embedding.theirs]:
                return True
            stored = head.to_ours([read(n) for n in head.theirs], layout.config)
            if not torch.equal(stored, embedding.to_ours([read(n) for n in embedding.theirs], layout.config)):
                return True
    return False


def from_pretrained(path: str | Path, dtype: torch.dtype | str | None = None, *,
                    device: torch.device | str | None = None, revision: str | None = None,
                    checkpoint_activations: bool = False, quantize: str | None = None) -> TransformerModel:
    """Load a checkpoint (Hugging Face's or trilogy's own format) into the matching trilogy model, at the file's
    cost: the model is built on the meta device, every tensor name and shape is checked against the file
    before any memory is allocated, then each parameter is read from the file straight into place.

    The class follows config.json (``model_type`` and ``architectures``); weights come from model.safetensors,
    sharded safetensors with their index, or pytorch_model.bin (tensors only). A tokenizer.json beside the
    weights and a chat template come with the model as its ``tokenization`` (``model.tokenizer``,
    ``model.chat_template``; see ``chat_prompt``).

    A ``.gguf`` file (llama.cpp's) loads too: its metadata stands for config.json, each tensor is dequantised as
    it is read, and its tokenizer and chat template come from the metadata (``gguf_checkpoint``; needs the gguf
    package).

    Args:
        path: a checkpoint folder, a ``.gguf`` file, or a Hugging Face model name ("OWNER/NAME") found in the
            Hugging Face cache (``HF_HUB_CACHE``; downloaded into it when online and not there, never when
            ``HF_HUB_OFFLINE=1``).
        dtype: the parameters' dtype: None for float32 (whatever the file stores), a floating torch.dtype, or
            "auto" for the file's own (config.json's ``dtype``, else the first floating tensor's; a GGUF's first
            tensor's: float16 or bfloat16 for F16 or BF16, float32 for F32 and quantised blocks).
        device: where the parameters are put as they are read ("cpu", "cuda", "cuda:1", ...); default CPU.
        revision: a branch, tag or commit hash of a Hub model (default "main").
        checkpoint_activations: recompute each layer's activations in backward instead of keeping them
            (for training with less memory; see ``TransformerModel``).
        quantize: "int8" or "int4": the weights quantised for decoding on CPU after loading (``trilogy.quantize``,
            which says what is quantised); ``dtype`` then only sets what they are read as.
    Returns:
        The model, in eval mode.
    Raises:
        CheckpointError: unsupported model type or architecture, missing / unexpected / wrongly shaped
            tensors, unreadable files; the message says which and what was expected.
        FileNotFoundError: neither a folder nor a model in the Hugging Face cache (or on the Hub).
    """
    if is_gguf(path):
        if revision is not None:
            raise TrilogyError(f"revision={revision!r} selects a version of a Hugging Face model, but {path} is a "
                               "GGUF file")
        (config, family, architecture), stored, tokenization = open_gguf(Path(path))
        layout, config_file, config_source = Layout(config, family, architecture), Path(path), "its GGUF metadata"
    else:
        folder = resolve(path, revision)
        layout, config_file, config_source = read_layout(folder), folder / CONFIG, f"its {CONFIG}"
        stored = open_weights(folder)
        tokenization = Tokenization(read_tokenizer(folder), read_chat_template(folder))
    model = build_on_meta(layout.config, tokenization, checkpoint_activations)
    rules, expected, ignored = expected_tensors(layout, model)
    names = hf.current_names(list(stored.shapes), set(expected), layout.prefix)  # ours -> as stored
    shapes = {name: stored.shapes[original] for name, original in names.items()}

    def read(name: str) -> Tensor:
        return stored.read(names[name])

    if has_distinct_tied_head(layout, model, shapes, read):
        warnings.warn(f"{config_file} ties the output layer to the embeddings, but the weights hold a "
                      "different output layer; loaded untied, as transformers does", UserWarning, stacklevel=2)
        layout.config = layout.config.replace(tie_embeddings=False)
        model = build_on_meta(layout.config, tokenization, checkpoint_activations)
        rules, expected, ignored = expected_tensors(layout, model)
    check_tensors(shapes, expected, ignored, source=str(stored.file), config_source=config_source)
    target = resolve_dtype(dtype, layout.dtype, stored.dtypes)
    materialize(model, rules, stored, names, target, torch.device(device) if device is not None else torch.device("cpu"))
    return quantize_weights(model, quantize) if quantize is not None else model.eval()


def save_pretrained(model: TransformerModel, path: str | Path, format: str = "auto",
                    max_shard_size: int | str = "5GB") -> Path:
    """Write ``model`` to a folder: config.json, the weights and, when the model has them, tokenizer.json with
    a tokenizer_config.json for transformers' AutoTokenizer, and chat_template.jinja.

    The weights are written one tensor at a time (no second copy of the model is built): model.safetensors,
    or, past ``max_shard_size``, shards with the model.safetensors.index.json transformers reads.

    Args:
        max_shard_size: bytes per shard at most, an int or a string like "5GB" or "500MiB", as transformers
            reads it; a tensor larger than that gets a shard of its own.
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
    if inference_form(model) is not None:
        raise TrilogyError(f"this model is in a CPU inference form ({inference_form(model)}), which no checkpoint "
                           "format here stores: save it before quantize or prepack, and apply them after loading")
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
    tensors = checkpoint_tensors(rules, state, config)
    if hf_config is not None:
        tensors.update(hf.computed_tensors(layout.family, model))
        tensors = hf.without_prefix(tensors, layout.prefix, layout.architecture, layout.family)
        config_data: dict[str, Any] = {**hf_config, "dtype": str(state[rules[0].ours].dtype).removeprefix("torch.")}
    else:
        from .. import __version__

        config_data = {"model_type": NATIVE, "trilogy_version": __version__, **config.to_dict()}
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    write_weights(tensors, folder, max_shard_size)
    write_json(config_data, folder / CONFIG)
    template = model.chat_template
    if model.tokenizer is not None:
        write_tokenizer(model.tokenizer, folder, {"bos_token": config.bos_token_id, "eos_token": config.eos_token_id,
                                                  "pad_token": config.pad_token_id},
                        template.special_tokens if template is not None else {})
    if template is not None:
        write_chat_template(template, folder)
    return folder
