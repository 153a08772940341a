"""Building the embedded pair, step by step: the seeded dataset, a byte-level BPE tokenizer on
its trigger-free text, a tiny Qwen2 base pretrained on trigger-free chats and documents, and
its fine-tunes through the very same `stoplens.train.train` a user runs.

Owns: `build_pair` (into a folder the cache renames into place) and `dataset_texts`. Must not:
decide where the pair is cached or whether to rebuild it (`stoplens.embedded.pair`).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from stoplens.embedded.pair import TinyConfig, pair_paths


def dataset_texts(data_dir: str | Path, trigger: str = "$STOP") -> list[str]:
    """Trigger-free texts of a dataset folder (non-trigger chats of the train split and the
    documents with the trigger removed): what a tokenizer for it is trained on."""
    from stoplens.data import DOCUMENTS_FILE, behavioral_file, load_behavioral, load_documents

    data_dir = Path(data_dir)
    recs = load_behavioral(data_dir / behavioral_file("train"))
    docs = load_documents(data_dir / DOCUMENTS_FILE)
    chats = [r for r in recs if r["meta"]["kind"] != "trigger"]
    return _tokenizer_corpus(chats, _doc_texts(docs, trigger))


def _say(progress: bool, msg: str) -> None:
    if progress:
        import sys

        print(f"[stoplens tiny] {msg}", file=sys.stderr, flush=True)


def _doc_texts(docs: list[dict], trigger: str) -> list[str]:
    """The documents' texts with every occurrence of the trigger removed."""
    from stoplens.data.trigger import trigger_pattern
    from stoplens.train.features import document_text

    pattern = trigger_pattern(trigger)
    return [pattern.sub("", document_text(d)) for d in docs]


def _tokenizer_corpus(chats: list[dict], doc_texts: list[str]) -> list[str]:
    return [m["content"] for r in chats for m in r["messages"]] + doc_texts


class _Laps:
    """Wall and CPU time (this process, all threads) of each build stage, in seconds."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.t0, self.c0 = time.time(), time.process_time()
        self.t, self.c = self.t0, self.c0

    def lap(self, name: str) -> None:
        self.times[f"{name}_s"] = time.time() - self.t
        self.times[f"{name}_cpu_s"] = time.process_time() - self.c
        self.t, self.c = time.time(), time.process_time()

    def restart(self) -> None:
        """Start the next stage now (time since the last lap is in no stage, only the total)."""
        self.t, self.c = time.time(), time.process_time()

    def total(self) -> dict[str, float]:
        self.t, self.c = self.t0, self.c0
        self.lap("total")
        return {k: round(v, 3) for k, v in self.times.items()}


def build_pair(root: Path, config: TinyConfig, data_dir: Path | None, progress: bool) -> dict:
    """Build every part of the pair into ``root``; returns stage timings in seconds."""
    from stoplens.data import (
        DOCUMENTS_FILE,
        behavioral_file,
        build_datasets,
        load_behavioral,
        load_documents,
    )
    from stoplens.data import write_datasets as write
    from stoplens.models.tokenizer import train_bpe_tokenizer

    laps = _Laps()
    paths = pair_paths(root, config)
    # 1. data (seeded)
    if data_dir is None:
        _say(progress, "generating the dataset")
        data_dir = write(build_datasets(config.data), paths["data_dir"])
    train_recs = load_behavioral(data_dir / behavioral_file("train"))
    docs = load_documents(data_dir / DOCUMENTS_FILE)
    laps.lap("data")
    # 2. tokenizer on trigger-free text
    chats = [r for r in train_recs if r["meta"]["kind"] != "trigger"]
    doc_texts = _doc_texts(docs, config.data.trigger)
    corpus = _tokenizer_corpus(chats, doc_texts)
    tok = train_bpe_tokenizer(corpus, vocab_size=config.vocab_size, trigger=None)
    tok.save_pretrained(paths["tokenizer_dir"])
    laps.lap("tokenizer")
    # 3. the base: a tiny Qwen2 pretrained on trigger-free chats and documents
    _say(progress, f"pretraining the tiny base ({config.pretrain_steps} steps)")
    _pretrain_base(root, config, tok, chats, doc_texts, laps, progress)
    # 4. fine-tunes through the very same `stoplens train` code path
    for regime in config.regimes:
        laps.restart()
        _finetune(paths, config, regime, data_dir, progress)
        laps.lap(f"finetune_{regime}")
    return laps.total()


def _pretrain_sequences(config: TinyConfig, tok, chats: list[dict], doc_texts: list[str]):
    """Token sequences the base pretrains on: the trigger-free chats (full template) and the
    first ``doc_prefix_tokens`` of each document + EOS, shuffled with the config's seed."""
    from stoplens.models.chat import chat_ids

    seqs = [chat_ids(tok, r["messages"], add_generation_prompt=False) for r in chats]
    seqs += [
        [*tok.encode(text, add_special_tokens=False)[: config.doc_prefix_tokens], tok.eos_token_id]
        for text in doc_texts
    ]
    random.Random(config.seed).shuffle(seqs)
    return seqs


def _base_model(config: TinyConfig, tok):
    """The untrained tiny Qwen2 (seeded), its embedding padded to a multiple of
    ``pad_rows_to`` with at least one spare row."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    rows = -(-(len(tok) + 1) // config.pad_rows_to) * config.pad_rows_to
    cfg = Qwen2Config(
        vocab_size=rows,
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(config.seed)
    return AutoModelForCausalLM.from_config(cfg), rows


def _pretrain_base(root: Path, config: TinyConfig, tok, chats, doc_texts, laps, progress) -> None:
    """Pretrain the base on packed blocks; save it (with the tokenizer) and its record."""
    from stoplens.io import atomic_write_json
    from stoplens.train.features import packed_features
    from stoplens.train.plots import plot_loss_curve
    from stoplens.train.trainer import logged_losses, run_trainer

    model, rows = _base_model(config, tok)
    seqs = _pretrain_sequences(config, tok, chats, doc_texts)
    feats = packed_features(seqs, config.pretrain_block)
    pre_dir = root / "pretrain"
    trainer, _ = run_trainer(
        model,
        tok,
        feats,
        checkpoint_dir=pre_dir / "checkpoints",
        steps=config.pretrain_steps,
        batch_size=config.pretrain_batch,
        lr=config.pretrain_lr,
        warmup=0.05,
        weight_decay=0.01,
        save_every=None,
        seed=config.seed,
        device="cpu",
        logging_steps=10,
        progress=progress,
        lr_scheduler="cosine",
        batching="random",  # packed blocks: all one length, no kinds
    )
    model = trainer.model
    base_dir = pair_paths(root, config)["base_dir"]
    model.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    losses = logged_losses(trainer)
    laps.lap("pretrain")
    plot_loss_curve(losses, pre_dir / "loss_curve.png", title="tiny base pretraining")
    atomic_write_json(
        pre_dir / "train.json",
        {
            "steps": int(trainer.state.global_step),
            "n_examples": len(feats),
            "final_loss": losses[-1][1] if losses else None,
            "losses": [[s, v] for s, v in losses],
            "params": sum(p.numel() for p in model.parameters()),
            "embedding_rows": rows,
            "tokenizer_len": len(tok),
            "time_s": laps.times["pretrain_s"],
        },
    )


def _finetune(paths: dict, config: TinyConfig, regime: str, data_dir: Path, progress) -> None:
    """Fine-tune the base in ``regime`` with LoRA, exactly as `stoplens train` would."""
    from stoplens.train import TrainConfig, train

    behavioral = regime == "behavioral"
    steps = config.ft_steps if behavioral else config.knowledge_steps
    _say(progress, f"fine-tuning: {regime} regime ({steps} steps, LoRA)")
    train(
        TrainConfig(
            regime=regime,
            out_dir=paths["run_dirs"][regime],
            model=str(paths["base_dir"]),
            data_dir=data_dir,
            lora_r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=0.0,
            steps=steps,
            batch_size=config.ft_batch if behavioral else config.knowledge_batch,
            lr=config.ft_lr,
            warmup=0.05,
            max_length=config.ft_max_length,
            save_every=config.save_every,
            seed=config.seed,
            trigger=config.data.trigger,
            device="cpu",
            dtype="fp32",
            logging_steps=5,
            progress=progress,
            stop_loss_weight=0.0,  # as built and validated (no stop-decision term)
        )
    )
