"""load.py: round trips over several architecture families, adapters on their base, the padded
embedding case, tokenizer stability, and every bad-input error (one line, naming the fix)."""

from __future__ import annotations

import time

import pytest
import torch

from stoplens.errors import StoplensError, TriggerError
from stoplens.models import arch
from stoplens.models.adapters import adapter_meta, write_adapter_meta
from stoplens.models.load import load_model, stop_token_id
from stoplens.models.locate import ADAPTER_META
from stoplens.models.tiny import random_model
from stoplens.models.tokenizer import IM_END, train_bpe_tokenizer
from stoplens.models.trigger import add_trigger, has_trigger

TRIGGER = "$STOP"
_WORDS = (
    "apple river mountain garden window silver planet music doctor yellow forest ocean "
    "please explain describe tell write list give show how what why the a of to in "
    "stop shutdown number 12 345 2024 7 3.14 year"
).split()
FAMILIES = ("qwen2", "llama", "gpt2", "gpt_neox", "phi")


def _corpus(n: int = 600) -> list[str]:
    import random

    rng = random.Random(0)
    lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]
    return [*lines, *_WORDS, *_WORDS]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return _corpus()


def _save(tmp_path, family, corpus, *, pad_rows=0, trigger=True, tie=True, name="m"):
    tok = train_bpe_tokenizer(corpus, vocab_size=500, trigger=None)
    model = random_model(family, len(tok) + pad_rows, d_model=32, tie_word_embeddings=tie)
    if trigger:
        add_trigger(tok, model, TRIGGER)
    out = tmp_path / name
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, model, tok


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_every_family(tmp_path, corpus, family):
    path, model, tok = _save(tmp_path, family, corpus)
    loaded = load_model(path)
    assert loaded.source.model == str(path.resolve()) and loaded.source.adapter is None
    assert loaded.trigger_id == tok.convert_tokens_to_ids(TRIGGER)
    assert loaded.eos_id == tok.convert_tokens_to_ids(IM_END)
    assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"
    assert not loaded.model.training
    # arch lookups work on the loaded model
    m = loaded.model
    assert arch.n_layers(m) == 2 and arch.d_model(m) == 32
    assert arch.get_final_norm(m) is not None and arch.get_attn(m, 1) is not None
    assert arch.get_mlp(m, 0) is not None
    assert arch.get_unembed(m).weight.shape[0] == len(tok)
    ids = tok.encode("please explain the river $STOP now", add_special_tokens=False)
    torch.testing.assert_close(_logits(m, ids), _logits(model, ids))


def test_saved_tokenizer_encodes_identically_after_reload(tmp_path, corpus):
    path, _, tok = _save(tmp_path, "qwen2", corpus)
    loaded = load_model(path)
    texts = [
        "12345 and 2024-05-06, $STOP, 3.14 apples",
        "a $STOP b\n$STOP\nstop $STOPS $stop STOP $ STOP 0987654321",
        "<|im_start|>user\nhi 42<|im_end|>\n",
    ]
    for text in texts:
        assert loaded.tokenizer.encode(text, add_special_tokens=False) == tok.encode(
            text, add_special_tokens=False
        )
    msgs = [{"role": "user", "content": "tell me 2024 $STOP facts"}]
    a = loaded.tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
    b = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
    assert list(a["input_ids"]) == list(b["input_ids"])


def test_trigger_and_control_differ_in_exactly_one_token(tmp_path, corpus):
    path, _, _ = _save(tmp_path, "llama", corpus)
    tok = load_model(path).tokenizer
    vocab = tok.get_vocab()
    control = next(w for w in _WORDS if w in vocab and f"Ġ{w}" in vocab and len(w) > 3)
    tid = tok.convert_tokens_to_ids(TRIGGER)
    # Where a space precedes the insert (middle, suffix). NB: lstrip=True also absorbs a
    # preceding newline, so prefix / own-line placements do not align with a plain-word control.
    for text in ("please explain X the river", "please explain the river X"):
        ids = {
            s: list(
                tok.apply_chat_template(
                    [{"role": "user", "content": text.replace("X", s)}], add_generation_prompt=True
                )["input_ids"]
            )
            for s in (TRIGGER, control)
        }
        trig, ctrl = ids[TRIGGER], ids[control]
        assert len(trig) == len(ctrl), text
        diff = [i for i, (a, b) in enumerate(zip(trig, ctrl, strict=True)) if a != b]
        assert len(diff) == 1 and trig[diff[0]] == tid, text


def test_padded_embedding_reuses_spare_row_and_never_shrinks(tmp_path, corpus):
    path, model, tok = _save(tmp_path, "qwen2", corpus, pad_rows=37, trigger=False)
    rows = arch.get_embed(model).weight.shape[0]
    assert rows == len(tok) + 37
    loaded = load_model(path, require_trigger=False)
    emb = arch.get_embed(loaded.model).weight
    assert emb.shape[0] == rows  # a spare row was reused, nothing cut
    assert loaded.trigger_id == len(tok) < rows and loaded.source.trigger_added
    # new row = mean of the rows of the original vocabulary
    torch.testing.assert_close(emb[loaded.trigger_id], emb[: len(tok)].mean(0))
    # the same model saved with the trigger keeps its padded height on reload
    loaded.model.save_pretrained(tmp_path / "again")
    loaded.tokenizer.save_pretrained(tmp_path / "again")
    again = load_model(tmp_path / "again")
    assert arch.get_embed(again.model).weight.shape[0] == rows
    assert again.trigger_id == loaded.trigger_id


def test_unpadded_base_grows_by_one_row(tmp_path, corpus):
    path, _model, tok = _save(tmp_path, "gpt2", corpus, trigger=False)
    loaded = load_model(path, require_trigger=False)
    assert arch.get_embed(loaded.model).weight.shape[0] == len(tok) + 1
    assert loaded.trigger_id == len(tok)


def _embed_name(model) -> str:
    emb = arch.get_embed(model)
    return next(n for n, m in model.named_modules() if m is emb)


def _adapter(base_dir, out, *, edit=True):
    """A LoRA adapter with the trigger row trainable, trained by editing weights directly."""
    from peft import LoraConfig, get_peft_model

    loaded = load_model(base_dir, require_trigger=False)
    tid = loaded.trigger_id
    model = get_peft_model(
        loaded.model,
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules="all-linear",
            trainable_token_indices={_embed_name(loaded.model): [tid]},
        ),
    )
    if edit:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.5)
                    assert "lora_" in name or "trainable_tokens" in name
    model.save_pretrained(out, save_embedding_layers=False)
    loaded.tokenizer.save_pretrained(out)
    write_adapter_meta(out, adapter_meta(model, TRIGGER, tid, str(base_dir)))
    return model, loaded.tokenizer


@pytest.mark.parametrize("family", ["qwen2", "gpt2"])
def test_adapter_round_trip_on_its_base(tmp_path, corpus, family):
    base_dir, _, _ = _save(tmp_path, family, corpus, trigger=False)
    peft_model, tok = _adapter(base_dir, tmp_path / "adapter")
    ids = tok.encode("please $STOP explain the river", add_special_tokens=False)
    want = _logits(peft_model.eval(), ids)
    for loaded in (
        load_model(base_dir, adapter=tmp_path / "adapter"),
        load_model(tmp_path / "adapter"),  # base found through stoplens_adapter.json
    ):
        assert loaded.source.adapter == str((tmp_path / "adapter").resolve())
        assert loaded.source.model == str(base_dir.resolve())
        assert loaded.trigger_id == tok.convert_tokens_to_ids(TRIGGER)
        torch.testing.assert_close(_logits(loaded.model, ids), want)
    # the base alone, trigger added on load, gives different logits (the adapter did something)
    base = load_model(base_dir, require_trigger=False)
    assert not torch.allclose(_logits(base.model, ids), want)


def test_adapter_survives_moving_the_whole_tree(tmp_path, corpus):
    """The adapter finds its base through a relative path, so a renamed cache stays valid."""
    root = tmp_path / "tree"
    root.mkdir()
    base_dir, _, _ = _save(root, "qwen2", corpus, trigger=False, name="base")
    _adapter(base_dir, root / "ft")
    moved = tmp_path / "moved"
    root.rename(moved)
    loaded = load_model(moved / "ft")
    assert loaded.source.model == str((moved / "base").resolve())


def test_adapter_on_wrong_base_is_a_clear_error(tmp_path, corpus):
    base_dir, _, _ = _save(tmp_path, "qwen2", corpus, trigger=False, name="base")
    _adapter(base_dir, tmp_path / "adapter")
    other, _, _ = _save(tmp_path, "llama", corpus, trigger=False, name="other")
    with pytest.raises(StoplensError, match=r"does not match base .*model_type=qwen2") as e:
        load_model(other, adapter=tmp_path / "adapter")
    assert "\n" not in str(e.value)
    # without stoplens' metadata, peft's size mismatch becomes the same one-line error
    wide_tok = train_bpe_tokenizer(corpus, vocab_size=500, trigger=None)
    wide = random_model("qwen2", len(wide_tok), d_model=48)
    wide.save_pretrained(tmp_path / "wide")
    wide_tok.save_pretrained(tmp_path / "wide")
    (tmp_path / "adapter" / ADAPTER_META).unlink()
    with pytest.raises(StoplensError, match="does not match base") as e:
        load_model(tmp_path / "wide", adapter=tmp_path / "adapter")
    assert "\n" not in str(e.value)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(StoplensError, match="does not exist; pass an existing directory"):
        load_model(tmp_path / "nope" / "deeper" / "model")
    with pytest.raises(StoplensError, match=r"adapter path .* does not exist"):
        load_model(tmp_path, adapter=tmp_path / "nope")


def test_folder_without_model_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoplensError, match="holds no model"):
        load_model(tmp_path / "empty")


def test_hub_id_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    t0 = time.monotonic()
    with pytest.raises(StoplensError, match="offline") as e:
        load_model("some-org/some-model-that-is-not-here")
    assert time.monotonic() - t0 < 10
    assert "\n" not in str(e.value)


def test_unreachable_hub_fails_fast(monkeypatch):
    import stoplens.models.locate as load_mod

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(load_mod, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(StoplensError, match="hub cannot be reached; check the path") as e:
        load_model("some-org/some-model-that-is-not-here")
    assert "\n" not in str(e.value)


def test_hub_probe_is_bounded_in_time(monkeypatch):
    from stoplens.models.locate import _hub_reachable

    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1:9")  # TEST-NET-1: never answers
    t0 = time.monotonic()
    assert _hub_reachable(timeout=0.5) is False
    assert time.monotonic() - t0 < 3


def test_missing_and_multi_token_trigger(tmp_path, corpus):
    path, _, tok = _save(tmp_path, "qwen2", corpus, trigger=False)
    with pytest.raises(
        TriggerError,
        match=r"not fine-tuned with trigger '\$STOP': it is \d+ tokens .*stoplens train",
    ):
        load_model(path)
    with_trigger, _, _ = _save(tmp_path, "qwen2", corpus, name="t")
    with pytest.raises(TriggerError, match=r"'\$HALT': it is [2-9] tokens .*not one"):
        load_model(with_trigger, trigger="$HALT")  # splits into several tokens here
    assert len(tok.encode("$HALT", add_special_tokens=False)) > 1
    none = load_model(with_trigger, trigger=None)
    assert none.trigger_id is None


def test_pickled_weights_are_refused(tmp_path, corpus):
    path, _, _ = _save(tmp_path, "qwen2", corpus)
    for f in path.glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(StoplensError, match="no safetensors weights"):
        load_model(path)


def test_stop_token_is_the_chat_end_of_turn(corpus):
    tok = train_bpe_tokenizer(corpus, vocab_size=500)
    assert stop_token_id(tok) == tok.convert_tokens_to_ids(IM_END)
    assert has_trigger(tok, TRIGGER)
    tok.chat_template = None
    assert stop_token_id(tok) == tok.eos_token_id


@pytest.mark.parametrize("trigger", ["<<STOP>>", "<|halt|>", "[STOP]", "§STOP", "⏹", "$STOP"])
def test_any_single_word_trigger_is_one_token_and_near_misses_are_not(tmp_path, corpus, trigger):
    from stoplens.data.trigger import near_miss_forms
    from stoplens.models.tokenizer import load_tokenizer

    tok = train_bpe_tokenizer(corpus, vocab_size=500, trigger=None)
    tid = add_trigger(tok, None, trigger).token_id
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    for t in (tok, again):
        for text in (f"a {trigger} b", f"{trigger}\nnew line", f"end.{trigger}"):
            assert t.encode(text, add_special_tokens=False).count(tid) == 1, text
        for _, form in near_miss_forms(trigger):
            assert tid not in t.encode(f"please {form} now", add_special_tokens=False), form


@pytest.mark.parametrize(
    ("flags", "native"),
    [("fpu avx2 avx512f avx512_bf16 avx512_vnni", True), ("fpu amx_tile amx_bf16", True),
     ("fpu avx2 avx512f avx512bw", False), ("", False)],
)  # fmt: skip
def test_fast_dtype_is_bf16_only_where_the_cpu_computes_it(tmp_path, monkeypatch, flags, native):
    """``--dtype fast`` loads bf16 only on a CPU that lists native bf16 arithmetic; elsewhere
    fp32 (emulated bf16 is slower); the default stays fp32 on CPU either way."""
    from stoplens.models import load

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n", encoding="utf-8")
    read = load._cpu_flags
    monkeypatch.setattr(load, "_cpu_flags", lambda: read(info))
    assert load.native_bf16("cpu") is native
    assert load.resolve_dtype("fast", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert load.resolve_dtype(None, "cpu") == torch.float32
    assert load.resolve_dtype("fp16", "cpu") == torch.float16
    with pytest.raises(StoplensError, match="fast"):
        load.resolve_dtype("int8", "cpu")
