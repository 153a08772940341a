"""The embedded pair's configuration, its paths and the cache: `TinyConfig`, `TinyPair`, the
cache key, `build_tiny_pair` (reuse a complete cache entry, else build atomically) and
`with_embedded_defaults`. Must not: train or evaluate (the build steps are
`stoplens.embedded.build`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stoplens.train.config import TrainConfig

TINY_FORMAT = 2  # bump when the build changes in a way the cache key must see
TINY_JSON = "tiny.json"  # written last: marks a complete pair


def _data_config_default():
    """The embedded pair's data: the defaults, with the placement weights it was built and
    validated with (system_weight=1, triggers_per_prompt=3; every placement stops at 100%
    there), so its cache key and its numbers stay those the README reports."""
    from stoplens.data import DataConfig

    return DataConfig(system_weight=1, triggers_per_prompt=3)


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


def pair_paths(root: Path, config: TinyConfig) -> dict[str, Any]:
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
    paths = pair_paths(final, config)
    if data_dir is not None:
        paths["data_dir"] = data_dir
    with atomic_cache_dir(final, TINY_JSON) as tmp:
        if tmp is None:
            meta = json.loads((final / TINY_JSON).read_text(encoding="utf-8"))
            return TinyPair(
                root=final, cache_hit=True, build_times=meta.get("build_times", {}), key=key,
                **paths,
            )  # fmt: skip
        from stoplens.embedded.build import build_pair

        times = build_pair(tmp, config, data_dir, progress)
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
