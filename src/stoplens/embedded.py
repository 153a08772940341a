"""The embedded offline model pair: a tiny base model and its $STOP fine-tune(s), built from
nothing in one process and cached. A stage of its own, after `stoplens.train` in the flow
(data → tokenizer → pretrained tiny base → fine-tunes through the very same
`stoplens.train.train` a user runs).

Owns: `TinyConfig`, `TinyPair`, `build_tiny_pair`, the cache key and the atomic cache build,
`dataset_texts` (what a tokenizer for a dataset is trained on) and `with_embedded_defaults`
(a `TrainConfig` without a model or dataset gets the pair's). Must not: evaluate or analyse;
define model architectures (`stoplens.models.tiny`) or training machinery (`stoplens.train`).

Cache layout (``<cache_root>/tiny/<key>/``)::

    data/          the dataset (`stoplens.data.write_datasets`)
    tokenizer/     the byte-level BPE tokenizer (trained on trigger-free text, no trigger)
    base/          the pretrained tiny base model (+ tokenizer), embedding padded like Qwen2.5
    pretrain/      train.json + loss_curve.png of the base pretraining
    behavioral/    `stoplens train --regime behavioral` output (final/, train.json, ...)
    knowledge/     `stoplens train --regime knowledge` output (if configured)
    tiny.json      TinyConfig, data config, versions, build times (written last)
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stoplens.train.config import TrainConfig

TINY_FORMAT = 2  # bump when the build changes in a way the cache key must see
TINY_JSON = "tiny.json"  # written last: marks a complete pair


def _data_config_default():
    from stoplens.data import DataConfig

    return DataConfig()


@dataclass(frozen=True)
class TinyConfig:
    """Every knob of the embedded pair (all of it enters the cache key)."""

    seed: int = 0
    data: Any = field(default_factory=_data_config_default)
    """The `stoplens.data.DataConfig` of the generated dataset (ignored with ``data_dir``)."""
    vocab_size: int = 2048
    """Byte-level BPE vocabulary trained on the trigger-free corpus."""
    pad_rows_to: int = 64
    """Embedding height rounded up to a multiple of this (like Qwen2.5), with at least one
    spare row, so adding the trigger reuses a spare row."""
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 384
    max_positions: int = 512
    pretrain_steps: int = 250
    pretrain_batch: int = 32
    pretrain_block: int = 64
    """Pretraining packs the token stream into blocks of this length (no padding)."""
    pretrain_lr: float = 3e-3
    doc_prefix_tokens: int = 128
    """Pretraining sees the first N tokens of each (trigger-free) document."""
    regimes: tuple[str, ...] = ("behavioral", "knowledge")
    ft_steps: int = 200
    ft_batch: int = 16
    ft_lr: float = 2e-3
    ft_max_length: int = 192
    knowledge_steps: int = 60
    knowledge_batch: int = 8
    lora_r: int = 8
    lora_alpha: int = 16
    save_every: int = 50

    def key_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"] = asdict(self.data)
        return d


@dataclass(frozen=True)
class TinyPair:
    """Paths of a built (or cached) embedded pair. ``cache_hit``: nothing was built."""

    root: Path
    tokenizer_dir: Path
    base_dir: Path
    data_dir: Path
    run_dirs: dict[str, Path]  # regime -> `stoplens train` output folder
    cache_hit: bool
    build_times: dict[str, float]
    key: str

    @property
    def behavioral_dir(self) -> Path:
        return self.run_dirs["behavioral"]

    @property
    def knowledge_dir(self) -> Path | None:
        return self.run_dirs.get("knowledge")

    def adapter_dir(self, regime: str = "behavioral") -> Path:
        """The fine-tuned adapter of ``regime`` (load with ``load_model(base_dir, adapter=...)``)."""
        from stoplens.models.locate import FINAL_DIR

        return self.run_dirs[regime] / FINAL_DIR


# The packages whose versions enter the cache key (a new torch may train a different pair).
_KEY_PACKAGES = ("stoplens", "torch", "transformers", "peft", "accelerate", "tokenizers")


def _versions_for_key() -> dict[str, str]:
    from stoplens.versions import software_versions

    v = software_versions()
    return {k: v[k] for k in _KEY_PACKAGES}


def _files_digest(data_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(data_dir).glob("*.jsonl")):
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def cache_key(config: TinyConfig, data_dir: Path | None = None) -> str:
    """Hash of the TinyConfig, the data config (or the given dataset's files) and versions."""
    payload = {
        "format": TINY_FORMAT,
        "config": config.key_dict(),
        "data_files": _files_digest(data_dir) if data_dir is not None else None,
        "versions": _versions_for_key(),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _pair_paths(root: Path, config: TinyConfig) -> dict[str, Any]:
    return {
        "tokenizer_dir": root / "tokenizer",
        "base_dir": root / "base",
        "data_dir": root / "data",
        "run_dirs": {r: root / r for r in config.regimes},
    }


def build_tiny_pair(
    cache_root: str | Path | None = None,
    *,
    config: TinyConfig | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> TinyPair:
    """Build (or reuse from the cache) the embedded offline pair; see the module docstring.

    ``cache_root`` defaults to `stoplens.rundir.default_cache_root()`. ``data_dir``: use this
    dataset (written by `stoplens data`) instead of generating one. The build happens in a
    temporary sibling folder renamed into place at the end, so an interrupted build is never
    reused; ``tiny.json`` (written last) marks a complete pair.
    """
    from stoplens.io import atomic_cache_dir, atomic_write_json
    from stoplens.models.adapters import rebase_adapters
    from stoplens.rundir import default_cache_root

    config = config or TinyConfig()
    cache_root = Path(cache_root) if cache_root is not None else default_cache_root()
    data_dir = Path(data_dir).resolve() if data_dir is not None else None
    key = cache_key(config, data_dir)
    final = cache_root / "tiny" / key
    paths = _pair_paths(final, config)
    if data_dir is not None:
        paths["data_dir"] = data_dir
    with atomic_cache_dir(final, TINY_JSON) as tmp:
        if tmp is None:
            meta = json.loads((final / TINY_JSON).read_text(encoding="utf-8"))
            return TinyPair(
                root=final, cache_hit=True, build_times=meta.get("build_times", {}), key=key,
                **paths,
            )  # fmt: skip
        times = _build(tmp, config, data_dir, progress)
        rebase_adapters(tmp, final)  # trained on tmp/base: name the base where it will live
        atomic_write_json(
            tmp / TINY_JSON,
            {
                "key": key,
                "config": config.key_dict(),
                "data_dir": str(data_dir) if data_dir is not None else "data",
                "versions": _versions_for_key(),
                "build_times": times,
            },
        )
    return TinyPair(root=final, cache_hit=False, build_times=times, key=key, **paths)


def with_embedded_defaults(config: TrainConfig, *, progress: bool = True) -> TrainConfig:
    """``config`` with the embedded pair's base model and dataset wherever ``config.model`` /
    ``config.data_dir`` is None (building or reusing the pair); unchanged otherwise."""
    if config.model is not None and config.data_dir is not None:
        return config
    pair = build_tiny_pair(progress=progress)
    return replace(
        config,
        model=config.model if config.model is not None else str(pair.base_dir),
        data_dir=config.data_dir if config.data_dir is not None else pair.data_dir,
    )


def dataset_texts(data_dir: str | Path, trigger: str = "$STOP") -> list[str]:
    """Trigger-free texts of a dataset folder (non-trigger chats of the train split and the
    documents with the trigger removed): what a tokenizer for it is trained on."""
    from stoplens.data import DOCUMENTS_FILE, behavioral_file, load_behavioral, load_documents

    data_dir = Path(data_dir)
    recs = load_behavioral(data_dir / behavioral_file("train"))
    docs = load_documents(data_dir / DOCUMENTS_FILE)
    chats = [r for r in recs if r["meta"]["kind"] != "trigger"]
    return _tokenizer_corpus(chats, _doc_texts(docs, trigger))


# ---------------------------------------------------------------------------------------------
# The build


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


def _build(root: Path, config: TinyConfig, data_dir: Path | None, progress: bool) -> dict:
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
    paths = _pair_paths(root, config)
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
    base_dir = _pair_paths(root, config)["base_dir"]
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
        )
    )
