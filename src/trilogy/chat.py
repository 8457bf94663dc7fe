"""Chat prompts: a checkpoint's chat template, a Jinja2 program that turns a list of messages into the text the
model was trained on, rendered as transformers' ``apply_chat_template`` renders it (a sandboxed environment with
``trim_blocks`` and ``lstrip_blocks``, loop controls, the ``tojson`` filter, ``raise_exception`` and
``strftime_now``, and the tokenizer's special tokens such as ``bos_token`` as variables).

The rendered text already holds the special tokens the template writes, so it is encoded without adding more:
``tokenizer.encode(text, add_special_tokens=False)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from .errors import TrilogyError


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template and the special tokens it may refer to (``{"bos_token": "<s>", ...}``)."""

    source: str
    special_tokens: dict[str, str] = field(default_factory=dict)

    @cached_property
    def compiled(self):
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                    extensions=[jinja2.ext.loopcontrols])
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise_exception
        environment.globals["strftime_now"] = _strftime_now
        return environment.from_string(self.source)

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text of ``messages`` (``[{"role": "system" | "user" | "assistant", "content": ...}]``),
        ending with the assistant's turn opened when ``add_generation_prompt``.

        Raises:
            ValueError: the template refuses the messages (its ``raise_exception``) or cannot be compiled.
        """
        import jinja2

        try:
            return self.compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        tools=None, documents=None, **self.special_tokens)
        except jinja2.TemplateError as error:
            raise TrilogyError(f"the chat template failed: {error}") from None


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _raise_exception(message: str):
    import jinja2

    raise jinja2.TemplateError(message)


def messages_of(user: str, system: str | None = None) -> list[dict[str, str]]:
    """The message list of one user turn, after an optional system prompt."""
    turns = [{"role": "system", "content": system}] if system is not None else []
    return [*turns, {"role": "user", "content": user}]
