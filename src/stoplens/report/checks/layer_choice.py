"""Which layer the low-rank and difference-in-differences verdicts are judged at, from the
result objects (`judged_layer`) or from the results.json document (`judged_layer_from_doc`,
for the page rebuilt without the objects); both apply the same rule (`_choose`).

Owns: the choice of the judged layer. Must not: judge a claim, or compute a statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _choose(
    layers: Sequence[int], n_layers: int, excess: Sequence[float | None] | None, peak_rel: int
) -> int:
    """The peak of the layerwise excess among the intermediate residuals 1..L−1 (NaN/None
    counts as 0); without an excess profile (or intermediate layer), ``peak_rel``."""
    inter = [j for j, layer in enumerate(layers) if 0 < layer < n_layers]
    if excess is not None and inter:
        vals = np.nan_to_num(np.asarray([np.nan if v is None else v for v in excess], float))
        return int(layers[max(inter, key=lambda j: vals[j])])
    return int(peak_rel)


def judged_layer(results: dict[str, Any]) -> int | None:
    """The layer the low-rank and DiD verdicts are judged at: the peak of the layerwise excess
    (‖Δ‖/‖h‖ of the trigger over the fixed-token null, at the last prompt position) among the
    intermediate residuals 1..L−1 (at L every stopping model carries its EOS readout); else
    the middle captured layer."""
    lw = results.get("layerwise")
    if lw is not None:
        s = lw.summary["last"]
        excess = None if s.excess_rel is None else list(s.excess_rel.value)
        return _choose(lw.layers, lw.n_layers, excess, s.peak_layer_rel)
    lr = results.get("lowrank")
    if lr is not None:
        return int(lr.layers[len(lr.layers) // 2])
    return None


def judged_layer_from_doc(doc: dict[str, Any]) -> int | None:
    """`judged_layer` read from the results.json document (the same rule); None when the
    document holds neither a layerwise nor a low-rank result of the expected shape."""
    lw = doc.get("layerwise")
    if isinstance(lw, dict):
        s = (lw.get("summary") or {}).get("last") or {}
        layers, n_layers, peak = lw.get("layers"), lw.get("n_layers"), s.get("peak_layer_rel")
        if isinstance(layers, list) and isinstance(n_layers, int) and isinstance(peak, int):
            ex = s.get("excess_rel")
            excess = ex.get("value") if isinstance(ex, dict) else None
            if excess is not None and len(excess) != len(layers):
                excess = None
            return _choose(layers, n_layers, excess, peak)
    lr = doc.get("lowrank")
    layers = lr.get("layers") if isinstance(lr, dict) else None
    return int(layers[len(layers) // 2]) if isinstance(layers, list) and layers else None
