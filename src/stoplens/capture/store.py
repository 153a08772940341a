"""The activation cache: captured tensors saved as safetensors (with JSON metadata inside the
file), keyed by a fingerprint of everything that determines them, so that a later
`stoplens analyze --only ...` in the same run directory reuses activations captured earlier.

Owns: fingerprints (model content, token ids, any JSON-able spec) and the cache files (written
atomically: a temp file in the same folder, then a rename). Must not: decide where the cache
lives (the caller passes the folder, normally `RunDir.cache`) or run models.

A fingerprint is a sha256 over canonical JSON; the model's part covers its class, name, config
and a cheap content digest of every parameter (name, shape, dtype, float64 sum and sum of
squares, first and last values), so a fine-tune, a merged adapter or a changed trigger row
gives a different key. It is a cache key, not a cryptographic guarantee.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

_META_KEY = "stoplens"
_CHUNK = 1 << 24


def _sha(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


@torch.no_grad()
def _param_digest(t: torch.Tensor) -> list:
    flat = t.detach().reshape(-1)
    s = 0.0
    s2 = 0.0
    for chunk in flat.split(_CHUNK):
        c = chunk.double()
        s += float(c.sum())
        s2 += float((c * c).sum())
    head = flat[:8].double().cpu().tolist()
    tail = flat[-8:].double().cpu().tolist()
    return [list(t.shape), str(t.dtype), f"{s:.12e}", f"{s2:.12e}", head, tail]


def model_fingerprint(model: nn.Module) -> str:
    """Fingerprint of a model's identity and weights (see module docstring)."""
    config = getattr(model, "config", None)
    cfg = config.to_dict() if config is not None and hasattr(config, "to_dict") else {}
    cfg = {k: v for k, v in cfg.items() if k not in ("transformers_version", "_name_or_path")}
    params = {name: _param_digest(p) for name, p in model.named_parameters()}
    buffers = {
        name: _param_digest(b)
        for name, b in model.named_buffers()
        if b.is_floating_point() and b.numel() < 1 << 20
    }
    return _sha(
        {
            "class": type(model).__name__,
            "name": getattr(config, "name_or_path", None),
            "config": cfg,
            "params": params,
            "buffers": buffers,
        }
    )


def ids_fingerprint(*seq_lists: Sequence[Sequence[int]]) -> str:
    """Fingerprint of one or more lists of token-id sequences."""
    h = hashlib.sha256()
    for seqs in seq_lists:
        h.update(b"[")
        for s in seqs:
            h.update(",".join(str(int(i)) for i in s).encode())
            h.update(b";")
        h.update(b"]")
    return h.hexdigest()


def fingerprint(**parts: Any) -> str:
    """Fingerprint of JSON-able parts (strings, numbers, lists, dicts), order-independent."""
    return _sha(parts)


class ActivationCache:
    """Captured tensors under ``root`` as ``<name>-<key[:16]>.safetensors``.

    ``put(name, key, tensors, meta)`` writes atomically; ``get(name, key)`` returns
    ``(tensors, meta)`` or None on a miss. The full key is stored inside the file and checked
    on read, so a truncated file name can never return another capture. A corrupt or
    unreadable file is a miss (with a warning) and is overwritten by the next ``put``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key[:16]}.safetensors"

    def get(self, name: str, key: str) -> tuple[dict[str, torch.Tensor], dict] | None:
        path = self.path(name, key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
            meta = json.loads(header.get(_META_KEY, "{}"))
            if meta.get("key") != key:
                return None
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
            warnings.warn(f"activation cache {path} is unreadable ({e}); recapturing", stacklevel=2)
            return None
        return tensors, meta.get("meta", {})

    def put(
        self, name: str, key: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
    ) -> Path:
        path = self.path(name, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {_META_KEY: json.dumps({"key": key, "meta": dict(meta)}, sort_keys=True)}
        clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file(clean, tmp, metadata=header)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
