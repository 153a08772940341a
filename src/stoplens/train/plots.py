"""The training loss-curve figure, drawn from the logged (step, loss) pairs only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_loss_curve(
    losses: Sequence[tuple[int, float]], path: Path, title: str = "training loss"
) -> Path:
    """Save a loss-vs-step line plot to ``path`` (PNG, written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stoplens.io import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    if losses:
        steps, values = zip(*losses, strict=True)
        ax.plot(steps, values, marker="o", markersize=2, linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (mean token NLL)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
