"""What every report figure shares: the colours (trigger, null, base, fixed-token null),
the matplotlib handle (Agg, never a window), the atomic PNG write, a line with its 95% CI
band, the depth bands, and a rate with its error bar.

Owns: the figures' look. Must not: draw a whole figure or compute science.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from stoplens.io import atomic_write_bytes

TRIG = "#c0392b"
NULL = "#7f8c8d"
BASE = "#2980b9"
EXTRA = "#8e44ad"
FIXED = "#16a085"  # the fixed-token null


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def band(ax, x, series, color, label, ls="-"):
    v = np.asarray(series.value, dtype=float)
    ax.plot(x, v, ls, color=color, label=label, marker="o", ms=3)
    ax.fill_between(
        x, np.asarray(series.lo, float), np.asarray(series.hi, float), color=color, alpha=0.2
    )


def depth_bands(ax, bands: dict[str, list[int]]) -> None:
    shades = {"early": 0.06, "mid": 0.0, "late": 0.06}
    for name, layers in bands.items():
        if layers and shades.get(name):
            ax.axvspan(min(layers) - 0.5, max(layers) + 0.5, color="k", alpha=shades[name], lw=0)
    for name, layers in bands.items():
        if layers:
            ax.text(np.mean(layers), 0.98, name, transform=ax.get_xaxis_transform(), ha="center",
                    va="top", fontsize=8, color="0.35")  # fmt: skip


def rate_err(e) -> tuple[float, float, float]:
    return float(e.value), float(e.value - e.lo), float(e.hi - e.value)
