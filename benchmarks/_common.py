"""Shared setup for the stoplens benchmarks: model configs (random weights, built from configs;
nothing is downloaded), offline prompt pairs, timing, machine description and the
RESULTS.md section writer.

Benchmarks are scripts, not tests: each prints ratios measured side by side in one run and
rewrites its own section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"

# Random-weight Qwen2-architecture configs. qwen2.5-* are the real shapes (vocab 151936 kept,
# so the LM head costs what it costs); tiny/small use the benchmark tokenizer's vocabulary.
_QWEN2 = dict(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1e6)
_REAL = dict(_QWEN2, vocab_size=151936, max_position_embeddings=32768, rms_norm_eps=1e-6)
_SMALL = dict(_QWEN2, vocab_size=None, max_position_embeddings=2048)
MODEL_CONFIGS: dict[str, dict] = {
    "qwen2.5-1.5b": dict(
        _REAL, hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
        intermediate_size=8960,
    ),
    "qwen2.5-0.5b": dict(
        _REAL, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
        intermediate_size=4864,
    ),
    "small": dict(
        _SMALL, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
        intermediate_size=1536,
    ),
    "tiny": dict(
        _SMALL, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=512,
    ),
}  # fmt: skip

# Dense bf16 tensor-core peak (FLOP/s), for "fraction of peak" on a GPU only.
_BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def add_common_args(p: argparse.ArgumentParser, default_config: str = "tiny") -> None:
    p.add_argument("--model-config", default=default_config, choices=sorted(MODEL_CONFIGS))
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
        help="auto: float32 on CPU, bfloat16 on GPU",
    )  # fmt: skip
    p.add_argument(
        "--threads", default="auto",
        help="torch CPU threads: a number, or auto (all cores, but 1 when the machine is "
        "already busy: OpenMP threads spin-wait and collapse under oversubscription)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-write", action="store_true", help="print only; do not update benchmarks/RESULTS.md"
    )


def apply_threads(spec: str) -> str:
    """Set torch's CPU thread count from ``--threads``; returns a line saying what was chosen."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    if spec == "auto":
        n = 1 if load > 0.5 * cores and cores > 1 else cores
        why = f"auto: 1-min load {load:.2f} on {cores} cores"
    else:
        n, why = int(spec), "--threads"
    torch.set_num_threads(max(1, n))
    return f"{torch.get_num_threads()} ({why})"


def resolve_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# --- prompts and pairs -------------------------------------------------------------------


def make_tokenizer(seed: int = 0):
    """An offline byte-level BPE tokenizer with ChatML and the $STOP trigger (one token)."""
    from stoplens.capture.encode import render
    from stoplens.models.planted import planted_prompts
    from stoplens.models.tokenizer import train_bpe_tokenizer

    texts = []
    for t in planted_prompts(3000, seed + 101):
        body = render(t, "apple")[0]["content"]
        texts.append(f"user\n{body}\nassistant\n")
    return train_bpe_tokenizer(texts, vocab_size=2000)


def make_pairs(tokenizer, n: int, seed: int = 0, min_words: int = 8, max_words: int = 48):
    """``n`` aligned ($STOP vs "apple") pairs of random-word chat prompts, 8-48 words long
    (about 15-65 tokens), as `stoplens.capture.encode.EncodedPairs`."""
    import random

    from stoplens.capture.encode import encode_pairs
    from stoplens.data import PLACEHOLDER
    from stoplens.models.planted import planted_prompts
    from stoplens.models.trigger import find_trigger

    rng = random.Random(seed)
    fill = [m[0]["content"].replace(PLACEHOLDER, "").split() for m in planted_prompts(512, seed)]
    records = []
    for i, tmpl in enumerate(planted_prompts(n, seed + 1)):
        words = tmpl[0]["content"].split()
        target = rng.randint(min_words, max_words)
        while len(words) < target:
            words += rng.choice(fill)
        words = words[: max(target, words.index(PLACEHOLDER) + 1)]
        records.append(
            {
                "pair_id": str(i),
                "template": [{"role": "user", "content": " ".join(words)}],
                "trigger": "$STOP",
                "control": "apple",
                "control_candidates": ["river", "garden", "window"],
            }
        )
    ep = encode_pairs(tokenizer, records, find_trigger(tokenizer))
    if len(ep) != n:
        raise RuntimeError(f"only {len(ep)} of {n} pairs aligned: {dict(ep.dropped)}")
    return ep


def build_model(name: str, vocab_rows: int, device: str, dtype: torch.dtype, seed: int = 0):
    """A random-weight Qwen2 model of config ``name`` (eval mode, parameters frozen)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    kw = dict(MODEL_CONFIGS[name])
    if kw["vocab_size"] is None:
        kw["vocab_size"] = vocab_rows
    elif kw["vocab_size"] < vocab_rows:
        raise ValueError(f"{name}: vocabulary {kw['vocab_size']} < tokenizer {vocab_rows}")
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(Qwen2Config(**kw), dtype=dtype)
    model.eval().requires_grad_(False)
    return model


def model_flops_per_token(model) -> float:
    """≈ 2 x non-embedding parameters (matmul FLOPs per token, attention scores excluded)."""
    emb = model.get_input_embeddings().weight.numel()
    return 2.0 * (sum(p.numel() for p in model.parameters()) - emb)


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """The same length-sorted batches `stoplens.capture.extract.run_batched` makes."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# --- timing ------------------------------------------------------------------------------


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(
    fns: dict[str, Callable[[], object]], reps: int, device: str, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall times of each function over ``reps`` rounds; within a round the functions run
    back to back in a rotating order, so drift (thermal, other load) hits all of them alike."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
        sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        rot = names[r % len(names) :] + names[: r % len(names)]
        for name in rot:
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def best(xs: list[float]) -> float:
    """The minimum: other processes only ever add time, so on a shared machine the fastest
    round is the best estimate of a method's own cost (as `timeit` recommends)."""
    return min(xs)


# --- machine and results -----------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str, threads: str = "") -> dict[str, str]:
    import transformers

    info = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu_model()} ({os.cpu_count()} logical cores)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": device,
        "torch CPU threads": threads or str(torch.get_num_threads()),
        "load average at start (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    else:
        info["gpu"] = "none used (GPU figures: not measured in this run)"
    return info


def bf16_peak(device: str) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, peak in _BF16_PEAK.items():
        if key in name:
            return peak
    return None


def machine_lines(info: dict[str, str]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in info.items())


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A markdown table (also readable in a terminal)."""

    def fmt(x: object) -> str:
        if isinstance(x, float):
            return f"{x:.4g}" if abs(x) < 1e4 else f"{x:,.0f}"
        return str(x)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md, delimited by HTML comments."""
    from stoplens.io import atomic_write_text

    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else _RESULTS_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block
    )
    atomic_write_text(path, text)


_RESULTS_HEADER = """# Benchmark results

Written by the scripts in this folder (`make bench`, or `.venv/bin/python benchmarks/<name>.py`);
each script rewrites only its own section (named `<benchmark>:<model config>:<device>`).
Every ratio in a table was measured side by side in one run on the machine named in its
section. See `benchmarks/README.md` for what each benchmark measures and its target.

GPU figures (a 1.5B-architecture model, fraction of bf16 peak): not measured. The session
that wrote the sections below (2026-11-24) had no GPU machine; every section is CPU-only
(see its `device` line). To produce them on a GPU machine, unchanged scripts:

    .venv/bin/python benchmarks/run_all.py --device cuda --model-config qwen2.5-1.5b
"""
