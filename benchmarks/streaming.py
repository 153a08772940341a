"""Streamed Δ capture: trigger-minus-control residuals for any number of pairs at flat peak
memory, reduced on the fly to per-layer running statistics and optionally written to disk.

Not part of the stoplens package: `stoplens run` and its analyses hold every Δ in memory
(n pairs × layers × positions × d float32), which suffices for the pair counts they use.
This module is the measured path for many thousands of pairs (`benchmarks/scaling.py`),
tested from tests/ (pytest puts benchmarks/ on the path) against the in-memory analyses;
wiring it into the pipeline means analyses that read its statistics instead of Δ sets.

Owns: chunking pairs (globally length-sorted, so each chunk pads little), the running
statistics `DeltaStats` (n, ΣΔ, Σ‖Δ‖, Σ‖Δ‖², Σ‖h‖ and the Gram ΔᵀΔ, all float64) and what
follows from them exactly (‖mean Δ‖, mean ‖Δ‖, uncentred SVD energy, centred PCA), the
safetensors shard format (atomic per shard, a JSON index rewritten atomically after each
shard) and reading shards back for second-pass statistics. Must not: choose pairs, run
bootstraps or nulls (analyses do that from these numbers and shards), plot.

Memory. Peak memory is one chunk of captured residuals (``2 · chunk_pairs · n_layers · P · d``
float32) plus the statistics (``n_layers · P · d²`` float64 for the Gram; 0.55 GB for a
1.5B model's 29 residual layers at one position; pass ``gram=False`` to skip it) plus
``n · n_layers · P`` per-pair norms (float32 scalars, kept for bootstrap CIs). It does not grow
with the number of pairs otherwise.

Exactness. With G = ΔᵀΔ (d×d) and μ = ΣΔ/n, the eigenvalues of G are the squared singular
values of the n×d matrix of Δs (uncentred SVD energy) and those of G − nμμᵀ, divided by n − 1,
are the PCA variances, so the streamed numbers equal the in-memory ones up to float64
round-off (tested to 1e-5 relative).

Shard layout (``shard_dir``)::

    index.json                 {"format", "version", "layers", "n_positions", "d_model",
                                "dtype", "n", "complete", "shards": [{"file", "n"}, ...]}
    deltas-00000.safetensors   delta [c, n_layers, P, d] (dtype), index [c] int64 (pair
                               index into the caller's lists), norm_trig / norm_ctrl
                               [c, n_layers, P] float32 (‖h‖ of each run)

A shard exists under its name only once it is complete (temp file, fsync, rename) and is listed
in the index only after that; readers use the index, so an interrupted run leaves no readable
partial shard (``complete`` stays false until the last shard is in).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from stoplens.capture.extract import capture_residuals, model_device
from stoplens.errors import DataError
from stoplens.io import atomic_write_json
from stoplens.models import arch
from stoplens.progress import bar as progress_bar

SHARD_FORMAT = "stoplens-deltas"
SHARD_VERSION = 1
INDEX_NAME = "index.json"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# --- running statistics ----------------------------------------------------------------------


@dataclass
class DeltaStats:
    """Running per-layer, per-position statistics of Δ = h(trigger) − h(control), float64.

    Shapes (Ly = len(layers), P = positions per pair, d = d_model):
        sum_delta: [Ly, P, d]        ΣΔ
        sum_norm: [Ly, P]            Σ‖Δ‖
        sum_sq_norm: [Ly, P]         Σ‖Δ‖²  (= trace of the Gram)
        sum_norm_trig: [Ly, P]       Σ‖h_trigger‖
        sum_norm_ctrl: [Ly, P]       Σ‖h_control‖
        gram: [Ly, P, d, d] or None  ΣΔΔᵀ (the Gram ΔᵀΔ of the n×d matrix of Δs)
        norms: [cap, Ly, P] float32  per-pair ‖Δ‖ in update order (rows :n are valid)
        order: [cap] int64           pair index of each row of ``norms``

    ``norms``/``order`` are preallocated for ``capacity`` pairs (doubling if exceeded): one
    long-lived buffer instead of a small tensor per batch, which would pin glibc's heap and
    make the process's memory creep up batch after batch although nothing leaks.
    """

    layers: list[int]
    n_positions: int
    d_model: int
    sum_delta: torch.Tensor = field(repr=False)
    sum_norm: torch.Tensor = field(repr=False)
    sum_sq_norm: torch.Tensor = field(repr=False)
    sum_norm_trig: torch.Tensor = field(repr=False)
    sum_norm_ctrl: torch.Tensor = field(repr=False)
    gram: torch.Tensor | None = field(repr=False)
    n: int = 0
    norms: torch.Tensor | None = field(default=None, repr=False)
    order: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def empty(
        cls,
        layers: Sequence[int],
        n_positions: int,
        d_model: int,
        *,
        gram: bool = True,
        device: torch.device | str = "cpu",
        capacity: int = 0,
    ) -> DeltaStats:
        """Zeroed statistics; ``gram=False`` skips the d×d Gram (no SVD/PCA then);
        ``capacity``: expected number of pairs (per-pair norm buffer size)."""
        Ly, P, d = len(layers), int(n_positions), int(d_model)

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.float64, device=device)

        return cls(
            layers=[int(x) for x in layers],
            n_positions=P,
            d_model=d,
            sum_delta=zeros(Ly, P, d),
            sum_norm=zeros(Ly, P),
            sum_sq_norm=zeros(Ly, P),
            sum_norm_trig=zeros(Ly, P),
            sum_norm_ctrl=zeros(Ly, P),
            gram=zeros(Ly, P, d, d) if gram else None,
            norms=torch.zeros(max(0, int(capacity)), Ly, P),
            order=torch.zeros(max(0, int(capacity)), dtype=torch.long),
        )

    @torch.no_grad()
    def update(
        self,
        delta: torch.Tensor,
        norm_trig: torch.Tensor,
        norm_ctrl: torch.Tensor,
        index: torch.Tensor | None = None,
    ) -> None:
        """Add a batch. ``delta``: [b, Ly, P, d]; ``norm_trig``/``norm_ctrl``: [b, Ly, P]
        (‖h‖ of each run); ``index``: [b] pair indices (default: running count)."""
        b = delta.shape[0]
        if tuple(delta.shape[1:]) != (len(self.layers), self.n_positions, self.d_model):
            raise ValueError(
                f"delta has shape {tuple(delta.shape)}, expected "
                f"[b, {len(self.layers)}, {self.n_positions}, {self.d_model}]"
            )
        dev = self.sum_delta.device
        x = delta.to(device=dev, dtype=torch.float64)
        norm = x.norm(dim=-1)  # [b, Ly, P]
        assert torch.isfinite(norm).all(), "Δ has NaN/inf values"
        self.sum_delta += x.sum(0)
        self.sum_norm += norm.sum(0)
        self.sum_sq_norm += (norm * norm).sum(0)
        self.sum_norm_trig += norm_trig.to(device=dev, dtype=torch.float64).sum(0)
        self.sum_norm_ctrl += norm_ctrl.to(device=dev, dtype=torch.float64).sum(0)
        if self.gram is not None:
            xt = x.permute(1, 2, 0, 3)  # [Ly, P, b, d]
            self.gram += xt.transpose(-1, -2) @ xt
        if index is None:
            index = torch.arange(self.n, self.n + b)
        self._reserve(self.n + b)
        assert self.norms is not None and self.order is not None
        self.norms[self.n : self.n + b] = norm.float().cpu()
        self.order[self.n : self.n + b] = torch.as_tensor(index, dtype=torch.long).cpu()
        self.n += b

    def _reserve(self, rows: int) -> None:
        Ly, P = len(self.layers), self.n_positions
        if self.norms is None or self.order is None:
            self.norms, self.order = torch.zeros(0, Ly, P), torch.zeros(0, dtype=torch.long)
        if rows <= self.norms.shape[0]:
            return
        cap = max(rows, 2 * self.norms.shape[0])
        norms, order = torch.zeros(cap, Ly, P), torch.zeros(cap, dtype=torch.long)
        norms[: self.n], order[: self.n] = self.norms[: self.n], self.order[: self.n]
        self.norms, self.order = norms, order

    def merge(self, other: DeltaStats) -> DeltaStats:
        """The statistics of both sets of pairs (e.g. from two processes), as a new object."""
        if (other.layers, other.n_positions, other.d_model) != (
            self.layers,
            self.n_positions,
            self.d_model,
        ):
            raise ValueError("merge: statistics over different layers/positions/width")
        if (self.gram is None) != (other.gram is None):
            raise ValueError("merge: one side has a Gram and the other does not")
        dev = self.sum_delta.device

        def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b.to(dev)

        return DeltaStats(
            layers=list(self.layers),
            n_positions=self.n_positions,
            d_model=self.d_model,
            n=self.n + other.n,
            sum_delta=add(self.sum_delta, other.sum_delta),
            sum_norm=add(self.sum_norm, other.sum_norm),
            sum_sq_norm=add(self.sum_sq_norm, other.sum_sq_norm),
            sum_norm_trig=add(self.sum_norm_trig, other.sum_norm_trig),
            sum_norm_ctrl=add(self.sum_norm_ctrl, other.sum_norm_ctrl),
            gram=None if self.gram is None or other.gram is None else add(self.gram, other.gram),
            norms=torch.cat([self.per_pair_norms()[1], other.per_pair_norms()[1]]),
            order=torch.cat([self.per_pair_norms()[0], other.per_pair_norms()[0]]),
        )

    # --- first-order quantities ---------------------------------------------------------

    def _need(self, k: int = 1) -> None:
        if self.n < k:
            raise ValueError(f"needs at least {k} pair(s); have {self.n}")

    def mean_delta(self) -> torch.Tensor:
        """μ = mean Δ, [Ly, P, d] float64."""
        self._need()
        return self.sum_delta / self.n

    def norm_mean_delta(self) -> torch.Tensor:
        """‖mean Δ‖, [Ly, P]."""
        return self.mean_delta().norm(dim=-1)

    def mean_norm_delta(self) -> torch.Tensor:
        """mean ‖Δ‖, [Ly, P]."""
        self._need()
        return self.sum_norm / self.n

    def mean_norm_h(self, which: str = "ctrl") -> torch.Tensor:
        """mean ‖h‖ of the control (``"ctrl"``), trigger (``"trig"``) or both (``"both"``)
        runs, [Ly, P]."""
        self._need()
        if which == "ctrl":
            return self.sum_norm_ctrl / self.n
        if which == "trig":
            return self.sum_norm_trig / self.n
        if which == "both":
            return (self.sum_norm_ctrl + self.sum_norm_trig) / (2 * self.n)
        raise ValueError(f"which must be ctrl, trig or both, not {which!r}")

    def relative_delta_norm(self, which: str = "ctrl") -> torch.Tensor:
        """mean ‖Δ‖ / mean ‖h‖ (residual norms grow with depth), [Ly, P]."""
        return self.mean_norm_delta() / self.mean_norm_h(which).clamp_min(1e-30)

    def per_pair_norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(order [n] pair indices, ‖Δ‖ [n, Ly, P] float32), rows sorted by pair index."""
        if self.norms is None or self.order is None:
            return torch.zeros(0, dtype=torch.long), torch.zeros(
                0, len(self.layers), self.n_positions
            )
        order, norms = self.order[: self.n], self.norms[: self.n]
        perm = torch.argsort(order, stable=True)
        return order[perm], norms[perm]

    # --- second-order quantities (need the Gram) ---------------------------------------

    def _gram(self) -> torch.Tensor:
        if self.gram is None:
            raise ValueError("these statistics were streamed with gram=False; no SVD/PCA")
        self._need()
        return self.gram

    def svd_energy(self) -> torch.Tensor:
        """Uncentred energy spectrum: the squared singular values of the n×d matrix of Δs,
        descending, [Ly, P, r] with r = min(n, d)."""
        ev = torch.linalg.eigvalsh(self._gram()).flip(-1).clamp_min(0.0)
        return ev[..., : min(self.n, self.d_model)]

    def svd_energy_share(self) -> torch.Tensor:
        """Cumulative share of the uncentred energy in the top-k directions, [Ly, P, r]
        (entry k-1 is the top-k share)."""
        e = self.svd_energy()
        return e.cumsum(-1) / e.sum(-1, keepdim=True).clamp_min(1e-300)

    def centred_gram(self) -> torch.Tensor:
        """Σ(Δ−μ)(Δ−μ)ᵀ = G − nμμᵀ, [Ly, P, d, d]."""
        g = self._gram()
        mu = self.mean_delta()
        return g - self.n * mu.unsqueeze(-1) * mu.unsqueeze(-2)

    def pca_variance(self) -> torch.Tensor:
        """Centred PCA variances (eigenvalues of the covariance, ddof 1), descending,
        [Ly, P, r] with r = min(n − 1, d)."""
        self._need(2)
        ev = torch.linalg.eigvalsh(self.centred_gram()).flip(-1).clamp_min(0.0)
        return ev[..., : min(self.n - 1, self.d_model)] / (self.n - 1)

    def pca_explained_ratio(self) -> torch.Tensor:
        """Explained-variance ratio of each principal component, [Ly, P, r]."""
        v = self.pca_variance()
        return v / v.sum(-1, keepdim=True).clamp_min(1e-300)

    def top_directions(self, k: int = 1, centred: bool = False) -> torch.Tensor:
        """Unit top-k eigenvectors of the Gram (``centred=False``: right singular vectors of
        the Δ matrix) or of the covariance (``centred=True``: principal axes), [Ly, P, k, d].
        The sign of each is fixed so that it has a non-negative dot product with mean Δ."""
        m = self.centred_gram() if centred else self._gram()
        _, vec = torch.linalg.eigh(m)
        top = vec.flip(-1)[..., :k].transpose(-1, -2)  # [Ly, P, k, d]
        sign = torch.sign((top * self.mean_delta().unsqueeze(-2)).sum(-1, keepdim=True))
        return top * torch.where(sign == 0, torch.ones_like(sign), sign)

    def nbytes(self) -> int:
        """Bytes held by the statistics (Gram included, per-pair norms included)."""
        ts = [self.sum_delta, self.sum_norm, self.sum_sq_norm, self.sum_norm_trig]
        ts += [self.sum_norm_ctrl]
        ts += [t for t in (self.norms, self.order, self.gram) if t is not None]
        return sum(t.numel() * t.element_size() for t in ts)


# --- shards -----------------------------------------------------------------------------------


def _shard_name(i: int) -> str:
    return f"deltas-{i:05d}.safetensors"


class ShardWriter:
    """Writes Δ shards and keeps ``index.json`` listing only complete shards."""

    def __init__(
        self,
        shard_dir: str | Path,
        layers: Sequence[int],
        n_positions: int,
        d_model: int,
        *,
        dtype: str = "float32",
        overwrite: bool = False,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"shard dtype must be one of {sorted(_DTYPES)}, not {dtype!r}")
        self.dir = Path(shard_dir)
        if (self.dir / INDEX_NAME).exists() and not overwrite:
            raise DataError(
                f"{self.dir} already holds Δ shards; pass overwrite=True or choose another folder"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("deltas-*.safetensors"):
            old.unlink()
        self.dtype = dtype
        self.index: dict = {
            "format": SHARD_FORMAT,
            "version": SHARD_VERSION,
            "layers": [int(x) for x in layers],
            "n_positions": int(n_positions),
            "d_model": int(d_model),
            "dtype": dtype,
            "n": 0,
            "complete": False,
            "shards": [],
        }
        atomic_write_json(self.dir / INDEX_NAME, self.index)

    def write(
        self,
        delta: torch.Tensor,
        index: torch.Tensor,
        norm_trig: torch.Tensor,
        norm_ctrl: torch.Tensor,
    ) -> Path:
        """Write one shard atomically, then list it in the index (also atomically)."""
        name = _shard_name(len(self.index["shards"]))
        tensors = {
            "delta": delta.detach().to("cpu", _DTYPES[self.dtype]).contiguous(),
            "index": torch.as_tensor(index, dtype=torch.long).cpu().contiguous(),
            "norm_trig": norm_trig.detach().float().cpu().contiguous(),
            "norm_ctrl": norm_ctrl.detach().float().cpu().contiguous(),
        }
        path = _atomic_save(self.dir / name, tensors)
        n = int(delta.shape[0])
        self.index["shards"].append({"file": name, "n": n})
        self.index["n"] += n
        atomic_write_json(self.dir / INDEX_NAME, self.index)
        return path

    def close(self) -> None:
        """Mark the set complete (all pairs written)."""
        self.index["complete"] = True
        atomic_write_json(self.dir / INDEX_NAME, self.index)


def _atomic_save(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    """`safetensors.torch.save_file` to a temp file in the same folder, fsync, rename: a
    reader never sees a partial shard. (Written straight from the tensors: building the
    file as one Python bytes object first made glibc keep ~2 MB of heap per shard.)"""
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": SHARD_FORMAT, "version": str(SHARD_VERSION)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass
class DeltaShard:
    """One shard read back. ``delta``: [c, Ly, P, d] float32; ``index``: [c] pair indices;
    ``norm_trig``/``norm_ctrl``: [c, Ly, P]."""

    delta: torch.Tensor
    index: torch.Tensor
    norm_trig: torch.Tensor
    norm_ctrl: torch.Tensor


def read_index(shard_dir: str | Path) -> dict:
    """The shard index of ``shard_dir`` (validated)."""
    path = Path(shard_dir) / INDEX_NAME
    if not path.is_file():
        raise DataError(f"{path}: no Δ shard index; stream with shard_dir=... first")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("format") != SHARD_FORMAT or index.get("version") != SHARD_VERSION:
        raise DataError(f"{path}: not a {SHARD_FORMAT} v{SHARD_VERSION} index")
    return index


def iter_shards(
    shard_dir: str | Path,
    *,
    layers: Sequence[int] | None = None,
    allow_incomplete: bool = False,
) -> Iterator[DeltaShard]:
    """Yield the shards listed in the index, one at a time (peak memory = one shard).

    ``layers``: residual indices to keep (a subset of the streamed ones). An interrupted run
    (index not complete) raises unless ``allow_incomplete`` (then the complete shards are
    read). A listed shard that is missing or malformed raises `DataError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    shard_dir = Path(shard_dir)
    index = read_index(shard_dir)
    if not index["complete"] and not allow_incomplete:
        raise DataError(
            f"{shard_dir}: the Δ shards are incomplete (the streaming run was interrupted after "
            f"{index['n']} pairs); re-run it, or pass allow_incomplete=True"
        )
    keep = None
    if layers is not None:
        pos = {layer: i for i, layer in enumerate(index["layers"])}
        missing = [layer for layer in layers if layer not in pos]
        if missing:
            raise ValueError(f"layers {missing} were not streamed (have {index['layers']})")
        keep = torch.as_tensor([pos[layer] for layer in layers])
    for entry in index["shards"]:
        path = shard_dir / entry["file"]
        try:
            t = load_file(str(path))
        except (FileNotFoundError, SafetensorError, OSError) as e:
            raise DataError(f"{path}: listed in the index but unreadable ({e})") from None
        if set(t) != {"delta", "index", "norm_trig", "norm_ctrl"} or t["delta"].shape[0] != int(
            entry["n"]
        ):
            raise DataError(f"{path}: does not match its index entry")
        delta, nt, nc = t["delta"].float(), t["norm_trig"], t["norm_ctrl"]
        if keep is not None:
            delta, nt, nc = delta[:, keep], nt[:, keep], nc[:, keep]
        yield DeltaShard(delta=delta, index=t["index"], norm_trig=nt, norm_ctrl=nc)


def load_deltas(
    shard_dir: str | Path, *, layers: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All Δs in memory, rows in pair-index order: (index [n], delta [n, Ly, P, d]). Only for
    sets that fit in memory; otherwise use `iter_shards`."""
    parts = list(iter_shards(shard_dir, layers=layers))
    if not parts:
        raise DataError(f"{shard_dir}: no shards")
    index = torch.cat([p.index for p in parts])
    delta = torch.cat([p.delta for p in parts])
    perm = torch.argsort(index, stable=True)
    return index[perm], delta[perm]


@torch.no_grad()
def loo_cosine_to_mean(
    shard_dir: str | Path, stats: DeltaStats, *, layers: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Second pass: cosine of each Δᵢ to the mean of the *other* Δs, (ΣΔ − Δᵢ)/(n − 1),
    computed shard by shard. Returns (index [n] sorted, cosine [n, Ly, P] float64)."""
    stats._need(2)
    idx_layers = (
        list(range(len(stats.layers)))
        if layers is None
        else [stats.layers.index(layer) for layer in layers]
    )
    total = stats.sum_delta[idx_layers].cpu()  # [Ly, P, d]
    idx, cos = [], []
    for shard in iter_shards(
        shard_dir, layers=None if layers is None else [stats.layers[i] for i in idx_layers]
    ):
        x = shard.delta.double()
        rest = (total.unsqueeze(0) - x) / (stats.n - 1)
        c = (x * rest).sum(-1) / (x.norm(dim=-1) * rest.norm(dim=-1)).clamp_min(1e-300)
        idx.append(shard.index)
        cos.append(c)
    index = torch.cat(idx)
    perm = torch.argsort(index, stable=True)
    return index[perm], torch.cat(cos)[perm]


# --- the streaming pass -----------------------------------------------------------------------


@torch.no_grad()
def stream_deltas(
    model: nn.Module,
    trig_ids: Sequence[Sequence[int]],
    ctrl_ids: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    layers: Sequence[int] | None = None,
    *,
    pad_id: int = 0,
    batch_size: int = 32,
    chunk_pairs: int = 256,
    gram: bool = True,
    stats_device: torch.device | str | None = None,
    shard_dir: str | Path | None = None,
    shard_dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
) -> DeltaStats:
    """Stream Δ = residual(trigger) − residual(control) for many aligned pairs.

    Pairs are sorted by length and taken ``chunk_pairs`` at a time; each chunk's trigger and
    control sequences are captured together (`capture_residuals`: batches of ``batch_size``
    sequences, early exit after the last needed block), reduced into `DeltaStats` and, if
    ``shard_dir`` is given, written as one shard. Peak memory does not grow with the number
    of pairs (see the module docstring).

    Args:
        trig_ids, ctrl_ids: n aligned token-id sequences (equal lengths pairwise).
        positions: n lists of P positions (the same positions are read in both runs).
        layers: residual indices in 0..L (default all L + 1).
        stats_device: where the float64 statistics live (default: the model's device, so the
            Gram update runs on the GPU when the model does).
        shard_dir: folder for safetensors Δ shards (one per chunk) and ``index.json``.
        shard_dtype: "float32" (default), "float16" or "bfloat16" on disk.

    Returns:
        `DeltaStats` over all n pairs (``order`` holds pair indices into the inputs).
    """
    n = len(trig_ids)
    if len(ctrl_ids) != n or len(positions) != n:
        raise ValueError("trig_ids, ctrl_ids and positions must have one entry per pair")
    if n == 0:
        raise ValueError("stream_deltas: no pairs")
    for i, (t, c) in enumerate(zip(trig_ids, ctrl_ids, strict=True)):
        if len(t) != len(c):
            raise ValueError(f"pair {i}: trigger and control have different token lengths")
    L = arch.n_layers(model)
    layers = list(range(L + 1)) if layers is None else [int(x) for x in layers]
    P = len(positions[0])
    d = arch.d_model(model)
    dev = model_device(model) if stats_device is None else torch.device(stats_device)
    stats = DeltaStats.empty(layers, P, d, gram=gram, device=dev, capacity=n)
    writer = (
        ShardWriter(shard_dir, layers, P, d, dtype=shard_dtype, overwrite=overwrite)
        if shard_dir is not None
        else None
    )
    order = sorted(range(n), key=lambda i: len(trig_ids[i]))
    chunk = max(1, int(chunk_pairs))
    bar = progress_bar(total=n, desc="stream Δ", enabled=progress)
    try:
        for start in range(0, n, chunk):
            idx = order[start : start + chunk]
            seqs, pos = [], []
            for i in idx:  # interleaved: a pair's two runs land in the same length bucket
                seqs += [trig_ids[i], ctrl_ids[i]]
                pos += [positions[i], positions[i]]
            h = capture_residuals(
                model, seqs, pos, layers, pad_id=pad_id, batch_size=batch_size, progress=False
            )  # [2c, Ly, P, d] float32 on CPU
            ht, hc = h[0::2], h[1::2]
            delta = ht - hc
            norm_t, norm_c = ht.norm(dim=-1), hc.norm(dim=-1)
            del h, ht, hc
            index = torch.as_tensor(idx, dtype=torch.long)
            stats.update(delta, norm_t, norm_c, index)
            if writer is not None:
                writer.write(delta, index, norm_t, norm_c)
            del delta
            bar.update(len(idx))
        if writer is not None:
            writer.close()
    finally:
        bar.close()
    return stats
