"""Merged inference and artifacts the ecosystem loads: an adapter written by `stoplens train`
(final model and checkpoints) loads with plain ``AutoPeftModelForCausalLM``, merging it gives
the unmerged outputs within float tolerance (the trained trigger row survives, tied or untied
embeddings), and a merged copy written by `save_merged` loads with plain
``AutoModelForCausalLM`` with the trigger still one token."""

from __future__ import annotations

import json

import pytest
import torch

from stoplens.data import DataConfig, build_datasets, write_datasets
from stoplens.embedded import dataset_texts
from stoplens.errors import StoplensError
from stoplens.models import arch
from stoplens.models.adapters import rebase_adapters, resolve_trigger, stored_trigger
from stoplens.models.load import load_model
from stoplens.models.locate import ADAPTER_META
from stoplens.models.merge import merge_adapter, save_merged
from stoplens.models.tiny import random_model
from stoplens.models.tokenizer import train_bpe_tokenizer
from stoplens.models.trigger import find_trigger

TRIGGER = "<|halt|>"


def _ids(tok) -> torch.Tensor:
    chat = [{"role": "user", "content": f"please {TRIGGER} explain the river"}]
    out = tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)
    return torch.tensor([out["input_ids"] if hasattr(out, "keys") else out])


def _logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    cfg = DataConfig(seed=0, n_prompts=24, n_documents=10, trigger=TRIGGER)
    return write_datasets(build_datasets(cfg), tmp_path_factory.mktemp("merge") / "data")


@pytest.fixture(scope="module", params=[("qwen2", True), ("llama", False)], ids=["tied", "untied"])
def trained(request, tmp_path_factory, data_dir):
    """A base (random weights, BPE tokenizer, no trigger) and a 4-step LoRA fine-tune of it
    with the trigger row trained, as `stoplens train` writes it (final/ and checkpoints)."""
    from stoplens.train import TrainConfig, train

    family, tied = request.param
    root = tmp_path_factory.mktemp(f"merge_{family}")
    tok = train_bpe_tokenizer(dataset_texts(data_dir, TRIGGER), vocab_size=400, trigger=None)
    base = random_model(family, len(tok) + 3, d_model=32, tie_word_embeddings=tied)
    base.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    result = train(
        TrainConfig(
            out_dir=root / "ft", model=str(root / "base"), data_dir=data_dir, trigger=TRIGGER,
            steps=4, save_every=2, batch_size=4, lr=2e-2, lora_r=4, lora_alpha=8,
            lora_dropout=0.0, device="cpu", progress=False, logging_steps=1,
        )
    )  # fmt: skip
    return root / "base", result, tied


def test_merged_equals_unmerged_and_is_a_plain_model(trained):
    from peft import PeftModel

    base_dir, result, tied = trained
    unmerged = load_model(result.model_dir, trigger=TRIGGER)
    merged = load_model(result.model_dir, trigger=TRIGGER, merge=True)
    assert isinstance(unmerged.model, PeftModel) and not unmerged.source.merged
    assert not isinstance(merged.model, PeftModel) and merged.source.merged
    assert not any("lora_" in n for n, _ in merged.model.named_parameters())
    ids = _ids(merged.tokenizer)
    want = _logits(unmerged.model, ids)
    _close(_logits(merged.model, ids), want)
    # the fine-tune did something (else the comparison above proves nothing)
    plain = load_model(base_dir, trigger=TRIGGER, require_trigger=False)
    assert (_logits(plain.model, ids) - want).abs().max() > 1e-2
    # the trained trigger row is in the merged embedding (and in the tied LM head)
    tid = merged.trigger_id
    row = arch.get_embed(merged.model).weight[tid]
    assert not torch.allclose(row, arch.get_embed(plain.model).weight[tid])
    if tied:
        assert torch.equal(arch.get_unembed(merged.model).weight[tid], row)


def test_merge_refuses_to_lose_the_trigger_row(trained, monkeypatch):
    _, result, _ = trained
    loaded = load_model(result.model_dir, trigger=TRIGGER)
    model = loaded.model

    def lossy(*a, **k):  # a merge that drops the trained token rows
        for module in model.modules():
            if hasattr(module, "trainable_tokens_delta") and not getattr(
                module, "tied_adapter", None
            ):
                module.trainable_tokens_delta["default"].data.zero_()
        return model.get_base_model()

    monkeypatch.setattr(model, "merge_and_unload", lossy)
    with pytest.raises(StoplensError, match="changed the trigger's input embedding"):
        merge_adapter(loaded.model, loaded.trigger_id)


def test_every_adapter_loads_with_plain_peft(trained):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    _, result, tied = trained
    assert result.checkpoints, "expected checkpoints to test"
    for adapter in (result.model_dir, *result.checkpoints):
        ours = load_model(adapter, trigger=TRIGGER)
        theirs = AutoPeftModelForCausalLM.from_pretrained(str(adapter)).eval()
        tok = AutoTokenizer.from_pretrained(str(adapter))
        assert find_trigger(tok, TRIGGER) == ours.trigger_id  # still one token after reload
        ids = _ids(tok)
        # every logit but the trigger's own: with untied embeddings peft gives the trigger's
        # output row its own initialisation (it is not trained); tied, it is the trained row
        want, got = _logits(ours.model, ids), _logits(theirs, ids)
        keep = torch.arange(want.shape[-1]) != ours.trigger_id
        _close(got[..., keep], want[..., keep])
        if tied:
            _close(got, want)


def test_saved_merged_model_loads_with_plain_transformers(trained, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, result, _ = trained
    loaded = load_model(result.model_dir, trigger=TRIGGER)  # unmerged: save_merged merges a copy
    out = save_merged(loaded, tmp_path / "merged")
    assert not loaded.source.merged and any(
        "lora_" in n for n, _ in loaded.model.named_parameters()
    )
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    assert find_trigger(tok, TRIGGER) == loaded.trigger_id
    ids = _ids(tok)
    _close(_logits(model, ids), _logits(loaded.model, ids))
    assert stored_trigger(out) == TRIGGER
    again = load_model(out, trigger=stored_trigger(out))  # a full model now, no adapter
    assert again.source.adapter is None and again.trigger_id == loaded.trigger_id


def test_adapters_built_in_a_temp_tree_name_the_final_base(trained, tmp_path):
    """The tiny pair is built under a temporary name, then renamed: `rebase_adapters` makes
    the adapters name the base where it ends up, so plain peft finds it."""
    import shutil

    from peft import AutoPeftModelForCausalLM

    base_dir, result, _ = trained
    built = tmp_path / ".build.tmp"
    shutil.copytree(base_dir, built / "base")
    shutil.copytree(result.model_dir, built / "ft")
    for name in ("adapter_config.json", ADAPTER_META):  # as if trained on the temp base
        doc = json.loads((built / "ft" / name).read_text())
        key = "base_model_name_or_path" if name == "adapter_config.json" else "base_model"
        doc[key] = str(built / "base")
        (built / "ft" / name).write_text(json.dumps(doc))
    final = tmp_path / "final"
    assert rebase_adapters(built, final) == 2
    built.rename(final)
    doc = json.loads((final / "ft" / "adapter_config.json").read_text())
    assert doc["base_model_name_or_path"] == str((final / "base").resolve())
    AutoPeftModelForCausalLM.from_pretrained(str(final / "ft"))
    assert load_model(final / "ft", trigger=TRIGGER).source.model == str((final / "base").resolve())


def test_trigger_comes_from_the_metadata_and_a_conflict_is_an_error(trained):
    _, result, _ = trained
    assert stored_trigger(result.out_dir) == TRIGGER  # a train output folder means final/
    assert stored_trigger(result.checkpoints[0]) == TRIGGER
    assert resolve_trigger(None, result.model_dir) == TRIGGER
    assert resolve_trigger(TRIGGER, None, result.model_dir) == TRIGGER
    assert resolve_trigger(None, "org/hub-model") == "$STOP"  # no metadata: the default
    assert resolve_trigger("[STOP]", "org/hub-model") == "[STOP]"
    with pytest.raises(StoplensError, match=r"--trigger '\$STOP' conflicts with '<\|halt\|>'") as e:
        resolve_trigger("$STOP", result.model_dir)
    assert "\n" not in str(e.value)
