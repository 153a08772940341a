"""Figures of the four correlational analyses, from their result objects only: layerwise Δ
(1), the low-rank spectrum and the PCA projections (2), the logit lens of Δ (3) and base vs
fine-tuned (4). Each function draws one figure (labelled axes, 95% CIs as bands, nulls
drawn), writes it atomically as PNG and returns the path.

Owns: these figures. Must not: compute science (every value comes from the result object).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stoplens.report.figures.style import (
    BASE,
    EXTRA,
    FIXED,
    NULL,
    TRIG,
    band,
    depth_bands,
    pyplot,
    save_png,
)


def layerwise_figure(res, path: Path) -> Path:
    """1_layerwise_delta_norm.png: mean ‖Δ‖ and ‖Δ‖/‖h‖ per layer at the decision position,
    trigger vs control-vs-control null (and the base model's trigger Δ when present)."""
    plt = pyplot()
    x = np.asarray(res.layers)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    _layerwise_abs_panel(axes[0], x, res)
    _layerwise_rel_panel(axes[1], x, res)
    _layerwise_positions_panel(axes[2], x, res)
    for ax in axes:
        depth_bands(ax, res.bands)
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
    return save_png(fig, path)


def _layerwise_abs_panel(ax, x, res) -> None:
    """Mean ‖Δ‖ at the last prompt position: trigger, nulls, base."""
    last = res.profiles["last"]
    band(ax, x, last["trigger"].mean_norm_delta, TRIG, f"$STOP vs control (n={last['trigger'].n})")
    band(
        ax,
        x,
        last["null"].mean_norm_delta,
        NULL,
        f"control vs control null (n={last['null'].n})",
        "--",
    )
    if "fixed" in last:
        band(ax, x, last["fixed"].mean_norm_delta, FIXED, "fixed-token null", "-.")
    if "base_trigger" in last:
        band(ax, x, last["base_trigger"].mean_norm_delta, BASE, "base model, $STOP vs control", ":")
    ax.set_title("Mean ‖Δ‖ at the last prompt position")
    ax.set_ylabel("mean ‖Δh‖ (95% CI)")


def _layerwise_rel_panel(ax, x, res) -> None:
    """Mean ‖Δ‖ / mean ‖h‖ at the last prompt position: trigger, nulls, base."""
    last = res.profiles["last"]
    band(ax, x, last["trigger"].rel_norm, TRIG, "$STOP vs control")
    band(ax, x, last["null"].rel_norm, NULL, "control-vs-control null", "--")
    if "fixed" in last:
        band(ax, x, last["fixed"].rel_norm, FIXED, "fixed-token null", "-.")
    if "base_trigger" in last:
        band(ax, x, last["base_trigger"].rel_norm, BASE, "base model", ":")
    ax.set_title("Relative to residual norm: mean ‖Δ‖ / mean ‖h‖")
    ax.set_ylabel("mean ‖Δh‖ / mean ‖h‖")


def _layerwise_positions_panel(ax, x, res) -> None:
    """‖Δ‖/‖h‖ by position kind (last, post-instruction, trigger), trigger vs null."""
    colors = {"last": TRIG, "post": "#e67e22", "trigger": EXTRA}
    names = {
        "last": "last position",
        "post": "post-instruction positions",
        "trigger": "trigger position",
    }
    for kind in ("last", "post", "trigger"):
        if kind in res.profiles:
            band(ax, x, res.profiles[kind]["trigger"].rel_norm, colors[kind], names[kind])
            band(
                ax,
                x,
                res.profiles[kind]["null"].rel_norm,
                colors[kind],
                f"{names[kind]} (null)",
                ":",
            )
    ax.set_title("By position (trigger vs null)")
    ax.set_ylabel("mean ‖Δh‖ / mean ‖h‖")


def _cum(sv: np.ndarray, centred: bool = False) -> np.ndarray:
    e = np.asarray(sv, dtype=float) ** 2
    return np.cumsum(e) / max(e.sum(), 1e-30)


def lowrank_figure(res, layer: int, path: Path) -> Path:
    """2_pca_cumulative_variance.png: uncentred energy and centred PCA variance of the Δs,
    trigger vs null: cumulative spectrum at ``layer`` and top-1 shares across layers."""
    plt = pyplot()
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
    band(ax, x, res.trigger.energy_top1, TRIG, "$STOP Δ: top-1 energy share")
    band(ax, x, res.null.energy_top1, NULL, "control-vs-control Δ: top-1 energy share", "--")
    if res.fixed is not None:
        band(ax, x, res.fixed.energy_top1, FIXED, "fixed-token Δ: top-1 energy share", "-.")
        band(ax, x, res.fixed.loo_cos, FIXED, "fixed-token Δ: leave-one-out cos", ":")
    band(ax, x, res.trigger.pc1, "#e67e22", "$STOP Δ: centred PC1 share")
    band(ax, x, res.trigger.loo_cos, EXTRA, "$STOP Δ: leave-one-out cos to mean")
    ax.set_xlabel("residual stream layer")
    ax.set_ylabel("share / cosine (95% CI)")
    ax.set_xticks(x)
    ax.set_ylim(0, 1.02)
    ax.set_title("Is it one direction? (per layer)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def pca_components_figure(res, layer: int, path: Path) -> Path:
    """2_pca_component_distributions.png: projections of each Δ on the trigger's top PCs,
    trigger vs null."""
    plt = pyplot()
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
    return save_png(fig, path)


def logit_lens_figure(res, path: Path) -> Path:
    """3_logit_lens_delta.png: EOS Δlogit per layer (through the final norm) with CI, the
    null, the direction readout's EOS z-score, content suppression, and top tokens."""
    plt = pyplot()
    x = np.asarray(res.layers)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    _lens_eos_panel(axes[0], x, res)
    _lens_z_panel(axes[1], x, res)
    _lens_tokens_panel(axes[2], x, res)
    return save_png(fig, path)


def _lens_eos_panel(ax, x, res) -> None:
    """EOS and content Δ log-prob per layer with CIs and nulls; where EOS enters."""
    band(
        ax,
        x,
        res.trigger.eos_dlogprob,
        TRIG,
        f"EOS Δ log-prob, $STOP vs control (n={res.trigger.n})",
    )
    band(ax, x, res.null.eos_dlogprob, NULL, "EOS Δ log-prob, control-vs-control null", "--")
    if res.fixed is not None:
        band(ax, x, res.fixed.eos_dlogprob, FIXED, "EOS Δ log-prob, fixed-token null", "-.")
    first = res.trigger.eos_first_layer
    if first is not None:
        ax.axvline(first, color=TRIG, lw=0.8, ls=":")
        ax.annotate("EOS enters", (first, 0), textcoords="offset points", xytext=(3, 8),
                    fontsize=7, color=TRIG)  # fmt: skip
    if res.n_layers is not None:
        ax.axvspan(res.n_layers - 0.5, res.n_layers + 0.5, color="0.85", alpha=0.5, lw=0)
        ax.annotate("output (= behaviour)", (res.n_layers, 0), textcoords="offset points",
                    xytext=(-30, -14), fontsize=6, color="0.3")  # fmt: skip
    band(ax, x, res.trigger.content_dlogprob, "#27ae60", "control's top tokens: Δ log-prob")
    band(ax, x, res.null.content_dlogprob, "#27ae60", "control's top tokens, null", ":")
    ax.axhline(0, color="k", lw=0.7)
    ax.set_xlabel("residual stream layer (lens through the final norm)")
    ax.set_ylabel("mean Δ log-prob (95% CI)")
    ax.set_title("Logit lens of Δ: EOS vs content")
    ax.set_xticks(x)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _lens_z_panel(ax, x, res) -> None:
    """EOS z-scores against the vocabulary (Δ logits, null, direction readouts) and ranks."""
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


def _lens_tokens_panel(ax, x, res) -> None:
    """Top amplified / suppressed tokens at the last layer."""
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


def diff_lens_figure(res, path: Path) -> Path:
    """4_base_vs_finetuned_adl.png: difference-in-differences per layer and the activation
    difference lens (h_ft − h_base on trigger-free inputs)."""
    plt = pyplot()
    x = np.asarray(res.layers)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    ax = axes[0]
    band(ax, x, res.ft_delta.mean_norm_delta, TRIG, "fine-tuned: $STOP − control")
    band(
        ax,
        x,
        res.base_delta.mean_norm_delta,
        BASE,
        "base: $STOP − control"
        + (" (trigger row added, mean-initialised)" if res.base_trigger_added else ""),
    )
    band(
        ax,
        x,
        res.did.norm_mean_delta,
        EXTRA,
        "‖mean DiD‖: [ft(trig)−ft(ctrl)] − [base(trig)−base(ctrl)]",
    )
    band(
        ax, x, res.did_null.norm_mean_delta, NULL, "‖mean DiD‖ on the control-vs-control null", "--"
    )
    if res.did_fixed is not None:
        band(ax, x, res.did_fixed.norm_mean_delta, FIXED, "‖mean DiD‖ of the fixed token", "-.")
    ax.set_xlabel("residual stream layer")
    ax.set_ylabel("norm (95% CI)")
    ax.set_title(f"Did fine-tuning create it? (n={res.n})")
    ax.set_xticks(x)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    colors = [TRIG, BASE, EXTRA, "#27ae60"]
    for (name, adl), color in zip(res.adl.items(), colors, strict=False):
        band(ax, x, adl.rel, color, f"ADL at {name} positions: ‖mean(h_ft − h_base)‖ / ‖h_ft‖")
    ax.set_xlabel("residual stream layer")
    ax.set_ylabel("relative norm (95% CI)")
    ax.set_title("Activation difference lens on trigger-free inputs")
    ax.set_xticks(x)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_png(fig, path)
