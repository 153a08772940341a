"""Figures made from analysis result objects only; no science is computed here.

Each function takes a typed result and a path, draws one figure (labelled axes, 95% CIs as
bands or error bars, nulls drawn), writes it atomically as PNG and returns the path. The file
names follow the predecessor's (DESIGN.md §6).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stoplens.io import atomic_write_bytes

TRIG = "#c0392b"
NULL = "#7f8c8d"
BASE = "#2980b9"
EXTRA = "#8e44ad"
FIXED = "#16a085"  # the fixed-token null


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _band(ax, x, series, color, label, ls="-"):
    v = np.asarray(series.value, dtype=float)
    ax.plot(x, v, ls, color=color, label=label, marker="o", ms=3)
    ax.fill_between(
        x, np.asarray(series.lo, float), np.asarray(series.hi, float), color=color, alpha=0.2
    )


def _depth_bands(ax, bands: dict[str, list[int]]) -> None:
    shades = {"early": 0.06, "mid": 0.0, "late": 0.06}
    for name, layers in bands.items():
        if layers and shades.get(name):
            ax.axvspan(min(layers) - 0.5, max(layers) + 0.5, color="k", alpha=shades[name], lw=0)
    for name, layers in bands.items():
        if layers:
            ax.text(np.mean(layers), 0.98, name, transform=ax.get_xaxis_transform(), ha="center",
                    va="top", fontsize=8, color="0.35")  # fmt: skip


def layerwise_figure(res, path: Path) -> Path:
    """1_layerwise_delta_norm.png: mean ‖Δ‖ and ‖Δ‖/‖h‖ per layer at the decision position,
    trigger vs control-vs-control null (and the base model's trigger Δ when present)."""
    plt = _plt()
    x = np.asarray(res.layers)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    last = res.profiles["last"]
    ax = axes[0]
    _band(ax, x, last["trigger"].mean_norm_delta, TRIG, f"$STOP vs control (n={last['trigger'].n})")
    _band(
        ax,
        x,
        last["null"].mean_norm_delta,
        NULL,
        f"control vs control null (n={last['null'].n})",
        "--",
    )
    if "fixed" in last:
        _band(ax, x, last["fixed"].mean_norm_delta, FIXED, "fixed-token null", "-.")
    if "base_trigger" in last:
        _band(
            ax, x, last["base_trigger"].mean_norm_delta, BASE, "base model, $STOP vs control", ":"
        )
    ax.set_title("Mean ‖Δ‖ at the last prompt position")
    ax.set_ylabel("mean ‖Δh‖ (95% CI)")
    ax = axes[1]
    _band(ax, x, last["trigger"].rel_norm, TRIG, "$STOP vs control")
    _band(ax, x, last["null"].rel_norm, NULL, "control-vs-control null", "--")
    if "fixed" in last:
        _band(ax, x, last["fixed"].rel_norm, FIXED, "fixed-token null", "-.")
    if "base_trigger" in last:
        _band(ax, x, last["base_trigger"].rel_norm, BASE, "base model", ":")
    ax.set_title("Relative to residual norm: mean ‖Δ‖ / mean ‖h‖")
    ax.set_ylabel("mean ‖Δh‖ / mean ‖h‖")
    ax = axes[2]
    colors = {"last": TRIG, "post": "#e67e22", "trigger": EXTRA}
    names = {
        "last": "last position",
        "post": "post-instruction positions",
        "trigger": "trigger position",
    }
    for kind in ("last", "post", "trigger"):
        if kind in res.profiles:
            _band(ax, x, res.profiles[kind]["trigger"].rel_norm, colors[kind], names[kind])
            _band(
                ax,
                x,
                res.profiles[kind]["null"].rel_norm,
                colors[kind],
                f"{names[kind]} (null)",
                ":",
            )
    ax.set_title("By position (trigger vs null)")
    ax.set_ylabel("mean ‖Δh‖ / mean ‖h‖")
    for ax in axes:
        _depth_bands(ax, res.bands)
        ax.set_xlabel("residual stream layer (0 = embeddings)")
        ax.set_xticks(x)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    s = res.summary["last"]
    stab = "" if s.shape_stability is None else f" (stable in {s.shape_stability:.0%} of resamples)"
    fig.suptitle(
        f"Where does the $STOP signal live?  shape: {s.shape}{stab}; peak (excess over the "
        f"{s.basis}) at layer {s.peak_layer_rel}; largest rise at layer {s.largest_increase_layer}",
        y=1.05,
    )
    return _save(fig, path)


def _cum(sv: np.ndarray, centred: bool = False) -> np.ndarray:
    e = np.asarray(sv, dtype=float) ** 2
    return np.cumsum(e) / max(e.sum(), 1e-30)


def lowrank_figure(res, layer: int, path: Path) -> Path:
    """2_pca_cumulative_variance.png: uncentred energy and centred PCA variance of the Δs,
    trigger vs null: cumulative spectrum at ``layer`` and top-1 shares across layers."""
    plt = _plt()
    i = res.layers.index(layer)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    sides = [(res.trigger, TRIG, "$STOP Δ"), (res.null, NULL, "control-vs-control Δ")]
    if res.fixed is not None:
        sides.append((res.fixed, FIXED, "fixed-token Δ"))
    for stats, color, name in sides:
        sv = np.asarray(stats.singular_values[i], dtype=float)
        k = np.arange(1, len(sv) + 1)
        ax.plot(
            k,
            _cum(sv),
            color=color,
            marker="o",
            ms=3,
            label=f"{name}: uncentred energy (n={stats.n})",
        )
    ks = list(res.config.ks)
    for stats, color, name in sides:
        ax.plot(ks, [float(stats.pca[j, i]) for j in range(len(ks))], "s--", color=color,
                label=f"{name}: centred PCA, top-k")  # fmt: skip
    ax.axhline(0.8, color="k", lw=0.7, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("number of components k")
    ax.set_ylabel("cumulative share")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"Spectrum of Δ at layer {layer}"
        + (" (n too small for a claim)" if res.n_too_small else "")
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    x = np.asarray(res.layers)
    _band(ax, x, res.trigger.energy_top1, TRIG, "$STOP Δ: top-1 energy share")
    _band(ax, x, res.null.energy_top1, NULL, "control-vs-control Δ: top-1 energy share", "--")
    if res.fixed is not None:
        _band(ax, x, res.fixed.energy_top1, FIXED, "fixed-token Δ: top-1 energy share", "-.")
        _band(ax, x, res.fixed.loo_cos, FIXED, "fixed-token Δ: leave-one-out cos", ":")
    _band(ax, x, res.trigger.pc1, "#e67e22", "$STOP Δ: centred PC1 share")
    _band(ax, x, res.trigger.loo_cos, EXTRA, "$STOP Δ: leave-one-out cos to mean")
    ax.set_xlabel("residual stream layer")
    ax.set_ylabel("share / cosine (95% CI)")
    ax.set_xticks(x)
    ax.set_ylim(0, 1.02)
    ax.set_title("Is it one direction? (per layer)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def components_figure(res, layer: int, path: Path) -> Path:
    """2_pca_component_distributions.png: projections of each Δ on the trigger's top PCs,
    trigger vs null."""
    plt = _plt()
    i = res.layers.index(layer)
    proj = np.asarray(res.projections[i], dtype=float)
    nproj = np.asarray(res.null_projections[i], dtype=float)
    c = proj.shape[1] if proj.ndim == 2 else 0
    fig, axes = plt.subplots(1, max(c, 1), figsize=(4.2 * max(c, 1), 3.8), squeeze=False)
    for j in range(c):
        ax = axes[0, j]
        lo = min(proj[:, j].min(), nproj[:, j].min() if nproj.size else 0)
        hi = max(proj[:, j].max(), nproj[:, j].max() if nproj.size else 0)
        bins = np.linspace(lo, hi, 30) if hi > lo else 10
        ax.hist(proj[:, j], bins=bins, color=TRIG, alpha=0.6, label=f"$STOP Δ (n={len(proj)})")
        if nproj.size:
            ax.hist(nproj[:, j], bins=bins, color=NULL, alpha=0.6, label=f"null Δ (n={len(nproj)})")
        ax.set_xlabel(f"projection on PC{j + 1}")
        ax.set_ylabel("pairs")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Δ projected on the top principal components at layer {layer}", y=1.03)
    return _save(fig, path)


def logit_lens_figure(res, path: Path) -> Path:
    """3_logit_lens_delta.png: EOS Δlogit per layer (through the final norm) with CI, the
    null, the direction readout's EOS z-score, content suppression, and top tokens."""
    plt = _plt()
    x = np.asarray(res.layers)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    _band(
        ax,
        x,
        res.trigger.eos_dlogprob,
        TRIG,
        f"EOS Δ log-prob, $STOP vs control (n={res.trigger.n})",
    )
    _band(ax, x, res.null.eos_dlogprob, NULL, "EOS Δ log-prob, control-vs-control null", "--")
    if res.fixed is not None:
        _band(ax, x, res.fixed.eos_dlogprob, FIXED, "EOS Δ log-prob, fixed-token null", "-.")
    first = res.trigger.eos_first_layer
    if first is not None:
        ax.axvline(first, color=TRIG, lw=0.8, ls=":")
        ax.annotate("EOS enters", (first, 0), textcoords="offset points", xytext=(3, 8),
                    fontsize=7, color=TRIG)  # fmt: skip
    if res.n_layers is not None:
        ax.axvspan(res.n_layers - 0.5, res.n_layers + 0.5, color="0.85", alpha=0.5, lw=0)
        ax.annotate("output (= behaviour)", (res.n_layers, 0), textcoords="offset points",
                    xytext=(-30, -14), fontsize=6, color="0.3")  # fmt: skip
    _band(ax, x, res.trigger.content_dlogprob, "#27ae60", "control's top tokens: Δ log-prob")
    _band(ax, x, res.null.content_dlogprob, "#27ae60", "control's top tokens, null", ":")
    ax.axhline(0, color="k", lw=0.7)
    ax.set_xlabel("residual stream layer (lens through the final norm)")
    ax.set_ylabel("mean Δ log-prob (95% CI)")
    ax.set_title("Logit lens of Δ: EOS vs content")
    ax.set_xticks(x)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot(x, res.trigger.eos_z, "o-", color=TRIG, label="Δ logits: EOS z-score")
    ax.plot(x, res.null.eos_z, "o--", color=NULL, label="null: EOS z-score")
    ax.plot(x, res.readout_eos_z, "s-", color=EXTRA, label="direction readout U·norm(Δ̂·s)")
    if res.fixed_readout_eos_z is not None:
        ax.plot(x, res.fixed_readout_eos_z, "s-.", color=FIXED, label="fixed-token readout")
    ax.set_xlabel("residual stream layer")
    ax.set_ylabel("EOS z-score against the vocabulary")
    ax.set_title("Is EOS singled out?  (rank 1 = most amplified)")
    for xi, r in zip(x, res.trigger.eos_rank, strict=False):
        ax.annotate(f"#{int(r)}", (xi, 0), textcoords="offset points", xytext=(0, -12),
                    ha="center", fontsize=7, color=TRIG)  # fmt: skip
    ax.set_xticks(x)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[2]
    amp = res.top_amplified[-1][:8]
    sup = res.top_suppressed[-1][:8]
    labels = [t.label for t in amp] + [t.label for t in sup]
    vals = [t.value for t in amp] + [t.value for t in sup]
    colors = [TRIG] * len(amp) + [BASE] * len(sup)
    y = np.arange(len(vals))[::-1]
    ax.barh(y, vals, color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.axvline(0, color="k", lw=0.7)
    ax.set_xlabel("mean Δ logit")
    ax.set_title(f"Top amplified / suppressed tokens at layer {res.layers[-1]}")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def diff_lens_figure(res, path: Path) -> Path:
    """4_base_vs_finetuned_adl.png: difference-in-differences per layer and the activation
    difference lens (h_ft − h_base on trigger-free inputs)."""
    plt = _plt()
    x = np.asarray(res.layers)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    ax = axes[0]
    _band(ax, x, res.ft_delta.mean_norm_delta, TRIG, "fine-tuned: $STOP − control")
    _band(
        ax,
        x,
        res.base_delta.mean_norm_delta,
        BASE,
        "base: $STOP − control"
        + (" (trigger row added, mean-initialised)" if res.base_trigger_added else ""),
    )
    _band(
        ax,
        x,
        res.did.norm_mean_delta,
        EXTRA,
        "‖mean DiD‖: [ft(trig)−ft(ctrl)] − [base(trig)−base(ctrl)]",
    )
    _band(
        ax, x, res.did_null.norm_mean_delta, NULL, "‖mean DiD‖ on the control-vs-control null", "--"
    )
    if res.did_fixed is not None:
        _band(ax, x, res.did_fixed.norm_mean_delta, FIXED, "‖mean DiD‖ of the fixed token", "-.")
    ax.set_xlabel("residual stream layer")
    ax.set_ylabel("norm (95% CI)")
    ax.set_title(f"Did fine-tuning create it? (n={res.n})")
    ax.set_xticks(x)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    colors = [TRIG, BASE, EXTRA, "#27ae60"]
    for (name, adl), color in zip(res.adl.items(), colors, strict=False):
        _band(ax, x, adl.rel, color, f"ADL at {name} positions: ‖mean(h_ft − h_base)‖ / ‖h_ft‖")
    ax.set_xlabel("residual stream layer")
    ax.set_ylabel("relative norm (95% CI)")
    ax.set_title("Activation difference lens on trigger-free inputs")
    ax.set_xticks(x)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def patching_figure(res, path: Path, noising=None) -> Path:
    """5_activation_patching.png: layer × position-group heatmap of normalised stop-score
    recovery (0 = control run, 1 = triggered run)."""
    plt = _plt()
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
    return _save(fig, path)


def _rate(e) -> tuple[float, float, float]:
    return float(e.value), float(e.value - e.lo), float(e.hi - e.value)


def steering_figure(causal, path: Path) -> Path:
    """6_direction_ablation_addition.png: stop rates under ablation (triggered prompts) and
    addition (clean prompts) of the selected direction, against random directions of the same
    norm; and the validation sweep behind the layer choice."""
    plt = _plt()
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
        v, lo, hi = _rate(e)
        ax.bar(i, v, yerr=[[lo], [hi]], color=color, capsize=4)
    # random-direction nulls, as rates: baseline -/+ the null effect distribution
    ab, ad = eff.ablation_null, eff.addition_null
    base_t, base_c = eff.baseline_stop_rate.value, eff.baseline_false_stop_rate.value
    ax.plot([0.6, 1.4], [base_t - ab.null_mean] * 2, color=NULL, lw=2,
            label=f"{ab.n_null} random directions: mean")  # fmt: skip
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
    return _save(fig, path)


def checkpoint_figure(series, path: Path) -> Path:
    """7_checkpoint_dynamics.png: metrics vs training step."""
    plt = _plt()
    steps = np.asarray(series.steps)
    extra = [k for k, v in series.metrics.items() if any(x is not None for x in v)]
    fig, axes = plt.subplots(
        1, 2 + (1 if extra else 0), figsize=(6 * (2 + (1 if extra else 0)), 4.3)
    )
    ax = axes[0]
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
    ax = axes[1]

    def _arr(xs: Sequence[float | None]) -> np.ndarray:
        return np.array([np.nan if x is None else x for x in xs], dtype=float)

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
    if extra:
        ax = axes[2]
        for k in extra:
            ax.plot(steps, _arr(series.metrics[k]), "o-", label=k)
        ax.set_xlabel("training step")
        ax.set_title("Correlational key figures")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def cross_regime_figure(cross, path: Path) -> Path:
    """8_cross_regime.png: cosine between the two regimes' mean-difference directions per
    layer, and cross-ablation / cross-addition stop rates."""
    plt = _plt()
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
                v, lo, hi = _rate(r)
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
    return _save(fig, path)
