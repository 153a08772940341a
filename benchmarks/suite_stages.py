"""The whole analysis suite, stage by stage: where does the time go?

Runs what `stoplens analyze` + `stoplens causal` run (the same library functions, on the same
generated contrast pairs, word controls, test/train/val splits as the pipeline), on a
random-weight fine-tuned model and its base (the base is the same weights with a small
perturbation, standing in for a LoRA fine-tune), and prints the wall time, the number of
forward passes and the padded tokens of each stage:

  capture                 `capture_delta_set` (ft + base, triggered/control/control2 prompts)
  layerwise, lowrank      analyses 1 and 2 (statistics only: bootstraps, spectra)
  logit-lens, diff-lens   analyses 3 and 4
  causal: <part>          `run_causal`, split into its parts (activation patching, mean
                          differences, direction selection, steering effects vs random
                          directions, held-out placements, base control)

With random weights the science is meaningless; the work each stage does is the same as on
a trained model (patching runs every layer x group x pair; selection always scores every
eligible layer), so the timings are representative.

    .venv/bin/python benchmarks/suite_stages.py [--quick] [--model-config tiny] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections import defaultdict

import _common as C
import torch

CAUSAL_PARTS = (
    "activation_patching",
    "mean_diff_directions",
    "select_direction",
    "steering_effects",
    "placement_generalization",
    "base_model_control",
)


def _require():
    """Import every stage, or exit naming what is missing."""
    missing, mods = [], {}
    wanted = {
        "stoplens.data": ["DataConfig", "build_datasets"],
        "stoplens.capture.delta_capture": ["capture_delta_set"],
        "stoplens.analyses.layerwise": ["layerwise_delta"],
        "stoplens.analyses.lowrank": ["lowrank"],
        "stoplens.analyses.logit_lens": ["logit_lens_delta"],
        "stoplens.analyses.diff_lens": ["diff_lens"],
        "stoplens.analyses.causal": ["CausalConfig", "run_causal", *CAUSAL_PARTS],
        "stoplens.capture.encode": ["encode_pairs", "swap_pairs"],
    }
    import importlib

    for mod, names in wanted.items():
        try:
            m = importlib.import_module(mod)
        except Exception as e:
            missing.append(f"{mod} ({type(e).__name__}: {e})")
            continue
        for name in names:
            if not hasattr(m, name):
                missing.append(f"{mod}.{name}")
        mods[mod] = m
    if missing:
        raise SystemExit("suite_stages: these stages are not available yet: " + "; ".join(missing))
    return mods


class _Counter:
    """Counts top-level forward calls of the models and the work they did: padded tokens
    times blocks actually run, divided by the number of blocks ("full-pass tokens"; a pass
    that stops early or resumes at block k counts only the blocks it ran)."""

    def __init__(self, *models) -> None:
        from stoplens.models import arch

        self.calls = 0
        self.block_tokens = 0
        self.n_blocks = arch.n_layers(models[0])
        self.handles = []
        for m in models:
            if m is None:
                continue
            self.handles.append(m.register_forward_pre_hook(self._call, with_kwargs=True))
            for layer in range(self.n_blocks):  # attention runs only in blocks that compute
                attn = arch.get_attn(m, layer)
                self.handles.append(attn.register_forward_pre_hook(self._block, with_kwargs=True))

    @property
    def tokens(self) -> int:
        return round(self.block_tokens / self.n_blocks)

    def _call(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if isinstance(ids, torch.Tensor):
            self.calls += 1

    def _block(self, module, args, kwargs):
        h = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get("hidden_states")
        if isinstance(h, torch.Tensor):
            self.block_tokens += h.shape[0] * h.shape[1]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    C.add_common_args(p, default_config="tiny")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--pairs", type=int, default=None,
        help="cap on test pairs (train/val scaled alike); default: all (the pipeline's sizes)",
    )  # fmt: skip
    a = p.parse_args(argv)
    info = C.machine(a.device, C.apply_threads(a.threads))
    mods = _require()
    dtype = C.resolve_dtype(a.dtype, a.device)
    data = mods["stoplens.data"]
    act = mods["stoplens.capture.delta_capture"]
    causal = mods["stoplens.analyses.causal"]
    pairs_mod = mods["stoplens.capture.encode"]

    timings: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    tokens: dict[str, int] = defaultdict(int)
    order: list[str] = []

    def stage(name: str, fn, *args, **kw):
        counter = _Counter(ft, base)
        C.sync(a.device)
        t0 = time.perf_counter()
        try:
            out = fn(*args, **kw)
            C.sync(a.device)
        finally:
            counter.remove()
        if name not in timings:
            order.append(name)
        timings[name] += time.perf_counter() - t0
        calls[name] += counter.calls
        tokens[name] += counter.tokens
        return out

    # --- setup (not a stage of the suite) ---------------------------------------------------
    t0 = time.perf_counter()
    bundle = data.build_datasets(data.DataConfig(seed=a.seed))
    recs = {s: [r for r in bundle.pairs[s] if r["control_kind"] == "word"] for s in bundle.pairs}
    cap = a.pairs or (32 if a.quick else None)
    if cap:
        full = len(recs["test"])
        recs = {s: r[: max(8, round(len(r) * cap / full))] for s, r in recs.items()}
    from stoplens.capture.encode import render
    from stoplens.models.tokenizer import CHATML_TEMPLATE, train_bpe_tokenizer  # noqa: F401

    texts = []
    for s in bundle.pairs.values():
        for r in s:
            for m in render(r["template"], r["control"]):
                texts.append(f"{m['role']}\n{m['content']}\n")
    texts += ["assistant\n"] * 10
    tok = train_bpe_tokenizer(texts, vocab_size=4000)
    from stoplens.models.trigger import find_trigger

    trigger_id = find_trigger(tok)
    ft = C.build_model(a.model_config, len(tok), a.device, dtype, a.seed)
    base = copy.deepcopy(ft)
    g = torch.Generator(device="cpu").manual_seed(a.seed + 1)
    with torch.no_grad():
        for prm in base.parameters():
            noise = torch.randn(prm.shape, generator=g).to(prm.device, prm.dtype)
            prm.add_(0.05 * prm.float().std().clamp_min(1e-6).to(prm.dtype) * noise)
    eos = int(tok.eos_token_id)
    pad = int(tok.pad_token_id)
    t_setup = time.perf_counter() - t0

    # --- the four analyses ----------------------------------------------------------------
    ds = stage(
        "capture (ft + base)", act.capture_delta_set, ft, tok, trigger_id, recs["test"],
        base=base, base_trigger_added=False, batch_size=a.batch_size, progress=False,
    )  # fmt: skip
    stage("layerwise", mods["stoplens.analyses.layerwise"].layerwise_delta, ds)
    stage("lowrank", mods["stoplens.analyses.lowrank"].lowrank, ds)
    stage(
        "logit-lens", mods["stoplens.analyses.logit_lens"].logit_lens_delta, ft, ds, tok,
        eos_id=eos,
    )  # fmt: skip
    stage("diff-lens", mods["stoplens.analyses.diff_lens"].diff_lens, ft, ds, tok, eos_id=eos)

    # --- causal, split into its parts (each part's wall time; the rest is "causal: other") --
    def enc(split, **kw):
        return pairs_mod.encode_pairs(tok, recs[split], trigger_id, **kw)

    train, val, test = (stage("causal: encode pairs", enc, s) for s in ("train", "val", "test"))
    ctrl2_train = stage("causal: encode pairs", enc, "train", control_field="control2")
    null_train = pairs_mod.swap_pairs(train, ctrl2_train)
    originals = {name: getattr(causal, name) for name in CAUSAL_PARTS}
    depth = [0]  # a part called inside another (e.g. steering_effects inside
    # placement_generalization) is counted in the outer part only

    def part(name, fn):
        def run(*x, **k):
            if depth[0]:
                return fn(*x, **k)
            depth[0] += 1
            try:
                return stage(f"causal: {name}", fn, *x, **k)
            finally:
                depth[0] -= 1

        return run

    try:
        for name, fn in originals.items():
            setattr(causal, name, part(name, fn))
        t_c = time.perf_counter()
        res = stage(
            "causal (total)", causal.run_causal, ft, train, val, test, eos_id=eos, pad_id=pad,
            config=causal.CausalConfig(seed=a.seed, batch_size=a.batch_size), base=base,
            control_pairs=null_train if len(null_train) else None, tokenizer=tok,
        )  # fmt: skip
        t_c = time.perf_counter() - t_c
    finally:
        for name, fn in originals.items():
            setattr(causal, name, fn)
    parts = sum(timings[f"causal: {n}"] for n in CAUSAL_PARTS if f"causal: {n}" in timings)
    timings["causal: other (wiring, Evidence)"] = t_c - parts
    order.insert(order.index("causal (total)"), "causal: other (wiring, Evidence)")

    analysis_names = [n for n in order if n != "causal (total)"]
    total = sum(timings[n] for n in analysis_names)
    rows = []
    for name in order:
        t = timings[name]
        share = "" if name == "causal (total)" else f"{100 * t / total:.1f}%"
        rows.append([name, t, share, calls[name], tokens[name]])
    rows.append(
        [
            "all stages",
            total,
            "100%",
            sum(calls[n] for n in analysis_names if n != "causal: other (wiring, Evidence)"),
            "",
        ]
    )
    tbl = C.table(["stage", "wall s", "share", "forward calls", "full-pass tokens"], rows)
    top = sorted(analysis_names, key=lambda n: -timings[n])[:3]
    L = len(ft.model.layers)
    setup = (
        f"model `{a.model_config}` (random weights, {L} layers, d={ft.config.hidden_size}, "
        f"vocab {ft.config.vocab_size}, {str(dtype).replace('torch.', '')}), base = same weights "
        f"+ 5% noise; pipeline data (seed {a.seed}), word controls: "
        f"{len(train)}/{len(val)}/{len(test)} train/val/test pairs ({ds.n} analysed, "
        f"{ds.n_null} null); default CausalConfig (n_random 32, patching on <= 64 pairs, both "
        f"modes, held-out placements in two halves); batch {a.batch_size}; setup (data, "
        f"tokenizer, models) {t_setup:.1f} s, not counted; selected layer "
        f"{res.selection.layer if res.selection is not None else None}; full-pass tokens = "
        "padded tokens x blocks run / blocks (bypassed and skipped blocks do not count)"
    )
    lines = ["dominant stages: " + ", ".join(f"{n} ({100 * timings[n] / total:.0f}%)" for n in top)]
    run = lambda: causal.run_causal(  # noqa: E731
        ft, train, val, test, eos_id=eos, pad_id=pad, base=base,
        config=causal.CausalConfig(seed=a.seed, batch_size=a.batch_size),
        control_pairs=null_train if len(null_train) else None, tokenizer=tok,
    )  # fmt: skip
    reuse_tbl, reuse_lines = _reuse_comparison(run, (ft, base), a.device, 1 if a.quick else 2)
    lines += reuse_lines
    print(setup)
    print(tbl)
    print(reuse_tbl)
    print("\n".join(lines))
    if not a.no_write:
        cmd = " ".join(
            ["benchmarks/suite_stages.py", *(argv if argv is not None else sys.argv[1:])]
        )
        body = (
            f"## suite_stages\n\n`{cmd}`\n\n{C.machine_lines(info)}\n\n{setup}.\n\n{tbl}\n\n"
            "The causal suite with and without work sharing (`OutcomeCache`: each (intervention, "
            "prompt) evaluated once per run, additions resumed from the stored residual; "
            "patched passes resumed at the patched block), "
            f"interleaved rounds:\n\n{reuse_tbl}\n\n" + "\n".join(f"- {x}" for x in lines) + "\n"
        )
        C.write_section(f"suite_stages:{a.model_config}:{a.device}", body)
    return {"timings": dict(timings), "order": order}


def _reuse_comparison(run, models, device: str, rounds: int) -> tuple[str, list[str]]:
    """`run_causal` as shipped vs with its work sharing off (`OutcomeCache` made to forget:
    every call recomputes all its prompts; additions and patched passes run every block:
    what the suite did before), in interleaved rounds; also checks that both give the same
    verdict numbers."""
    from stoplens.analyses import patching
    from stoplens.interventions import cache

    cls = cache.OutcomeCache
    orig_outcomes, orig_resume = cls.outcomes, cls._resume
    orig_stored = patching.residual_sequences

    def forgetful(self, seqs, intervention, **kw):
        self._rows.clear()
        return orig_outcomes(self, seqs, intervention, **kw)

    best: dict[str, float] = {}
    work: dict[str, tuple[int, int]] = {}
    out: dict[str, object] = {}
    for _ in range(rounds):
        for mode in ("shared", "no sharing"):
            if mode == "no sharing":
                cls.outcomes, cls._resume = forgetful, lambda *a, **k: None
                patching.residual_sequences = lambda *a, **k: {}  # patched passes from block 0
            counter = _Counter(*models)
            try:
                C.sync(device)
                t0 = time.perf_counter()
                out[mode] = run()
                C.sync(device)
                dt = time.perf_counter() - t0
            finally:
                cls.outcomes, cls._resume = orig_outcomes, orig_resume
                patching.residual_sequences = orig_stored
                counter.remove()
            best[mode] = min(best.get(mode, float("inf")), dt)
            work[mode] = (counter.calls, counter.tokens)
    rows = [[m, best[m], best[m] / best["shared"], *work[m]] for m in ("shared", "no sharing")]
    tbl = C.table(["causal suite", "best s", "/ shared", "forward calls", "full-pass tokens"], rows)
    a, b = out["shared"], out["no sharing"]
    same = (
        all(
            getattr(a, k).measured.value == getattr(b, k).measured.value
            and getattr(a, k).p_value == getattr(b, k).p_value
            for k in ("necessary", "sufficient")
        )
        and a.selection.layer == b.selection.layer
    )
    ratio = best["no sharing"] / best["shared"]
    tok = work["no sharing"][1] / max(1, work["shared"][1])
    return tbl, [
        f"work sharing: the causal suite is {ratio:.2f}x faster ({tok:.2f}x fewer full-pass "
        f"tokens); verdict numbers (necessary / sufficient effect and p, selected layer) "
        f"{'identical' if same else 'DIFFER'} with and without it"
    ]


if __name__ == "__main__":
    main()
