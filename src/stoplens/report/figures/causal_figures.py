"""Figures of the causal suite, from its result objects only: activation patching (5),
directional ablation and addition with the selection sweep (6), checkpoint dynamics (7) and
the knowledge-vs-behavioral comparison (8).

Owns: these figures. Must not: compute science (every value comes from the result object).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stoplens.report.figures.style import BASE, EXTRA, NULL, TRIG, pyplot, rate_err, save_png


def _on(null, n: int) -> str:
    """The label's " on m pairs" when the null ran on a subset of the ``n`` pairs."""
    m = getattr(null, "n_prompts", None)
    return f" on {m} pairs" if m is not None and m < n else ""


def patching_figure(res, path: Path, noising=None) -> Path:
    """5_activation_patching.png: layer × position-group heatmap of normalised stop-score
    recovery (0 = control run, 1 = triggered run)."""
    plt = pyplot()
    panels = [("triggered → control (denoising)", res)] + (
        [("control → triggered (noising)", noising)] if noising is not None else []
    )
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.5 * len(panels), 0.45 * len(res.layers) + 2.5), squeeze=False
    )
    for ax, (title, r) in zip(axes[0], panels, strict=True):
        m = np.asarray(r.mean, dtype=float)
        im = ax.imshow(m, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, origin="lower")
        ax.set_xticks(range(len(r.groups)))
        ax.set_xticklabels([g.replace("_", " ") for g in r.groups], rotation=20, fontsize=8)
        ax.set_yticks(range(len(r.layers)))
        ax.set_yticklabels([str(layer) for layer in r.layers], fontsize=8)
        ax.set_ylabel("residual stream layer patched")
        ax.set_xlabel("positions patched")
        valid = int(np.asarray(r.valid).sum())
        ax.set_title(f"{title}\nnormalised stop score, n={valid} pairs")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
    return save_png(fig, path)


def steering_figure(causal, path: Path) -> Path:
    """6_direction_ablation_addition.png: stop rates under ablation (triggered prompts) and
    addition (clean prompts) of the selected direction, against random directions of the same
    norm; and the validation sweep behind the layer choice."""
    plt = pyplot()
    eff = causal.effects
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    ax = axes[0]
    bars = [
        ("triggered:\nno intervention", eff.baseline_stop_rate, TRIG, None),
        ("triggered:\ndirection ablated", eff.ablated_stop_rate, "#e67e22", eff.ablation_null),
        ("clean:\nno intervention", eff.baseline_false_stop_rate, BASE, None),
        ("clean:\ndirection added", eff.added_stop_rate, EXTRA, eff.addition_null),
    ]
    for i, (_label, e, color, _null) in enumerate(bars):
        v, lo, hi = rate_err(e)
        ax.bar(i, v, yerr=[[lo], [hi]], color=color, capsize=4)
    # random-direction nulls, as rates: baseline -/+ the null effect distribution
    ab, ad = eff.ablation_null, eff.addition_null
    base_t, base_c = eff.baseline_stop_rate.value, eff.baseline_false_stop_rate.value
    ax.plot([0.6, 1.4], [base_t - ab.null_mean] * 2, color=NULL, lw=2,
            label=f"{ab.n_null} random directions{_on(ab, eff.n)}: mean")  # fmt: skip
    ax.plot([0.6, 1.4], [base_t - ab.null_p95] * 2, color=NULL, lw=1, ls="--",
            label="random directions: 95th percentile effect")  # fmt: skip
    ax.plot([2.6, 3.4], [base_c + ad.null_mean] * 2, color=NULL, lw=2)
    ax.plot([2.6, 3.4], [base_c + ad.null_p95] * 2, color=NULL, lw=1, ls="--")
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([b[0] for b in bars], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("stop rate (greedy first token = EOS), Wilson 95% CI")
    ax.set_title(f"Test split (n={eff.n}), direction from layer {eff.layer}, α={eff.alpha:g}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    ax = axes[1]
    cands = [c for c in causal.selection.candidates if c.ablation_stop_score is not None]
    xs = [c.layer for c in cands]
    ax.plot(xs, [c.ablation_stop_score for c in cands], "o-", color="#e67e22",
            label="val: triggered stop score, ablated")  # fmt: skip
    ax.plot(xs, [c.addition_stop_score for c in cands], "s-", color=EXTRA,
            label="val: clean stop score, best α added")  # fmt: skip
    ax.axhline(0, color="k", lw=0.7)
    ax.axvline(causal.selection.layer, color=TRIG, ls=":", label="selected layer")
    ax2 = ax.twinx()
    ax2.plot(xs, [c.kl for c in cands], "^:", color=NULL, label="KL on clean prompts (ablation)")
    ax2.set_ylabel("KL (nats)")
    ax.set_xlabel("layer (layer 0 and the last 20% are never selected)")
    ax.set_xticks(xs)
    ax.set_ylabel("mean stop score  log p(EOS) − log(1−p(EOS))")
    ax.set_title("Direction selection on the validation split")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7)
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def checkpoint_figure(series, path: Path) -> Path:
    """7_checkpoint_dynamics.png: metrics vs training step."""
    plt = pyplot()
    steps = np.asarray(series.steps)
    extra = [k for k, v in series.metrics.items() if any(x is not None for x in v)]
    fig, axes = plt.subplots(
        1, 2 + (1 if extra else 0), figsize=(6 * (2 + (1 if extra else 0)), 4.3)
    )
    _checkpoint_behaviour_panel(axes[0], steps, series)
    _checkpoint_direction_panel(axes[1], steps, series)
    if extra:
        ax = axes[2]
        for k in extra:
            ax.plot(steps, _arr(series.metrics[k]), "o-", label=k)
        ax.set_xlabel("training step")
        ax.set_title("Correlational key figures")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return save_png(fig, path)


def _arr(xs: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=float)


def _checkpoint_behaviour_panel(ax, steps, series) -> None:
    """Stop rate on triggered prompts and false-stop rate per checkpoint (Wilson CIs)."""
    for rates, color, name in (
        (series.stop_rate, TRIG, "stop rate on $STOP prompts"),
        (series.false_stop_rate, BASE, "false-stop rate on controls"),
    ):
        v = np.array([r.value for r in rates])
        ax.errorbar(
            steps,
            v,
            yerr=[v - np.array([r.lo for r in rates]), np.array([r.hi for r in rates]) - v],
            color=color,
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("training step")
    ax.set_ylabel("rate (Wilson 95% CI)")
    ax.set_title("Behaviour")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _checkpoint_direction_panel(ax, steps, series) -> None:
    """The final direction ablated, each checkpoint's own direction ablated, and their cosine."""
    ax.plot(
        steps,
        _arr(series.ablation_effect_fixed),
        "o-",
        color="#e67e22",
        label="stop-rate drop, final direction ablated",
    )
    ax.plot(
        steps,
        _arr(series.ablation_effect_own),
        "s-",
        color=EXTRA,
        label="stop-rate drop, own direction ablated",
    )
    ax.plot(
        steps,
        _arr(series.cos_own_to_fixed),
        "^--",
        color=NULL,
        label="cos(own direction, final direction)",
    )
    ax.set_xlabel("training step")
    ax.set_title(f"The direction (layer {series.layer})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def cross_regime_figure(cross, path: Path) -> Path:
    """8_cross_regime.png: cosine between the two regimes' mean-difference directions per
    layer, and cross-ablation / cross-addition stop rates."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    ax = axes[0]
    layers = sorted(cross.cos_by_layer)
    ax.plot(layers, [cross.cos_by_layer[k] for k in layers], "o-", color=EXTRA)
    ax.axhline(0, color="k", lw=0.7)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("residual stream layer")
    ax.set_ylabel("cosine")
    a, b = cross.labels
    ax.set_title(f"cos(direction_{a}, direction_{b}); selected: {cross.cos_selected:.2f}")
    ax.grid(alpha=0.3)
    ax = axes[1]
    names = list(cross.effects)
    for i, name in enumerate(names):
        e = cross.effects[name]
        for j, (attr, color) in enumerate(
            (("ablated_stop_rate", "#e67e22"), ("added_stop_rate", EXTRA))
        ):
            r = getattr(e, attr, None)
            if r is not None:
                v, lo, hi = rate_err(r)
                ax.bar(i + 0.38 * j, v, width=0.36, yerr=[[lo], [hi]], color=color, capsize=3,
                       label=("triggered, ablated" if j == 0 else "clean, added") if i == 0 else None)  # fmt: skip
    ax.set_xticks([i + 0.19 for i in range(len(names))])
    ax.set_xticklabels(
        [n.replace("_on_", " dir → ") + " model" for n in names], rotation=15, fontsize=8
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("stop rate (Wilson 95% CI)")
    ax.set_title("Does one model's direction control the other?")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return save_png(fig, path)
