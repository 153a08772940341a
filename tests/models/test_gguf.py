"""gguf.py: a .gguf file is dequantised once into a cached Hugging Face folder keyed by its
hash, which reloads with identical token ids and logits (tied and untied embeddings) and is
what `load_model` / `preflight` hand on; a missing `gguf` package is a one-line error."""

from __future__ import annotations

import json

import pytest
import torch

from stoplens.errors import StoplensError
from stoplens.models import gguf as gguf_mod
from stoplens.models.gguf import MARKER, dequantize_gguf, gguf_cache_dir, gguf_source
from stoplens.models.load import load_model
from stoplens.models.preflight import preflight


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def built(request, tmp_path_factory, write_gguf):
    root = tmp_path_factory.mktemp("gguf")
    path = write_gguf(root / "tiny.gguf", tied=request.param)
    cache = root / "cache"
    return path, cache, dequantize_gguf(path, cache, progress=False), request.param


def test_folder_is_keyed_by_the_file_hash_and_reloads_exactly(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, cache, folder, tied = built
    assert folder == gguf_cache_dir(path, cache).resolve()
    assert folder.parent == (cache / "gguf").resolve() and folder.name.startswith("tiny-")
    marker = gguf_source(folder)
    assert marker is not None and marker["sha256"] == gguf_mod.file_sha256(path)
    assert marker["checks"]["logits_max_abs_diff"] == 0.0
    assert marker["checks"]["tie_word_embeddings"] is tied
    assert any(folder.glob("*.safetensors")) and (folder / "chat_template.jinja").is_file()
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"]  # written explicitly (DESIGN §5)
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    # against transformers' own GGUF reading: same ids (also through plain AutoTokenizer),
    # same chat rendering, same logits
    want_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    got_tok = AutoTokenizer.from_pretrained(str(folder))
    for text in ("please explain the river 12 345", " two  spaces\nnew line", "stop apple"):
        assert got_tok.encode(text) == want_tok.encode(text)
    chat = [{"role": "user", "content": "please explain"}]
    assert got_tok.apply_chat_template(chat, tokenize=False) == want_tok.apply_chat_template(
        chat, tokenize=False
    )
    want = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    got = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = torch.tensor([want_tok.encode("please explain the garden apple river")])
    with torch.no_grad():
        assert torch.equal(got(input_ids=ids).logits, want(input_ids=ids).logits)


def test_second_use_is_a_cache_hit(built, monkeypatch):
    path, cache, folder, _ = built

    def boom(*a, **k):
        raise AssertionError("rebuilt a cached GGUF folder")

    monkeypatch.setattr(gguf_mod, "_build", boom)
    assert dequantize_gguf(path, cache, progress=False) == folder
    before = (folder / MARKER).stat().st_mtime_ns
    monkeypatch.setenv("STOPLENS_CACHE", str(cache))
    loaded = load_model(path, require_trigger=False, progress=False)  # a .gguf is a model
    assert loaded.source.model == str(folder) and loaded.trigger_id is not None
    assert preflight(str(path), trigger="<<STOP>>", progress=False) == str(folder)
    assert (folder / MARKER).stat().st_mtime_ns == before


def test_other_bytes_get_another_folder(built, tmp_path):
    path, cache, folder, _ = built
    other = tmp_path / "tiny.gguf"
    other.write_bytes(path.read_bytes() + b"\0")
    assert gguf_cache_dir(other, cache).name != folder.name


def test_missing_gguf_package_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a)
    )
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    with pytest.raises(StoplensError, match=r"pip install 'stoplens\[gguf\]'") as e:
        dequantize_gguf(f, tmp_path / "cache", progress=False)
    assert "\n" not in str(e.value)


def test_unreadable_gguf_is_a_clear_error(tmp_path):
    f = tmp_path / "broken.gguf"
    f.write_bytes(b"GGUF not really")
    with pytest.raises(StoplensError, match="could not read") as e:
        dequantize_gguf(f, tmp_path / "cache", progress=False)
    assert "\n" not in str(e.value)
    assert not list((tmp_path / "cache" / "gguf").glob("*"))  # nothing half-built is left


@pytest.mark.slow
def test_stoplens_run_on_a_gguf_file(tmp_path, write_gguf, monkeypatch):
    """`stoplens run --model file.gguf`: the file is resolved to its cached folder before any
    stage writes, trained on (the adapter names the folder), and analysed merged."""
    from stoplens.cli import main

    monkeypatch.setenv("STOPLENS_CACHE", str(tmp_path / "cache"))
    path = write_gguf(tmp_path / "tiny.gguf")
    run = tmp_path / "run"
    argv = ["run", "--model", str(path), "--run-dir", str(run), "--regimes", "behavioral",
            "--train-steps", "2", "--n-pairs", "8", "--no-causal", "--trigger", "<|halt|>",
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    folder = gguf_cache_dir(path, tmp_path / "cache").resolve()
    cfg = json.loads((run / "models/behavioral/final/adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(folder)
    res = json.loads((run / "report" / "results.json").read_text())
    assert res["meta"]["config"]["spec"]["model"] == str(folder)
    assert res["meta"]["config"]["spec"]["trigger"] == "<|halt|>"
    assert "merged for inference" in res["meta"]["models"]["ft"]
    assert "layerwise" in res and "eval" in res
