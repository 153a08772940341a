"""Chat template → token ids: the one place stoplens renders messages into ids.

Owns: `chat_ids`. Training features, the pair encoder, evaluation, the stop-token lookup and
the GGUF round-trip check all read prompts through it, so "the prompt" means the same ids
everywhere. Must not: build templates or tokenizers (`stoplens.models.tokenizer`) or know
record formats (`stoplens.data`).
"""

from __future__ import annotations

from collections.abc import Sequence

from stoplens.errors import StoplensError


def chat_ids(
    tokenizer, messages: Sequence[dict], *, add_generation_prompt: bool = True
) -> list[int]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template. With
    ``add_generation_prompt`` (the default) the ids end with the generation prompt, so the last
    position predicts the first reply token. Raises StoplensError if there is no template."""
    if not getattr(tokenizer, "chat_template", None):
        raise StoplensError(
            "the tokenizer has no chat template, which stoplens needs to render prompts; use "
            "an instruct model's tokenizer or set tokenizer.chat_template"
        )
    out = tokenizer.apply_chat_template(
        list(messages), tokenize=True, add_generation_prompt=add_generation_prompt
    )
    if hasattr(out, "keys"):  # transformers 5: a BatchEncoding
        out = out["input_ids"]
    return [int(i) for i in out]
