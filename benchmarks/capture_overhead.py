"""Capture overhead: stoplens `capture_residuals` (all residual layers, the 5 post-instruction
decision positions) against bare batched forward passes of the same model on the same prompts,
batches, batch size and padding.

Baselines (all use the same length-sorted, right-padded batches as stoplens):
  forward        model(...) as Hugging Face runs it: final norm + LM head at every position
  forward[k=1]   model(..., logits_to_keep=1): LM head at the last position only
  backbone       model.get_decoder()(...): every block + final norm, no LM head

stoplens stops after the last block (no final norm, no LM head), so `forward` flatters it
when the vocabulary is large; `backbone` is the honest like-for-like baseline.

    .venv/bin/python benchmarks/capture_overhead.py [--quick] [--model-config small] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys

import _common as C
import torch

TARGET = 1.10


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    C.add_common_args(p, default_config="small")
    p.add_argument("--pairs", type=int, default=None, help="pairs (2x prompts); default 128")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 5, quick 3)")
    a = p.parse_args(argv)
    info = C.machine(a.device, C.apply_threads(a.threads))
    n = a.pairs or (64 if a.quick else 128)
    reps = a.reps or (3 if a.quick else 7)
    dtype = C.resolve_dtype(a.dtype, a.device)

    from stoplens.capture.extract import capture_residuals, pad_batch

    tok = C.make_tokenizer(a.seed)
    ep = C.make_pairs(tok, n, a.seed)
    model = C.build_model(a.model_config, len(tok), a.device, dtype, a.seed)
    dev = torch.device(a.device)
    seqs = ep.trig_ids + ep.ctrl_ids
    post = ep.decision_positions("post")
    positions = post + post
    pad = tok.pad_token_id
    batches = C.length_batches([len(s) for s in seqs], a.batch_size)
    backbone = model.get_decoder()

    @torch.no_grad()
    def bare(kind: str) -> None:
        for idx in batches:
            ids, mask, pos = pad_batch([seqs[i] for i in idx], pad, dev)
            kw = dict(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
            if kind == "backbone":
                backbone(**kw)
            elif kind == "keep1":
                model(**kw, logits_to_keep=1)
            else:
                model(**kw)

    def stoplens_capture() -> None:
        capture_residuals(
            model, seqs, positions, pad_id=pad, batch_size=a.batch_size, progress=False
        )

    fns = {
        "stoplens capture": stoplens_capture,
        "forward": lambda: bare("full"),
        "forward[k=1]": lambda: bare("keep1"),
        "backbone": lambda: bare("backbone"),
    }
    times = C.time_interleaved(fns, reps, a.device)
    best = {k: C.best(v) for k, v in times.items()}
    med = {k: C.median(v) for k, v in times.items()}
    cap = best["stoplens capture"]
    tokens = sum(len(seqs[i]) for b in batches for i in b)
    padded = sum(len(b) * max(len(seqs[i]) for i in b) for b in batches)
    peak = C.bf16_peak(a.device)
    flops = C.model_flops_per_token(model) * padded

    rows = []
    for name, t in best.items():
        row = [name, t, med[name], cap / t, 2 * n / t]
        if peak is not None:
            row.append(flops / t / peak)
        rows.append(row)
    headers = ["method", "best s", "median s", "stoplens / this (best)", "prompts/s"]
    if peak is not None:
        headers.append("fraction of bf16 peak")
    tbl = C.table(headers, rows)
    r_fwd, r_bb = cap / best["forward"], cap / best["backbone"]
    verdict = (
        f"stoplens / forward = {r_fwd:.3f} (target <= {TARGET}: "
        f"{'met' if r_fwd <= TARGET else 'MISSED'}); stoplens / backbone (like for like, "
        f"no LM head in either) = {r_bb:.3f} ({'met' if r_bb <= TARGET else 'MISSED'})"
    )
    L = len(model.model.layers)
    setup = (
        f"model `{a.model_config}` (random weights, {L} layers, d={model.config.hidden_size}, "
        f"vocab {model.config.vocab_size}, {sum(q.numel() for q in model.parameters()) / 1e6:.1f}M "
        f"params, {str(dtype).replace('torch.', '')}); {2 * n} prompts ({n} pairs), "
        f"{tokens} tokens ({padded} padded), batch {a.batch_size}, capture of {L + 1} residual "
        f"layers x 5 positions; {reps} interleaved rounds after 1 warm-up, ratios from the "
        "best round of each"
    )
    print(setup)
    print(tbl)
    print(verdict)
    if not a.no_write:
        body = (
            f"## capture_overhead\n\n`{' '.join(['benchmarks/capture_overhead.py', *(argv if argv is not None else sys.argv[1:])])}`\n\n"
            f"{C.machine_lines(info)}\n\n{setup}.\n\n{tbl}\n\n{verdict}.\n"
        )
        C.write_section(f"capture_overhead:{a.model_config}:{a.device}", body)
    return {"times": best, "ratio_forward": r_fwd, "ratio_backbone": r_bb}


if __name__ == "__main__":
    main()
