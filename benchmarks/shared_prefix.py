"""Shared prefixes: `last_logits` running the prefix a batch's prompts share once (from the
key/value cache) against full passes, side by side, on the same prompts and batches.

The prompts are the benchmark's random-word pairs behind a fixed system header of 20 tokens
(SmolLM2-135M-Instruct's default system prompt is 20 of a pair prompt's ~47 tokens), on 5 of
6 prompts; the sixth has its own header (like the system-prompt placement). Prints the time
ratio, the tokens the shared pass skips, and the largest logit difference (float rounding).

    .venv/bin/python benchmarks/shared_prefix.py [--quick] [--model-config small] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys

import _common as C
import torch

HEADER_TOKENS = 20


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    C.add_common_args(p, default_config="small")
    p.add_argument("--pairs", type=int, default=None, help="pairs (2x prompts); default 96")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 5, quick 3)")
    a = p.parse_args(argv)
    info = C.machine(a.device, C.apply_threads(a.threads))
    n = a.pairs or (48 if a.quick else 96)
    reps = a.reps or (3 if a.quick else 5)
    dtype = C.resolve_dtype(a.dtype, a.device)

    from stoplens.capture.extract import last_logits

    tok = C.make_tokenizer(a.seed)
    ep = C.make_pairs(tok, n, a.seed)
    model = C.build_model(a.model_config, len(tok), a.device, dtype, a.seed)
    g = torch.Generator().manual_seed(a.seed)
    header = torch.randint(10, len(tok), (HEADER_TOKENS,), generator=g).tolist()
    seqs = []
    for i, s in enumerate(ep.trig_ids + ep.ctrl_ids):
        own = torch.randint(10, len(tok), (HEADER_TOKENS,), generator=g).tolist()
        seqs.append([*(own if i % 6 == 5 else header), *s])
    pad = tok.pad_token_id
    kw = dict(pad_id=pad, batch_size=a.batch_size, progress=False)
    out: dict[str, torch.Tensor] = {}

    def run(share: bool) -> None:
        out[str(share)] = last_logits(model, seqs, share_prefix=share, **kw)

    times = C.time_interleaved(
        {"full passes": lambda: run(False), "shared prefix": lambda: run(True)}, reps, a.device
    )
    best = {k: C.best(v) for k, v in times.items()}
    med = {k: C.median(v) for k, v in times.items()}
    diff = float((out["True"] - out["False"]).abs().max())
    tokens = sum(len(s) for s in seqs)
    skipped = sum(HEADER_TOKENS for i in range(len(seqs)) if i % 6 != 5)
    ratio = best["shared prefix"] / best["full passes"]
    rows = [[k, best[k], med[k], best[k] / best["full passes"]] for k in best]
    tbl = C.table(["method", "best s", "median s", "time / full passes (best)"], rows)
    verdict = (
        f"shared prefix / full passes = {ratio:.3f} with {skipped / tokens:.0%} of the tokens "
        f"in shared headers; max |Δ logit| = {diff:.2e} ({str(dtype).replace('torch.', '')})"
    )
    L = len(model.model.layers)
    setup = (
        f"model `{a.model_config}` (random weights, {L} layers, d={model.config.hidden_size}, "
        f"vocab {model.config.vocab_size}, {str(dtype).replace('torch.', '')}); {len(seqs)} "
        f"prompts ({n} pairs behind a {HEADER_TOKENS}-token header, 5 of 6 the same), "
        f"{tokens} tokens, batch {a.batch_size}; last-position logits; {reps} interleaved "
        "rounds after 1 warm-up, ratios from the best round of each"
    )
    print(setup)
    print(tbl)
    print(verdict)
    if not a.no_write:
        cmd = " ".join(
            ["benchmarks/shared_prefix.py", *(argv if argv is not None else sys.argv[1:])]
        )
        body = (
            f"## shared_prefix\n\n`{cmd}`\n\n{C.machine_lines(info)}\n\n{setup}.\n\n{tbl}\n\n"
            f"{verdict}.\n"
        )
        C.write_section(f"shared_prefix:{a.model_config}:{a.device}", body)
    return {"times": best, "ratio": ratio, "max_abs_diff": diff}


if __name__ == "__main__":
    main()
