"""Chat prompts: a tiny Llama with a ChatML-style template written here renders, tokenizes and answers as
transformers' ``apply_chat_template`` and ``generate`` do, from tokenizer_config.json or chat_template.jinja."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import trilogy
from trilogy.cli import main

from .convert_helpers import perturb

# the newlines after block tags are dropped by trim_blocks, the indentation before them by lstrip_blocks
TEMPLATE = """{{ bos_token }}
{% for message in messages %}
    {% if message['role'] not in ['system', 'user', 'assistant'] %}
        {{ raise_exception('unknown role ' + message['role']) }}
    {% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'] | trim }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""
SPECIALS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " where is the cat? "}]


def write_checkpoint(folder, template_in: str) -> None:
    """A tiny Llama, a byte-level BPE tokenizer whose post-processor adds <s> (so encoding the rendered text
    with special tokens added would double it), and the template in tokenizer_config.json or its own file."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=SPECIALS)
    tokenizer.train_from_iterator(["the cat sat on the mat", "where is the dog?", "be brief, user"] * 20, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "<|im_end|>"}
    if template_in == "tokenizer_config.json":
        settings["chat_template"] = TEMPLATE
    else:
        (folder / "chat_template.jinja").write_text(TEMPLATE)
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=48,
                                         num_hidden_layers=2, num_attention_heads=4, bos_token_id=0,
                                         eos_token_id=3, pad_token_id=3))
    perturb(model, std=0.3)
    model.save_pretrained(folder)


@pytest.fixture(scope="module", params=["tokenizer_config.json", "chat_template.jinja"])
def folder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat")
    write_checkpoint(folder, request.param)
    return folder


def transformers_ids(tokenizer, messages) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    return list(ids["input_ids"] if not isinstance(ids, list) else ids)


def test_prompt_is_the_one_transformers_renders(folder):
    model = trilogy.from_pretrained(folder)
    theirs = AutoTokenizer.from_pretrained(folder)
    text = model.chat_prompt(MESSAGES)
    assert text == theirs.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text == ("<s>\n<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nwhere is the cat?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert model.tokenizer.encode(text, add_special_tokens=False).ids == transformers_ids(theirs, MESSAGES)
    assert not model.chat_prompt(MESSAGES, add_generation_prompt=False).endswith("assistant\n")


def test_cli_chat_answers_as_transformers_generates(folder, capsys):
    prompt = transformers_ids(AutoTokenizer.from_pretrained(folder), MESSAGES)
    reference = LlamaForCausalLM.from_pretrained(folder).eval()
    expected = reference.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[0, len(prompt):]
    argv = ["generate", str(folder), "--chat", MESSAGES[1]["content"], "--system", "Be brief.",
            "--max-new-tokens", "8"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prompt_ids"] == prompt and result["new_ids"] == expected.tolist()
    assert main(argv) == 0
    reply = trilogy.from_pretrained(folder).tokenizer.decode(expected.tolist(), skip_special_tokens=True)
    assert capsys.readouterr().out == reply + "\n"  # the reply alone, not the prompt


def test_saving_keeps_the_template(folder, tmp_path):
    trilogy.from_pretrained(folder).save_pretrained(tmp_path)
    assert trilogy.from_pretrained(tmp_path).chat_prompt(MESSAGES) == trilogy.from_pretrained(folder).chat_prompt(MESSAGES)
    assert AutoTokenizer.from_pretrained(tmp_path).apply_chat_template(
        MESSAGES, tokenize=False, add_generation_prompt=True) == trilogy.from_pretrained(folder).chat_prompt(MESSAGES)


def test_template_errors_are_value_errors(folder):
    with pytest.raises(ValueError, match="the chat template failed: unknown role tool"):
        trilogy.from_pretrained(folder).chat_prompt([{"role": "tool", "content": "x"}])


def test_no_template_is_a_one_line_error(tmp_path, capsys):
    write_checkpoint(tmp_path, "chat_template.jinja")
    (tmp_path / "chat_template.jinja").unlink()
    capsys.readouterr()  # transformers progress bars
    with pytest.raises(ValueError, match="has no chat template"):
        trilogy.from_pretrained(tmp_path).chat_prompt(MESSAGES)
    for argv, message in ((["--chat", "hi"], "has no chat template"), (["--prompt", "hi", "--system", "x"],
                                                                        "--system goes with --chat")):
        assert main(["generate", str(tmp_path), *argv]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and message in err and "Traceback" not in err
