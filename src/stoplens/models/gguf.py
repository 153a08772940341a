"""GGUF files as models: ``--model path/to/model.gguf`` is dequantised once into a cached
Hugging Face folder, and everything downstream (training, adapters' base paths, analyses)
refers to that folder.

Owns: recognising a GGUF path, the cache folder keyed by the file's sha256
(``<cache_root>/gguf/<stem>-<sha16>-f<GGUF_FORMAT>/``, cache root as in
`stoplens.rundir.default_cache_root`), and its atomic build. transformers reads GGUF (through
the optional ``gguf`` package) and dequantises to float32, but refuses to ``save_pretrained``
the result, so the build rebuilds the model from its config without ``quantization_config``,
loads the state dict, saves safetensors + tokenizer (``tokenizer_class`` written explicitly) +
chat template, and then checks that the saved folder reloads with identical token ids and
identical logits (tied embeddings included) before the folder is renamed into place. A
``stoplens_gguf.json`` (written last) records the source file, its hash and the checks.

Must not: add the trigger, train, or analyse.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from stoplens.errors import StoplensError
from stoplens.models.chat import chat_ids

GGUF_FORMAT = 1  # bump when the folder this module writes changes
MARKER = "stoplens_gguf.json"
INSTALL_HINT = "pip install 'stoplens[gguf]'"

#: Texts whose token ids must be identical before and after the tokenizer is saved.
PROBE_TEXTS = (
    "Hello, world! How are you today?",
    "  leading spaces, tabs\tand\nnewlines 12345 3.14159 2024-01-31",
    "Ünïcödé: naïve café, 東京, Москва, emoji 🙂, symbols §±→",
    "def f(x):\n    return x ** 2  # code",
    "$STOP STOP stop $stop <<STOP>> [STOP] <|halt|>",
)


def is_gguf_file(path: str | Path) -> bool:
    """Whether ``path`` is an existing file with the ``.gguf`` suffix."""
    p = Path(path).expanduser()
    return p.suffix.lower() == ".gguf" and p.is_file()


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def gguf_cache_dir(
    path: str | Path, cache_root: str | Path | None = None, *, sha256: str | None = None
) -> Path:
    """Where the dequantised folder of the GGUF file ``path`` lives (built or not);
    ``sha256``: the file's hash if already known."""
    from stoplens.rundir import default_cache_root

    root = Path(cache_root) if cache_root is not None else default_cache_root()
    p = Path(path).expanduser()
    digest = sha256 or file_sha256(p)
    return root / "gguf" / f"{p.stem}-{digest[:16]}-f{GGUF_FORMAT}"


def require_gguf() -> None:
    """A one-line error naming the install command if the optional ``gguf`` package is missing."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise StoplensError(
            f"reading a .gguf model needs the optional 'gguf' package; install it with {INSTALL_HINT}"
        )


def dequantize_gguf(
    path: str | Path, cache_root: str | Path | None = None, *, progress: bool = True
) -> Path:
    """The cached Hugging Face folder of the GGUF file ``path``, built on first use (see the
    module docstring). Returns the folder (absolute)."""
    from stoplens.io import atomic_cache_dir, atomic_write_json
    from stoplens.progress import stage
    from stoplens.versions import software_versions

    p = Path(path).expanduser().resolve()
    if not is_gguf_file(p):
        raise StoplensError(f"{path} is not a .gguf file; pass the path of a GGUF model file")
    sha = file_sha256(p)
    final = gguf_cache_dir(p, cache_root, sha256=sha).resolve()
    if (final / MARKER).is_file():
        return final
    require_gguf()
    stage(f"gguf: dequantising {p.name} once into {final}", enabled=progress)
    t0 = time.perf_counter()
    with atomic_cache_dir(final, MARKER) as tmp:
        if tmp is not None:
            checks = _build(p, tmp)
            atomic_write_json(
                tmp / MARKER,
                {
                    "format": GGUF_FORMAT,
                    "source": str(p),
                    "sha256": sha,
                    "bytes": p.stat().st_size,
                    "checks": checks,
                    "build_s": round(time.perf_counter() - t0, 2),
                    "versions": software_versions(),
                },
            )
    stage(f"gguf: {final.name} ready ({time.perf_counter() - t0:.0f}s)", enabled=progress)
    return final


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _build(gguf: Path, out: Path) -> dict[str, Any]:
    """Dequantise ``gguf`` into the empty folder ``out``; returns the checks' figures."""
    tok, loaded = _read(gguf)
    model = _serialisable_copy(loaded)
    model.save_pretrained(out)
    # the class saved explicitly: AutoTokenizer on a folder with this config.json could
    # otherwise pick an architecture tokenizer with another pre-tokenizer (DESIGN §5)
    tok.init_kwargs["tokenizer_class"] = type(tok).__name__
    tok.save_pretrained(out)
    return _check_reload(gguf, out, tok, loaded)


def _read(gguf: Path):
    """(tokenizer, float32 model in eval mode) as transformers reads them from ``gguf``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf.parent), gguf.name
    try:
        tok = AutoTokenizer.from_pretrained(where, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(
            where, gguf_file=name, dtype=torch.float32
        ).eval()
    except ImportError as e:
        raise StoplensError(
            f"could not read {gguf}: {_first_line(e)}; install the GGUF reader with {INSTALL_HINT}"
        ) from None
    except Exception as e:  # a truncated or foreign file fails anywhere in the reader
        raise StoplensError(
            f"could not read {gguf} as a causal LM: {_first_line(e)}; pass a GGUF file of a "
            "decoder-only model whose architecture transformers can read from GGUF"
        ) from None
    return tok, loaded


def _check_reload(gguf: Path, out: Path, tok, loaded) -> dict[str, Any]:
    """Token ids, chat template and logits identical after reload from the saved folder
    ``out`` (else an error); returns the checks' figures."""
    import torch
    from transformers import AutoModelForCausalLM

    from stoplens.models.tokenizer import load_tokenizer

    reloaded_tok = load_tokenizer(str(out), local_files_only=True)
    for text in PROBE_TEXTS:
        if tok.encode(text) != reloaded_tok.encode(text):
            raise StoplensError(
                f"the tokenizer of {gguf} encodes {text!r} differently after saving; report "
                "this with the file's name (transformers' GGUF tokenizer conversion)"
            )
    chat = [{"role": "user", "content": PROBE_TEXTS[0]}]
    template_ok = bool(getattr(tok, "chat_template", None))
    if template_ok and chat_ids(tok, chat) != chat_ids(reloaded_tok, chat):
        raise StoplensError(f"the chat template of {gguf} renders differently after saving")
    again = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ids = torch.tensor([tok.encode(" ".join(PROBE_TEXTS))[:64]])
    with torch.no_grad():
        want = loaded(input_ids=ids).logits
        got = again(input_ids=ids).logits
    max_diff = float((want - got).abs().max())
    if not torch.equal(want, got):
        raise StoplensError(
            f"the model saved from {gguf} does not reproduce its logits (max |Δ| {max_diff:.3g}); "
            "report this with the file's name"
        )
    tied = bool(getattr(again.config, "tie_word_embeddings", False))
    return {
        "model_type": getattr(again.config, "model_type", None),
        "params": sum(p.numel() for p in again.parameters()),
        "vocab": len(tok),
        "tie_word_embeddings": tied,
        "chat_template": template_ok,
        "tokenizer_class": type(tok).__name__,
        "probe_texts_identical": len(PROBE_TEXTS),
        "logits_max_abs_diff": max_diff,
    }


def _serialisable_copy(loaded):
    """The GGUF-loaded model rebuilt from its config without ``quantization_config`` (which
    transformers refuses to save), carrying the same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    config = type(loaded.config).from_dict(cfg)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = loaded.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    # keys a tied model does not store (lm_head.weight = embed_tokens.weight)
    tied = (
        {k for k in missing if k.endswith("lm_head.weight")}
        if config.tie_word_embeddings
        else set()
    )
    if set(missing) - tied or unexpected:
        raise StoplensError(
            "the GGUF weights do not fit the model built from its config (missing "
            f"{sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}); report "
            "this with the file's name"
        )
    model.tie_weights()
    if loaded.generation_config is not None:
        model.generation_config = loaded.generation_config
    return model.eval()


def gguf_source(folder: str | Path) -> dict | None:
    """The ``stoplens_gguf.json`` of a dequantised folder (None for other folders)."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return None
    return json.loads(marker.read_text(encoding="utf-8"))
