"""The small files of a checkpoint folder: config.json, tokenizer.json, tokenizer_config.json, and which
weights file the folder holds (``stored`` reads the weights, ``shards`` writes them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..chat import ChatTemplate
from ..errors import CheckpointError, CheckpointNotFound

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS_INDEX, BIN, BIN_INDEX)  # in order of preference
CONFIG, TOKENIZER, TOKENIZER_CONFIG = "config.json", "tokenizer.json", "tokenizer_config.json"
CHAT_TEMPLATE, CHAT_TEMPLATE_JSON, SPECIAL_TOKENS_MAP = "chat_template.jinja", "chat_template.json", "special_tokens_map.json"
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def checkpoint_folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise CheckpointNotFound(f"no checkpoint folder at {folder}")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder; a checkpoint is a folder holding config.json and the "
                              "weights")
    return folder


def read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise CheckpointError(f"{file} is missing")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{file} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} must hold a JSON object, found {type(data).__name__}")
    return data


def write_json(data: dict[str, Any], file: Path) -> None:
    write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", file)


def write_text(text: str, file: Path) -> None:
    """Write ``text`` as a new file: one already at ``file`` is unlinked first, so that the other names of a hard
    link (a training run's published checkpoint) keep their content. A full disk raises OSError (ENOSPC)."""
    file.unlink(missing_ok=True)
    file.write_text(text, encoding="utf-8")


def weights_file(folder: Path) -> Path:
    """The weights file (or shard index) of a checkpoint folder."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
    raise CheckpointError(f"{folder} holds no weights: looked for {', '.join(WEIGHT_FILES)}; found {present}")


def read_tokenizer(folder: Path):
    """The ``tokenizers.Tokenizer`` of tokenizer.json in the folder, or None when there is none."""
    file = folder / TOKENIZER
    if not file.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(file))
    except Exception as error:
        raise CheckpointError(f"{file} cannot be read by the tokenizers library ({error})") from None


def write_tokenizer(tokenizer, folder: Path, special_ids: dict[str, int | None],
                    special_tokens: dict[str, str]) -> None:
    """tokenizer.json, plus the tokenizer_config.json that lets transformers' AutoTokenizer read it and know the
    special tokens: ``special_tokens`` like ``{"bos_token": "<s>"}``, then ``special_ids`` like
    ``{"eos_token": 2}`` (the config's ids win)."""
    write_text(tokenizer.to_str(pretty=True), folder / TOKENIZER)  # as tokenizer.save, with an OSError on failure
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", **special_tokens}
    for name, token_id in special_ids.items():
        token = tokenizer.id_to_token(token_id) if token_id is not None else None
        if token is not None:
            settings[name] = token
    write_json(settings, folder / TOKENIZER_CONFIG)


def read_chat_template(folder: Path) -> ChatTemplate | None:
    """The chat template of a folder, where transformers looks for it: chat_template.jinja, chat_template.json,
    then tokenizer_config.json's ``chat_template`` (a string, or named templates of which "default" is used);
    with the special tokens tokenizer_config.json (or special_tokens_map.json) names. None when there is none."""
    config = read_json(folder / TOKENIZER_CONFIG) if (folder / TOKENIZER_CONFIG).is_file() else {}
    source: Any
    if (folder / CHAT_TEMPLATE).is_file():
        source = (folder / CHAT_TEMPLATE).read_text()
    elif (folder / CHAT_TEMPLATE_JSON).is_file():
        source = read_json(folder / CHAT_TEMPLATE_JSON).get("chat_template")
    else:
        source = config.get("chat_template")
    if isinstance(source, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        source = {entry.get("name"): entry.get("template") for entry in source}.get("default")
    if not isinstance(source, str):
        return None
    if not any(name in config for name in SPECIAL_TOKENS) and (folder / SPECIAL_TOKENS_MAP).is_file():
        config = read_json(folder / SPECIAL_TOKENS_MAP)
    tokens = {name: config[name].get("content") if isinstance(config[name], dict) else config[name]
              for name in SPECIAL_TOKENS if config.get(name) is not None}
    return ChatTemplate(source, {name: token for name, token in tokens.items() if isinstance(token, str)})


def write_chat_template(template: ChatTemplate, folder: Path) -> None:
    (folder / CHAT_TEMPLATE).write_text(template.source)
