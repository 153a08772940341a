"""chat.py: the one chat-template → ids function gives the ids the three former copies
(`capture.encode.chat_ids`, `train.features.chat_ids`, `models.load._template_ids`) gave:
pinned on a fixed BPE tokenizer with stoplens' ChatML template, and equal to the literal
ChatML text's ids and to transformers' own rendering under another template."""

from __future__ import annotations

import copy

import pytest

from stoplens.errors import StoplensError
from stoplens.models.chat import chat_ids
from stoplens.models.tokenizer import train_bpe_tokenizer

CORPUS = [
    "Name a colour that the sky has at noon.",
    "The sky is blue at noon, and red at dusk.",
    "You are a helpful assistant.",
    "What is two plus two? Four.",
] * 8
CONVS = {
    "user": [{"role": "user", "content": "Name a colour. $STOP"}],
    "system_user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is two plus two?"},
    ],
    "chat": [
        {"role": "user", "content": "What is two plus two?"},
        {"role": "assistant", "content": "Four."},
        {"role": "user", "content": "The sky?"},
    ],
}
# Written by the three former implementations on main d4e09d4 (they agreed on every case).
_GEN = [1, 67, 295, 263, 296, 86, 201]  # <|im_start|>assistant\n
_SYS = [1, 85, 91, 85, 86, 71, 79, 201, 284, 259, 270, 259, 298, 290, 289, 78, 259, 295, 263]
_SYS += [296, 86, 16, 2, 201]
_Q = [1, 87, 85, 71, 84, 201, 283, 272, 275, 223, 294, 85, 275, 33, 2, 201]
BEFORE = {
    ("user", False): [1, 87, 85, 71, 84, 201, 281, 292, 259, 223, 287, 291, 16, 300, 2, 201],
    ("system_user", False): _SYS + _Q,
    ("chat", False): _Q + _GEN + [280, 16, 2, 201, 1, 87, 85, 71, 84, 201, 282, 278, 33, 2, 201],
}
for (_name, _), _ids in list(BEFORE.items()):
    BEFORE[(_name, True)] = _ids + _GEN

LLAMA2_STYLE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% elif m['role'] == 'system' %}{{ '<<SYS>>' + m['content'] + '<</SYS>>' }}"
    "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
)


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer(CORPUS, vocab_size=300)


@pytest.mark.parametrize(("name", "gen"), sorted(BEFORE))
def test_ids_are_those_of_the_former_implementations(tok, name, gen):
    assert len(tok) == 301
    assert chat_ids(tok, CONVS[name], add_generation_prompt=gen) == BEFORE[(name, gen)]


def test_default_ends_with_the_generation_prompt(tok):
    assert chat_ids(tok, CONVS["user"]) == BEFORE[("user", True)]


@pytest.mark.parametrize("name", sorted(CONVS))
def test_chatml_ids_are_the_literal_chatml_text(tok, name):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in CONVS[name])
    text += "<|im_start|>assistant\n"
    assert chat_ids(tok, CONVS[name]) == tok.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("gen", [True, False])
def test_another_template_renders_as_transformers_does(tok, gen):
    t = copy.deepcopy(tok)
    t.chat_template = LLAMA2_STYLE
    for msgs in CONVS.values():
        want = t.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen)
        want = want["input_ids"] if hasattr(want, "keys") else want
        got = chat_ids(t, msgs, add_generation_prompt=gen)
        assert got == [int(i) for i in want] and got != chat_ids(tok, msgs)


def test_no_template_is_a_clear_error(tok):
    t = copy.deepcopy(tok)
    t.chat_template = None
    with pytest.raises(StoplensError, match="no chat template"):
        chat_ids(t, CONVS["user"])
