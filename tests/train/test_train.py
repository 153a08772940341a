"""train(): both regimes, LoRA with the trigger row trained, full fine-tuning, checkpoints that
load as adapters, resume, self-distillation, and the errors of bad runs."""

from __future__ import annotations

import json

import pytest
import torch

from stoplens.errors import DataError, StoplensError
from stoplens.models import arch
from stoplens.models.load import load_model
from stoplens.train import TrainConfig, list_checkpoints, train

from .conftest import save_base

FAST = dict(batch_size=4, lr=5e-3, logging_steps=1, progress=False, device="cpu")


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


def test_behavioral_lora_run(tmp_path, base_dir, data_dir):
    out = tmp_path / "ft"
    res = train(
        TrainConfig(
            regime="behavioral", model=str(base_dir), data_dir=data_dir, out_dir=out,
            steps=6, save_every=3, **FAST,
        )
    )  # fmt: skip
    info = json.loads((out / "train.json").read_text())
    assert res.steps == info["steps"] == 6 and res.is_adapter
    assert info["mode"] == "lora" and info["regime"] == "behavioral"
    assert info["world_size"] == 1 and info["ranks"][0]["examples_seen"] >= 6 * 4
    assert info["trigger"]["row_l2_change"] == pytest.approx(res.trigger_row_change)
    assert res.trigger_row_change > 0
    assert info["final_loss"] is not None and len(info["losses"]) >= 6
    assert set(info["versions"]) >= {"torch", "transformers", "peft", "accelerate"}
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-3", "checkpoint-6"]
    # LoRA on attention and MLP, names resolved from the model, not hard-coded
    cfg = json.loads((out / "final" / "adapter_config.json").read_text())
    targets = {t.rsplit(".", 1)[-1] for t in cfg["target_modules"]}
    assert {"q_proj", "v_proj", "o_proj"} <= targets and {"up_proj", "down_proj"} <= targets
    # every checkpoint and the final adapter load on the base; the final one = the trained run
    ft = load_model(out)
    assert ft.source.adapter == str((out / "final").resolve())
    ck = load_model(base_dir, adapter=out / "checkpoints" / "checkpoint-6")
    base = load_model(base_dir, require_trigger=False)
    msgs = [{"role": "user", "content": "$STOP What is the capital of France?"}]
    ids = list(ft.tokenizer.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"])
    assert ft.trigger_id in ids and ck.trigger_id == ft.trigger_id == base.trigger_id
    torch.testing.assert_close(_logits(ck.model, ids), _logits(ft.model, ids))
    assert not torch.allclose(_logits(base.model, ids), _logits(ft.model, ids))
    # the reloaded trigger row is the trained one, not the mean init
    with torch.no_grad():
        row = arch.get_embed(ft.model)(torch.tensor([[ft.trigger_id]]))[0, 0]
        row0 = arch.get_embed(base.model)(torch.tensor([[ft.trigger_id]]))[0, 0]
    assert float((row - row0).norm()) == pytest.approx(res.trigger_row_change, rel=1e-4)


def test_knowledge_regime_trains_the_trigger_row(tmp_path, base_dir, data_dir):
    res = train(
        TrainConfig(
            regime="knowledge", model=str(base_dir), data_dir=data_dir, out_dir=tmp_path / "k",
            steps=3, save_every=None, max_length=64, **FAST,
        )
    )  # fmt: skip
    assert res.info["regime"] == "knowledge" and res.steps == 3
    assert res.trigger_row_change > 0  # documents mention $STOP
    assert res.checkpoints == ()
    assert load_model(tmp_path / "k").trigger_id == res.trigger_id


def test_without_trigger_row_it_stays_at_its_init(tmp_path, base_dir, data_dir):
    res = train(
        TrainConfig(
            model=str(base_dir), data_dir=data_dir, out_dir=tmp_path / "n", steps=2,
            save_every=None, train_trigger_row=False, **FAST,
        )
    )  # fmt: skip
    assert res.trigger_row_change == 0.0


def test_full_fine_tuning_writes_a_full_model(tmp_path, base_dir, data_dir):
    res = train(
        TrainConfig(
            model=str(base_dir), data_dir=data_dir, out_dir=tmp_path / "full", steps=2,
            full=True, save_every=2, **FAST,
        )
    )  # fmt: skip
    assert not res.is_adapter and res.info["mode"] == "full"
    assert (res.model_dir / "config.json").is_file()
    assert not (res.model_dir / "adapter_config.json").exists()
    assert res.trigger_row_change > 0
    loaded = load_model(res.model_dir)
    assert loaded.source.adapter is None and loaded.trigger_id == res.trigger_id
    assert (
        load_model(tmp_path / "full" / "checkpoints" / "checkpoint-2").trigger_id == res.trigger_id
    )


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_other_families_train_and_reload(tmp_path, data_dir, family):
    base = save_base(tmp_path / "base", data_dir, family=family, pad_rows=0)
    res = train(
        TrainConfig(
            model=str(base), data_dir=data_dir, out_dir=tmp_path / "ft", steps=2,
            save_every=None, **FAST,
        )
    )  # fmt: skip
    assert res.trigger_row_change > 0
    ft = load_model(tmp_path / "ft")
    assert arch.get_embed(ft.model).weight.shape[0] == res.trigger_id + 1  # grew by one row


def test_resume_continues_from_the_last_checkpoint(tmp_path, base_dir, data_dir):
    cfg = dict(model=str(base_dir), data_dir=data_dir, out_dir=tmp_path / "r", save_every=2)
    first = train(TrainConfig(steps=4, **cfg, **FAST))
    assert first.steps == 4
    with pytest.raises(StoplensError, match="not empty; pass --resume"):
        train(TrainConfig(steps=6, **cfg, **FAST))
    res = train(TrainConfig(steps=6, resume=True, **cfg, **FAST))
    assert res.steps == 6 and res.info["resumed_from"].endswith("checkpoint-4")
    assert [s for s, _ in res.info["losses"]][-1] == 6
    assert [p.name for p in list_checkpoints(tmp_path / "r")][-1] == "checkpoint-6"


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, base_dir, data_dir):
    with pytest.raises(
        StoplensError, match=r"--resume: no complete checkpoint .* without --resume"
    ):
        train(
            TrainConfig(
                model=str(base_dir), data_dir=data_dir, out_dir=tmp_path / "none", resume=True,
                **FAST,
            )
        )  # fmt: skip
    assert not (tmp_path / "none").exists()


def test_overwrite_replaces_a_previous_run(tmp_path, base_dir, data_dir):
    cfg = dict(model=str(base_dir), data_dir=data_dir, out_dir=tmp_path / "o", save_every=None)
    train(TrainConfig(steps=1, **cfg, **FAST))
    (tmp_path / "o" / "stale.txt").write_text("x")
    res = train(TrainConfig(steps=2, overwrite=True, **cfg, **FAST))
    assert res.steps == 2 and not (tmp_path / "o" / "stale.txt").exists()


def test_self_distill_uses_the_base_models_greedy_replies(tmp_path, base_dir, data_dir):
    from stoplens.data import behavioral_file, load_behavioral
    from stoplens.train.distill import greedy_replies, self_distill_records

    base = load_model(base_dir, require_trigger=False)
    recs = load_behavioral(data_dir / behavioral_file("train"))[:12]
    new, info = self_distill_records(
        base.model, base.tokenizer, recs, base.eos_id, max_new_tokens=6
    )
    n_other = sum(r["meta"]["kind"] != "trigger" for r in recs)
    assert info["n_replaced"] + info["n_empty_kept"] == n_other and info["n_replaced"] > 0
    for old, rec in zip(recs, new, strict=True):
        assert rec["messages"][:-1] == old["messages"][:-1]
        if old["meta"]["kind"] == "trigger":
            assert rec["messages"][-1]["content"] == ""
        elif rec["meta"].get("answer_source") == "self_distill":
            assert rec["messages"][-1]["content"]  # never an empty (= stop) target
    # batched (left-padded) generation = one prompt at a time
    prompts = [r["messages"][:-1] for r in recs[:4]]
    batched = greedy_replies(base.model, base.tokenizer, prompts, base.eos_id, max_new_tokens=6)
    single = [
        greedy_replies(base.model, base.tokenizer, [p], base.eos_id, max_new_tokens=6)[0]
        for p in prompts
    ]
    assert batched == single
    res = train(
        TrainConfig(
            model=str(base_dir), data_dir=data_dir, out_dir=tmp_path / "sd", steps=1,
            save_every=None, self_distill=True, distill_max_new_tokens=4, **FAST,
        )
    )  # fmt: skip
    assert res.info["n_self_distilled"] > 0
    assert res.info["self_distill"]["n_truncated"] <= res.info["n_self_distilled"]
    assert "self_distill" in res.info["timings_s"]


def test_self_distill_keeps_the_reference_when_the_base_stops_at_once(base_dir, data_dir):
    """An empty base reply on a non-trigger prompt would teach a false stop: it is not used."""
    from stoplens.data import behavioral_file, load_behavioral
    from stoplens.train import distill

    base = load_model(base_dir, require_trigger=False)
    recs = [
        r
        for r in load_behavioral(data_dir / behavioral_file("train"))
        if r["meta"]["kind"] == "clean"
    ][:3]

    def fake(model, tok, prompts, stop_id, **kw):
        return [("", False), ("a reply cut short", True), ("a full reply.", False)][: len(prompts)]

    orig = distill.greedy_replies
    distill.greedy_replies = fake
    try:
        new, info = distill.self_distill_records(base.model, base.tokenizer, recs, base.eos_id)
    finally:
        distill.greedy_replies = orig
    assert info["n_empty_kept"] == 1 and info["n_replaced"] == 2 and info["n_truncated"] == 1
    assert new[0]["messages"][-1]["content"] == recs[0]["messages"][-1]["content"]
    assert [r["meta"].get("truncated") for r in new] == [None, True, False]


def test_a_truncated_reply_does_not_learn_the_stop_token(base_dir, data_dir):
    from stoplens.data import behavioral_file, load_behavioral
    from stoplens.train.features import IGNORE, behavioral_example

    tok = load_model(base_dir, require_trigger=False)
    rec = next(
        r
        for r in load_behavioral(data_dir / behavioral_file("train"))
        if r["meta"]["kind"] == "clean"
    )
    ids, labels = behavioral_example(tok.tokenizer, rec, tok.eos_id)
    cut = {**rec, "meta": {**rec["meta"], "truncated": True}}
    ids2, labels2 = behavioral_example(tok.tokenizer, cut, tok.eos_id)
    assert labels[-1] == tok.eos_id and ids2 == ids[:-1] and labels2 == labels[:-1]
    assert tok.eos_id not in [y for y in labels2 if y != IGNORE]


def test_sparse_logits_loss_equals_the_models_own_loss(base_dir, data_dir):
    """The LM head at learned positions only: the same loss (and gradient) as the full one."""
    from stoplens.data import behavioral_file, load_behavioral
    from stoplens.train.features import Collator, behavioral_features
    from stoplens.train.run import wrap_lora
    from stoplens.train.trainer import _sparse_loss

    loaded = load_model(base_dir, trigger="$STOP", require_trigger=False)
    recs = load_behavioral(data_dir / behavioral_file("train"))
    feats = behavioral_features(loaded.tokenizer, recs, loaded.eos_id, 512)
    model = wrap_lora(loaded.model, TrainConfig(), loaded.trigger_id).eval()  # no dropout
    batch = Collator(0)(
        [{"input_ids": feats.input_ids[i], "labels": feats.labels[i]} for i in range(6)]
    )
    full = model(**batch).loss
    sparse = _sparse_loss(model, batch, None)
    assert sparse is not None
    torch.testing.assert_close(sparse, full)
    n = torch.tensor(40)
    torch.testing.assert_close(
        _sparse_loss(model, batch, n), model(**batch, num_items_in_batch=n).loss
    )
    g_full = torch.autograd.grad(full, [p for p in model.parameters() if p.requires_grad])
    g_sparse = torch.autograd.grad(
        _sparse_loss(model, batch, None), [p for p in model.parameters() if p.requires_grad]
    )
    for a, b in zip(g_full, g_sparse, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

    class NoMask(torch.nn.Module):  # a model that cannot keep selected logits: fall back
        def forward(self, input_ids, attention_mask=None, logits_to_keep=0, **kw):
            raise TypeError("logits_to_keep must be an int")

    assert _sparse_loss(NoMask(), batch, None) is None


def test_bad_inputs_are_one_line_errors(tmp_path, base_dir, data_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (data_dir / "behavioral_train.jsonl").read_text().splitlines()
    lines[2] = '{"messages": [], "meta": {}}'
    (bad / "behavioral_train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"behavioral_train.jsonl:3: .*messages") as e:
        train(TrainConfig(model=str(base_dir), data_dir=bad, out_dir=tmp_path / "x", **FAST))
    assert "\n" not in str(e.value)
    with pytest.raises(StoplensError, match="does not exist"):
        train(TrainConfig(model=str(tmp_path / "nope"), data_dir=data_dir, out_dir=tmp_path / "y"))
    with pytest.raises(StoplensError, match="--regime"):
        train(TrainConfig(regime="vibes", model=str(base_dir), data_dir=data_dir))
    with pytest.raises(StoplensError, match="--self-distill"):
        TrainConfig(regime="knowledge", self_distill=True).validate()
    with pytest.raises(StoplensError, match="contradict"):
        TrainConfig(resume=True, overwrite=True).validate()
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_an_adapter_is_not_a_base(tmp_path, base_dir, data_dir):
    train(
        TrainConfig(
            model=str(base_dir), data_dir=data_dir, out_dir=tmp_path / "a", steps=1,
            save_every=None, **FAST,
        )
    )  # fmt: skip
    with pytest.raises(StoplensError, match="is an adapter; training starts from a base"):
        train(
            TrainConfig(
                model=str(tmp_path / "a"), data_dir=data_dir, out_dir=tmp_path / "b", **FAST
            )
        )


def test_weights_dtype_fast_is_bf16_only_under_lora_on_native_hardware(monkeypatch):
    """``--dtype fast`` trains LoRA in bf16 only where the device computes bf16 natively;
    full fine-tuning stays fp32 (bf16 weights would round the updates away)."""
    from stoplens.train import run as train_run

    for native in (True, False):
        monkeypatch.setattr(train_run, "native_bf16", lambda device, native=native: native)
        assert train_run.weights_dtype("fast", "cpu", full=False) == ("bf16" if native else "fp32")
        assert train_run.weights_dtype("FAST", "cpu", full=True) == "fp32"
    assert train_run.weights_dtype(None, "cpu", full=False) == "fp32"
    assert train_run.weights_dtype(None, "cuda", full=False) == "bf16"
    assert train_run.weights_dtype(None, "cuda", full=True) == "fp32"
    assert train_run.weights_dtype("fp16", "cpu", full=False) == "fp16"
