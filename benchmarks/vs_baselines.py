"""stoplens capture against the ways all-layer activations are usually collected, on the same
local model object, the same prompts and the same positions (the 5 post-instruction decision
positions of every trigger and control prompt, all residual layers):

  per-prompt loop   one forward per prompt with output_hidden_states=True (the predecessor's
                    approach; full logits at every position, no padding)
  nnsight           nnsight tracing the same padded, length-sorted batches, saving every
                    block's input and the last block's output (full forward)
  nnsight+stop      the same with tracer.stop() after the last save (no final norm/LM head,
                    like stoplens)

All three must produce the same activations: the maximum absolute differences are printed.
(HF's last hidden state is after the final norm; it is compared with stoplens' residual[L]
passed through the model's final norm.)

    .venv/bin/python benchmarks/vs_baselines.py [--quick] [--pairs 256] [--model-config tiny]
"""

from __future__ import annotations

import argparse
import sys

import _common as C
import torch

TARGET_LOOP = 10.0
TARGET_NNSIGHT = 1.0


def nnsight_capture(model, seqs, positions, pad_id, batch_size, stop: bool):
    """All residual layers at ``positions`` with nnsight, on stoplens' batches. Returns
    [n, L+1, P, d] float32 on CPU, or raises ImportError."""
    from nnsight import NNsight

    from stoplens.capture.extract import pad_batch
    from stoplens.capture.hooks import output_hidden

    nm = NNsight(model)
    dev = model.get_input_embeddings().weight.device
    out = torch.empty(
        len(seqs), len(model.model.layers) + 1, len(positions[0]), model.config.hidden_size
    )
    for idx in C.length_batches([len(s) for s in seqs], batch_size):
        ids, mask, pos_ids = pad_batch([seqs[i] for i in idx], pad_id, dev)
        box: dict = {}  # nnsight cannot write new locals back into a function frame on 3.11
        with (
            torch.no_grad(),
            nm.trace(
                input_ids=ids, attention_mask=mask, position_ids=pos_ids, use_cache=False
            ) as tracer,
        ):
            box["h"] = [blk.input.save() for blk in nm.model.layers]
            box["last"] = nm.model.layers[-1].output.save()
            if stop:
                tracer.stop()
        hs = [*box["h"], output_hidden(box["last"])]
        b = torch.arange(len(idx)).unsqueeze(1)
        p = torch.as_tensor([positions[i] for i in idx])
        out[idx] = torch.stack([h[b, p.to(h.device)].float().cpu() for h in hs], dim=1)
    return out


@torch.no_grad()
def loop_capture(model, seqs, positions):
    """The predecessor's loop: one forward per prompt, output_hidden_states=True."""
    dev = model.get_input_embeddings().weight.device
    rows = []
    for s, p in zip(seqs, positions, strict=True):
        out = model(
            input_ids=torch.tensor([s], device=dev), output_hidden_states=True, use_cache=False
        )
        rows.append(torch.stack([h[0, p].float().cpu() for h in out.hidden_states]))
    return torch.stack(rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    C.add_common_args(p, default_config="tiny")
    p.add_argument("--pairs", type=int, default=None, help="pairs (2x prompts); default 256")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 3, quick 2)")
    a = p.parse_args(argv)
    info = C.machine(a.device, C.apply_threads(a.threads))
    n = a.pairs or (64 if a.quick else 256)
    reps = a.reps or (2 if a.quick else 3)
    dtype = C.resolve_dtype(a.dtype, a.device)

    from stoplens.capture.extract import capture_residuals, unembed  # noqa: F401
    from stoplens.models import arch

    tok = C.make_tokenizer(a.seed)
    ep = C.make_pairs(tok, n, a.seed)
    model = C.build_model(a.model_config, len(tok), a.device, dtype, a.seed)
    seqs = ep.trig_ids + ep.ctrl_ids
    post = ep.decision_positions("post")
    positions = post + post
    pad = tok.pad_token_id
    L = arch.n_layers(model)

    def ours():
        return capture_residuals(
            model, seqs, positions, pad_id=pad, batch_size=a.batch_size, progress=False
        )

    fns = {
        "stoplens capture": ours,
        "per-prompt loop": lambda: loop_capture(model, seqs, positions),
    }
    nnsight_note = ""
    try:
        import nnsight

        nnsight_capture(model, seqs[:2], positions[:2], pad, a.batch_size, stop=True)
        fns["nnsight"] = lambda: nnsight_capture(model, seqs, positions, pad, a.batch_size, False)
        fns["nnsight+stop"] = lambda: nnsight_capture(
            model, seqs, positions, pad, a.batch_size, True
        )
        nnsight_note = f"nnsight {nnsight.__version__}"
    except Exception as e:  # not installed, or incompatible with this transformers
        nnsight_note = f"nnsight column skipped: {type(e).__name__}: {e}".splitlines()[0]
        print(nnsight_note, file=sys.stderr)

    # same activations? (computed once, outside the timing)
    res = {name: fn() for name, fn in fns.items()}
    A, B = res["stoplens capture"], res["per-prompt loop"]
    norm = arch.get_final_norm(model)
    with torch.no_grad():
        A_normed = norm(A[:, L].to(model.device, dtype)).float().cpu()
    diffs = [
        ["per-prompt loop, residual 0..L-1", float((A[:, :L] - B[:, :L]).abs().max())],
        ["per-prompt loop, final-norm(residual L)", float((A_normed - B[:, L]).abs().max())],
    ]
    for name in ("nnsight", "nnsight+stop"):
        if name in res:
            diffs.append([f"{name}, residual 0..L", float((A - res[name]).abs().max())])
    scale = float(A.abs().max())
    del res

    times = C.time_interleaved(fns, reps, a.device)
    best = {k: C.best(v) for k, v in times.items()}
    med = {k: C.median(v) for k, v in times.items()}
    ours_t = best["stoplens capture"]
    rows = [[k, t, med[k], t / ours_t, 2 * n / t] for k, t in best.items()]
    tbl = C.table(["method", "best s", "median s", "this / stoplens (speed-up)", "prompts/s"], rows)
    dtbl = C.table(["stoplens vs", "max abs diff"], diffs)
    lines = [
        f"per-prompt loop / stoplens = {best['per-prompt loop'] / ours_t:.1f}x "
        f"(target >= {TARGET_LOOP:.0f}x: "
        f"{'met' if best['per-prompt loop'] / ours_t >= TARGET_LOOP else 'MISSED'})"
    ]
    for name in ("nnsight", "nnsight+stop"):
        if name in best:
            r = best[name] / ours_t
            lines.append(
                f"{name} / stoplens = {r:.2f}x (target >= {TARGET_NNSIGHT:.0f}x: "
                f"{'met' if r >= TARGET_NNSIGHT else 'MISSED'})"
            )
    if "nnsight" not in best:
        lines.append(nnsight_note)
    per_loop, per_ours = 1e3 * best["per-prompt loop"] / (2 * n), 1e3 * ours_t / (2 * n)
    lines.append(
        f"per prompt: the loop takes {per_loop:.2f} ms, stoplens {per_ours:.2f} ms (its "
        f"batched forward work); the loop's other {per_loop - per_ours:.2f} ms is per-call "
        "overhead (Python, HF forward setup, all hidden states, logits at every position), "
        "which is all batching can remove: on a CPU, where the batched pass is compute-bound, "
        "the speed-up is bounded by that overhead / compute ratio"
    )
    setup = (
        f"model `{a.model_config}` (random weights, {L} layers, d={model.config.hidden_size}, "
        f"vocab {model.config.vocab_size}, {str(dtype).replace('torch.', '')}); {2 * n} prompts "
        f"({n} pairs, {sum(map(len, seqs))} tokens), {L + 1} residual layers x 5 positions, "
        f"batch {a.batch_size}; {reps} interleaved rounds after 1 warm-up, ratios from the best "
        f"round of each; activation scale max|h| = {scale:.3g}; {nnsight_note}"
    )
    print(setup)
    print(tbl)
    print(dtbl)
    print("\n".join(lines))
    if not a.no_write:
        cmd = " ".join(
            ["benchmarks/vs_baselines.py", *(argv if argv is not None else sys.argv[1:])]
        )
        body = (
            f"## vs_baselines\n\n`{cmd}`\n\n{C.machine_lines(info)}\n\n{setup}.\n\n{tbl}\n\n"
            f"Same activations:\n\n{dtbl}\n\n" + "\n".join(f"- {x}" for x in lines) + "\n"
        )
        C.write_section(f"vs_baselines:{a.model_config}:{a.device}", body)
    return {"times": best, "diffs": diffs}


if __name__ == "__main__":
    main()
