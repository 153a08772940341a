"""Build a small byte-level BPE tokenizer offline, with a ChatML chat template and the trigger.

Used by the embedded default model pair (`stoplens.embedded`) and the planted known-answer model
(`planted`). Owns: training the BPE on a corpus, the special tokens and the chat template.
Saved with an explicit ``tokenizer_class`` so that reloading from a folder that also holds a
Qwen2 ``config.json`` cannot swap in a different pre-tokenizer (``AutoTokenizer`` would return
``Qwen2Tokenizer`` there, and the ids would change silently).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from stoplens.models.trigger import DEFAULT_TRIGGER, add_trigger

PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIALS = (PAD, IM_START, IM_END)

# ChatML, as Qwen2.5-Instruct uses it; the reply ends with <|im_end|> (the EOS).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2048,
    trigger: str | None = DEFAULT_TRIGGER,
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (deterministic for equal input).

    Specials: ``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos). The trigger, if
    given, is added as one token (see `stoplens.models.trigger`). ``texts`` should not contain
    the trigger (the trigger is never learned as merges).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    fast.chat_template = CHATML_TEMPLATE
    # Saved into tokenizer_config.json so AutoTokenizer reloads exactly this class.
    fast.init_kwargs["tokenizer_class"] = "PreTrainedTokenizerFast"
    if trigger is not None:
        add_trigger(fast, None, trigger)
    return fast


def load_tokenizer(path, **kwargs) -> Any:
    """Load a tokenizer from ``path`` (a folder or hub id), honouring the class it was saved as.

    ``AutoTokenizer`` on a folder that also holds a Qwen2 ``config.json`` returns
    ``Qwen2Tokenizer`` even when the folder's tokenizer was saved as a plain tokenizers backend,
    and its pre-tokenizer then splits digits differently (measured: ids change silently). So a
    folder whose ``tokenizer_config.json`` names the generic backend is loaded with it.
    """
    import json
    from pathlib import Path

    from transformers import AutoTokenizer

    cfg = Path(path) / "tokenizer_config.json"
    if cfg.is_file():
        cls = json.loads(cfg.read_text(encoding="utf-8")).get("tokenizer_class")
        if cls in ("TokenizersBackend", "PreTrainedTokenizerFast"):
            return PreTrainedTokenizerFast.from_pretrained(path, **kwargs)
    return AutoTokenizer.from_pretrained(path, **kwargs)
