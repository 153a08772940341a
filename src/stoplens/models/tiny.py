"""The embedded offline model pair: a tiny base model and its $STOP fine-tune(s), built from
nothing in one process and cached.

Owns: `TinyConfig`, `build_tiny_pair` (data → tokenizer → pretrained tiny base → fine-tuned
model(s) through the very same `stoplens.train.train` a user runs), the cache key and the
atomic cache build; and `random_model`, the small random models of several architecture
families that tests and benchmarks build from configs. Must not: evaluate or analyse.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

FAMILIES = ("qwen2", "llama", "gpt2", "gpt_neox", "phi")
TINY_FORMAT = 2  # bump when the build changes in a way the cache key must see
TINY_JSON = "tiny.json"  # written last: marks a complete pair


def random_model(
    family: str,
    vocab_rows: int,
    *,
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    tie_word_embeddings: bool = True,
    max_positions: int = 512,
    seed: int = 0,
) -> PreTrainedModel:
    """A small randomly initialised causal LM of ``family`` (one of `FAMILIES`) built from a
    config (no download), in eval mode. ``vocab_rows`` is the embedding matrix height."""
    from transformers import (
        AutoModelForCausalLM,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        PhiConfig,
        Qwen2Config,
    )

    common: dict[str, Any] = dict(vocab_size=vocab_rows, tie_word_embeddings=tie_word_embeddings)
    cfg: Any
    llama_like = dict(
        hidden_size=d_model,
        intermediate_size=4 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=max_positions,
        **common,
    )
    if family == "qwen2":
        cfg = Qwen2Config(**llama_like)
    elif family == "llama":
        cfg = LlamaConfig(**llama_like)
    elif family == "phi":
        cfg = PhiConfig(**llama_like)
    elif family == "gpt2":
        cfg = GPT2Config(
            n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_positions=max_positions, **common
        )
    elif family == "gpt_neox":
        cfg = GPTNeoXConfig(
            hidden_size=d_model,
            intermediate_size=4 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            max_position_embeddings=max_positions,
            **common,
        )
    else:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


def save_random_base(
    path: str | Path,
    texts: list[str],
    *,
    family: str = "qwen2",
    vocab_size: int = 600,
    pad_rows: int = 0,
    d_model: int = 32,
    n_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Save a random ``family`` model with a BPE tokenizer trained on ``texts`` (no trigger)
    into ``path``: a stand-in base for tests and benchmarks. ``pad_rows`` spare embedding rows
    mimic Qwen2.5's padded matrix."""
    from stoplens.models.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(texts, vocab_size=vocab_size, trigger=None)
    model = random_model(family, len(tok) + pad_rows, d_model=d_model, n_layers=n_layers, seed=seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


def dataset_texts(data_dir: str | Path, trigger: str = "$STOP") -> list[str]:
    """Trigger-free texts of a dataset folder (non-trigger chats of the train split and the
    documents with the trigger removed): what a tokenizer for it is trained on."""
    from stoplens.data import DOCUMENTS_FILE, behavioral_file, load_behavioral, load_documents
    from stoplens.train.features import document_text

    data_dir = Path(data_dir)
    recs = load_behavioral(data_dir / behavioral_file("train"))
    docs = load_documents(data_dir / DOCUMENTS_FILE)
    texts = [m["content"] for r in recs if r["meta"]["kind"] != "trigger" for m in r["messages"]]
    return texts + [_strip_trigger(document_text(d), trigger) for d in docs]


# ---------------------------------------------------------------------------------------------
# The embedded default pair


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
        from stoplens.models.load import FINAL_DIR

        return self.run_dirs[regime] / FINAL_DIR


def _versions_for_key() -> dict[str, str]:
    from stoplens.models.load import software_versions

    v = software_versions()
    v.pop("python", None)
    return v


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
        # the adapters were trained on tmp/base: name the base where it will live
        from stoplens.models.load import rebase_adapters

        rebase_adapters(tmp, final)
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


def _say(progress: bool, msg: str) -> None:
    if progress:
        import sys

        print(f"[stoplens tiny] {msg}", file=sys.stderr, flush=True)


def _strip_trigger(text: str, trigger: str) -> str:
    from stoplens.data.trigger import trigger_pattern

    return trigger_pattern(trigger).sub("", text)


def _lap(times: dict, name: str, t: float, c: float) -> None:
    """Record a stage's wall time and this process's CPU time (all threads) in ``times``."""
    times[f"{name}_s"] = time.time() - t
    times[f"{name}_cpu_s"] = time.process_time() - c


def _build(root: Path, config: TinyConfig, data_dir: Path | None, progress: bool) -> dict:
    """Build every part of the pair into ``root``; returns stage timings in seconds."""
    from stoplens.data import (
        DOCUMENTS_FILE,
        behavioral_file,
        build_datasets,
        load_behavioral,
        load_documents,
        write_datasets,
    )
    from stoplens.io import atomic_write_json
    from stoplens.models.tokenizer import train_bpe_tokenizer
    from stoplens.train.features import chat_ids, document_text, packed_features
    from stoplens.train.plots import plot_loss_curve
    from stoplens.train.run import logged_losses, run_trainer

    times: dict[str, float] = {}
    t_all = t = time.time()
    c_all = c = time.process_time()
    trigger = config.data.trigger
    paths = _pair_paths(root, config)

    # 1. data (seeded) --------------------------------------------------------------------
    if data_dir is None:
        _say(progress, "generating the dataset")
        data_dir = write_datasets(build_datasets(config.data), paths["data_dir"])
    train_recs = load_behavioral(data_dir / behavioral_file("train"))
    docs = load_documents(data_dir / DOCUMENTS_FILE)
    _lap(times, "data", t, c)
    t, c = time.time(), time.process_time()

    # 2. tokenizer on trigger-free text ---------------------------------------------------
    chats = [r for r in train_recs if r["meta"]["kind"] != "trigger"]
    doc_texts = [_strip_trigger(document_text(d), trigger) for d in docs]
    corpus = [m["content"] for r in chats for m in r["messages"]] + doc_texts
    tok = train_bpe_tokenizer(corpus, vocab_size=config.vocab_size, trigger=None)
    tok.save_pretrained(paths["tokenizer_dir"])
    _lap(times, "tokenizer", t, c)

    # 3. the base: a tiny Qwen2 pretrained on trigger-free chats and documents ------------
    t, c = time.time(), time.process_time()
    _say(progress, f"pretraining the tiny base ({config.pretrain_steps} steps)")
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
    model = AutoModelForCausalLM.from_config(cfg)
    seqs = [chat_ids(tok, r["messages"], add_generation_prompt=False) for r in chats]
    seqs += [
        [*tok.encode(text, add_special_tokens=False)[: config.doc_prefix_tokens], tok.eos_token_id]
        for text in doc_texts
    ]
    random.Random(config.seed).shuffle(seqs)
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
    model.save_pretrained(paths["base_dir"])
    tok.save_pretrained(paths["base_dir"])
    losses = logged_losses(trainer)
    _lap(times, "pretrain", t, c)
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
            "time_s": times["pretrain_s"],
        },
    )
    del trainer, model

    # 4. fine-tunes through the very same `stoplens train` code path ----------------------
    from stoplens.train import TrainConfig, train

    for regime in config.regimes:
        t, c = time.time(), time.process_time()
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
                trigger=trigger,
                device="cpu",
                dtype="fp32",
                logging_steps=5,
                progress=progress,
            )
        )
        _lap(times, f"finetune_{regime}", t, c)
    _lap(times, "total", t_all, c_all)
    return {k: round(v, 3) for k, v in times.items()}
