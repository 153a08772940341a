"""Where a model argument points: a local folder, a ``.gguf`` file (its cached dequantised
folder, `stoplens.models.gguf`), a hub id (offline-aware: never hang on an unreachable hub), a
`stoplens train` output folder (its ``final/``), or a peft adapter (the base it names).

Owns: the file names of trained folders (``final/``, ``checkpoints/``, ``train.json``,
``stoplens_adapter.json``), `resolve` / `resolve_with_base`, `resolve_trained_dir`,
`adapter_base`, the hub probes. Must not: load weights (`stoplens.models.load`) or write
adapter metadata (`stoplens.models.adapters`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from stoplens.errors import StoplensError

ADAPTER_META = "stoplens_adapter.json"
TRAIN_JSON = "train.json"
FINAL_DIR = "final"
CHECKPOINTS_DIR = "checkpoints"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?")
_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    """Whether the user asked for offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(
        os.environ.get(k, "0").strip().lower() in _TRUE
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, bounded in time (DNS included)."""
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def _cached_on_hub(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:
        return False
    return isinstance(hit, str)


# ---------------------------------------------------------------------------------------------
# Resolving what the user passed


@dataclass(frozen=True)
class Ref:
    ref: str  # absolute directory or hub id
    local: bool
    local_files_only: bool = False


def resolve(model: str | Path, what: str = "model", *, progress: bool = True) -> Ref:
    """A local directory, a GGUF file (dequantised once into a cached folder, which is what
    is returned) or a hub id; errors name the fix and never wait on the network long."""
    p = Path(model).expanduser()
    if p.exists():
        if p.is_file() and p.suffix.lower() == ".gguf":
            from stoplens.models.gguf import dequantize_gguf

            return Ref(str(dequantize_gguf(p, progress=progress)), local=True)
        if not p.is_dir():
            raise StoplensError(
                f"{what} path {p} is a file; pass the directory it is in (or a .gguf file)"
            )
        return Ref(str(p.resolve()), local=True)
    s = str(model)
    if not _HUB_ID.fullmatch(s) or s.startswith((".", "~")):
        raise StoplensError(
            f"{what} path {s} does not exist; pass an existing directory (saved with "
            "save_pretrained / `stoplens train`) or a hub id such as Qwen/Qwen2.5-0.5B-Instruct"
        )
    cached = _cached_on_hub(s)
    if hub_offline():
        if cached:
            return Ref(s, local=False, local_files_only=True)
        raise StoplensError(
            f"{what} {s!r} is not a local directory and the hub is offline (HF_HUB_OFFLINE=1) "
            "with no cached copy; pass a local directory, or download it once while online "
            f"(`hf download {s}`)"
        )
    if not _hub_reachable():
        if cached:  # no network: use the cached copy instead of waiting on retries
            return Ref(s, local=False, local_files_only=True)
        raise StoplensError(
            f"{what} {s!r} is not a local directory and the Hugging Face hub cannot be reached; "
            f"check the path, or download it while online (`hf download {s}`) and pass the folder"
        )
    return Ref(s, local=False)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise StoplensError(
            f"{path}: unreadable ({e}); re-create it or pass another model"
        ) from None


def resolve_trained_dir(path: Path) -> Path:
    """A `stoplens train` output folder → its ``final/`` model; other folders unchanged.

    An unfinished run (checkpoints but no ``final/``) is an error that names ``--resume``.
    """
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return path
    if (path / FINAL_DIR).is_dir() and (path / TRAIN_JSON).is_file():
        return path / FINAL_DIR
    if (path / CHECKPOINTS_DIR).is_dir():
        raise StoplensError(
            f"{path} holds an unfinished training run (checkpoints, no final model); finish it "
            f"with `stoplens train --resume --out {path}` or load a checkpoint as the adapter"
        )
    raise StoplensError(
        f"{path} holds no model (no config.json or adapter_config.json); pass a model folder "
        "saved with save_pretrained or the output folder of `stoplens train`"
    )


def adapter_base(adapter_dir: Path) -> str:
    meta_path = adapter_dir / ADAPTER_META
    if meta_path.is_file():
        meta = read_json(meta_path)
        rel = meta.get("base_relpath")
        if rel and (adapter_dir / rel).is_dir():
            return str((adapter_dir / rel).resolve())
        if meta.get("base_model"):
            return str(meta["base_model"])
    base = read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    if not base:
        raise StoplensError(
            f"adapter {adapter_dir} does not name its base model; pass it: "
            "load_model(BASE, adapter=...) / `--base BASE --adapter ...`"
        )
    return str(base)


def resolve_with_base(
    model: str | Path, what: str, base_what: str, *, progress: bool = True
) -> tuple[Ref, Ref, Path | None]:
    """(``model`` resolved, the model to load weights from, the adapter folder or None).

    A local `stoplens train` output means its ``final/``; a local peft adapter is loaded on
    the base it names (resolved too, ``base_what`` naming it in errors)."""
    ref = resolve(model, what, progress=progress)
    if not ref.local:
        return ref, ref, None
    path = resolve_trained_dir(Path(ref.ref))
    if not (path / "adapter_config.json").is_file():
        return ref, Ref(str(path), local=True), None
    base = resolve(adapter_base(path), base_what, progress=progress)
    if base.local:
        base = Ref(str(resolve_trained_dir(Path(base.ref))), local=True)
    return ref, base, path
