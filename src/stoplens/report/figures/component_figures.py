"""The component suite's figure (9): a (heads + MLP row) × layer heatmap of the normalised
patching effect per mode, exact and attribution, from the result object only.

Owns: `components_figure`. Must not: compute science.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stoplens.report.figures.style import pyplot, save_png
from stoplens.report.verdicts import fmt

FIGURE = "9_components.png"


def _grid(res, effects) -> np.ndarray:
    """[n_heads + 1, n_layers] values of ``effects`` in the ranking group (row n_heads = MLP;
    NaN where a component was not in ``effects``)."""
    gi = effects.groups.index(res.config.rank_group)
    m = np.full((res.n_heads + 1, res.n_layers), np.nan)
    for ci, name in enumerate(effects.components):
        if name.startswith("MLP"):
            m[res.n_heads, int(name[3:])] = effects.mean[ci, gi]
        else:
            layer, head = name[1:].split("H")
            m[int(head), int(layer)] = effects.mean[ci, gi]
    return m


def components_figure(suite, path: Path) -> Path:
    """9_components.png: per panel a (heads + MLP row) × layer heatmap of the normalised
    effect in the ranking group: exact patching per mode (grey: not patched exactly) and
    attribution patching (denoising), with the Spearman correlation in its title."""
    res = suite.patching
    plt = pyplot()
    panels = [(f"exact, {m}", res.exact[m]) for m in res.config.modes]
    first = res.config.modes[0]
    rho = res.rank_correlation.get(first, {}).get(res.config.rank_group)
    panels.append((f"attribution, {first} (Spearman vs exact {fmt(rho)})", res.attribution[first]))
    w = max(4.0, 0.28 * res.n_layers + 2.5)
    h = 0.35 * res.n_heads + 2.8
    tall = res.n_layers > 12  # deep models: panels stacked, one per row
    rows, cols = (len(panels), 1) if tall else (1, len(panels))
    fig, grid = plt.subplots(
        rows, cols, figsize=(w * cols + 1.2, h * rows), squeeze=False, layout="constrained"
    )
    axes = grid.ravel()
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.85")
    for ax, (title, eff) in zip(axes, panels, strict=True):
        m = _grid(res, eff)
        im = ax.imshow(np.ma.masked_invalid(m), aspect="auto", cmap=cmap, vmin=-1, vmax=1,
                       origin="lower", interpolation="nearest")  # fmt: skip
        ax.axhline(res.n_heads - 0.5, color="k", lw=0.8)
        ax.set_yticks(range(res.n_heads + 1))
        ax.set_yticklabels([f"H{h}" for h in range(res.n_heads)] + ["MLP"], fontsize=7)
        step = max(1, res.n_layers // 15)
        ax.set_xticks(range(0, res.n_layers, step))
        ax.set_xlabel("block")
        ax.set_title(
            f"{title}\npositions: {res.config.rank_group}; n = {res.n_valid} pairs", fontsize=9
        )
        if m.size <= 120:
            for i, j in zip(*np.where(np.isfinite(m)), strict=True):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=list(axes), fraction=0.03, label="normalised effect (1 = the whole stop)")
    return save_png(fig, path)
