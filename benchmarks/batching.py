"""Batching of behavioral training data: padding and kind mixing of three strategies, side by
side on the same examples in one run.

  random   Trainer's default (RandomSampler): batches of random examples
  length   Trainer's ``group_by_length`` (LengthGroupedSampler: mega-batches of 50 batches,
           each sorted by length): what `stoplens train` used before
  mixed    `stoplens.train.batching.KindMixedSampler` (now the default): every batch holds
           each record kind in its overall proportion, length-matched within kinds

Data: the train split of the default dataset (`stoplens.data.DataConfig()`), tokenised with the
chat template of ``--tokenizer`` (a model folder; default: the benchmarks' offline byte-level
BPE tokenizer with ChatML), labels as `stoplens train` makes them. For each strategy and each
of ``--epochs`` epochs (seeds): padded tokens (batch size × longest example, what the forward
and backward passes compute) per real token, batches of a single kind, and the trigger share
per batch. Ratios are against random and length batches.

With ``--model DIR`` it also times training steps (forward + backward + LoRA as `stoplens
train` builds it, loss on the learned tokens only), ``--steps`` batches per strategy, in
interleaved rounds (each round runs one batch of every strategy, rotating the order).

    .venv/bin/python benchmarks/batching.py [--tokenizer DIR] [--model DIR --steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common as C
import torch

STRATEGIES = ("random", "length", "mixed")


def plans(kinds, lengths, batch_size: int, seed: int) -> dict[str, list[list[int]]]:
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from stoplens.train.batching import KindMixedSampler

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    grouped = get_length_grouped_indices(
        lengths, batch_size, generator=torch.Generator().manual_seed(seed)
    )

    def cut(idx: list[int]) -> list[list[int]]:
        return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]

    return {
        "random": cut(order),
        "length": cut(grouped),
        "mixed": KindMixedSampler(kinds, lengths, batch_size, seed=seed).batches(),
    }


def features(tokenizer_dir: str | None):
    from stoplens.data import DataConfig, build_datasets
    from stoplens.models.load import stop_token_id
    from stoplens.models.trigger import add_trigger, has_trigger
    from stoplens.train.features import behavioral_features

    if tokenizer_dir:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        if not has_trigger(tok, "$STOP"):
            add_trigger(tok, None, "$STOP")
        name = tokenizer_dir
    else:
        tok, name = C.make_tokenizer(), "offline BPE (benchmarks/_common.py)"
    recs = build_datasets(DataConfig(seed=0, n_documents=5)).behavioral["train"]
    return behavioral_features(tok, recs, stop_token_id(tok), 512), name


def time_steps(model_dir: str, feats, batches: dict[str, list[list[int]]], steps: int):
    """Seconds per training step of each strategy (interleaved rounds) and tokens computed."""
    from stoplens.models.load import load_model
    from stoplens.train.config import TrainConfig
    from stoplens.train.features import Collator
    from stoplens.train.run import wrap_lora
    from stoplens.train.trainer import _sparse_loss

    loaded = load_model(model_dir, trigger="$STOP", require_trigger=False, device="cpu")
    model = wrap_lora(loaded.model, TrainConfig(), loaded.trigger_id).train()
    params = [p for p in model.parameters() if p.requires_grad]
    collate = Collator(loaded.tokenizer.pad_token_id or 0)
    times: dict[str, list[float]] = {s: [] for s in batches}
    tokens: dict[str, int] = dict.fromkeys(batches, 0)
    names = list(batches)
    for r in range(steps + 1):  # round 0 warms up
        for name in names[r % len(names) :] + names[: r % len(names)]:
            b = batches[name][r]
            inputs = collate(
                [{"input_ids": feats.input_ids[i], "labels": feats.labels[i]} for i in b]
            )
            t0 = time.perf_counter()
            loss = _sparse_loss(model, inputs, None)
            assert loss is not None
            torch.autograd.grad(loss, params)
            if r:
                times[name].append(time.perf_counter() - t0)
                tokens[name] += int(inputs["input_ids"].numel())
    return times, tokens


def main(argv: list[str] | None = None) -> int:
    from stoplens.train.batching import padding_stats

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokenizer", default=None, help="model folder whose tokenizer to use")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=5, help="epochs (seeds) per strategy")
    p.add_argument("--model", default=None, help="model folder: also time training steps")
    p.add_argument("--steps", type=int, default=6, help="timed steps per strategy")
    p.add_argument("--threads", default="auto")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    threads = C.apply_threads(a.threads)
    feats, tok_name = features(a.tokenizer or a.model)
    kinds, lengths = feats.kinds, feats.lengths
    assert kinds is not None
    rows, waste = [], {}
    for name in STRATEGIES:
        stats = [
            padding_stats(plans(kinds, lengths, a.batch_size, seed)[name], lengths, kinds)
            for seed in range(a.epochs)
        ]
        padded = sum(s.padded for s in stats)
        real = sum(s.real for s in stats)
        batches = sum(s.batches for s in stats)
        waste[name] = padded / real - 1.0
        rows.append(
            [
                name,
                f"{padded / real:.3f}",
                f"{waste[name]:.1%}",
                f"{sum(s.one_kind for s in stats)}/{batches}",
                f"{max(s.max_trigger_share or 0 for s in stats):.2f}",
            ]
        )
    for row, name in zip(rows, STRATEGIES, strict=True):
        row += [
            f"{(1 + waste[name]) / (1 + waste['random']):.3f}",
            f"{(1 + waste[name]) / (1 + waste['length']):.3f}",
        ]
    share = sum(k == "trigger" for k in kinds) / len(kinds)
    body = [
        f"## batching: {tok_name}",
        "",
        C.machine_lines(C.machine("cpu", threads)),
        f"- data: default dataset, train split: {len(kinds)} examples, trigger share "
        f"{share:.3f}, mean length {statistics.mean(lengths):.1f} tokens; batch size "
        f"{a.batch_size}; {a.epochs} epochs (seeds) per strategy",
        "",
        C.table(
            [
                "strategy",
                "padded / real tokens",
                "padding waste",
                "batches of one kind",
                "max trigger share in a batch",
                "padded tokens vs random",
                "vs length",
            ],
            rows,
        ),
    ]
    if a.model:
        batch_plans = {s: plans(kinds, lengths, a.batch_size, 0)[s] for s in STRATEGIES}
        times, tokens = time_steps(a.model, feats, batch_plans, a.steps)
        trows = []
        for name in STRATEGIES:
            per_tok = sum(times[name]) / tokens[name]
            trows.append(
                [
                    name,
                    f"{C.best(times[name]):.2f}",
                    f"{C.median(times[name]):.2f}",
                    f"{1e3 * per_tok:.2f}",
                    f"{sum(times[name]) / sum(times['random']):.3f}",
                ]
            )
        body += [
            "",
            f"Training steps on {a.model} (LoRA r=16 all linear + trigger row, loss on learned "
            f"tokens only), the first {a.steps} batches of each plan, interleaved rounds:",
            "",
            C.table(
                [
                    "strategy",
                    "best s/step",
                    "median s/step",
                    "ms per padded token",
                    "time vs random",
                ],
                trows,
            ),
        ]
    text = "\n".join(body)
    print(text)
    if not a.no_write:
        C.write_section(f"batching:{'model' if a.model else 'padding'}", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
