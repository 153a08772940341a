"""Bootstrap intervals of the spectral shares of a set of Δs (`stoplens.analyses.lowrank`):
the top-k energy shares, σ₂²/σ₁² and the PC1 share under ``n_boot`` resamples of the rows.

A resample's spectrum comes from the n×n (or d×d) Gram matrix of the resampled rows, batched:
exact eigensolves up to ``EXACT_MAX``, warm-started subspace iteration beyond (a speed-up
with the exact answer to ~tol). Resampling rows concentrates the spectrum, so the intervals
are shifted by the bootstrap's bias estimate (`stoplens.analyses.stats.bias_corrected_interval`).

Owns: `share_intervals` and its engine. Must not: compute point estimates, plot or write files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stoplens.analyses.stats import bias_corrected_interval, resample_weights

_SHARE = (0.0, 1.0)  # energy shares and σ₂²/σ₁² lie in [0, 1]

EXACT_MAX = 192  # resample matrices up to this size are solved exactly (eigvalsh)


def _top_eig(
    m: torch.Tensor, init: torch.Tensor, q: int = 1, tol: float = 1e-9, max_iter: int = 10
) -> torch.Tensor:
    """The ``q`` largest eigenvalues (descending) of each PSD matrix in ``m`` [b, r, r] ->
    [b, q]. Exact (eigvalsh) for r <= EXACT_MAX. Larger: block subspace iteration
    warm-started from ``init`` [b, r, p >= q] (the full sample's top directions) with a
    Rayleigh-Ritz step; it converges in a few iterations when a few directions dominate (the
    case a claim rests on). Matrices whose top-q Ritz values have not settled to ``tol``
    (relative) after ``max_iter`` iterations (flat spectra) are solved exactly, so the result
    is always exact to ~tol."""
    if m.shape[-1] <= EXACT_MAX:
        return torch.linalg.eigvalsh(m).flip(-1)[:, :q].clamp_min(0)
    basis, _ = torch.linalg.qr(init)
    z = m @ basis
    lam = torch.linalg.eigvalsh(basis.transpose(1, 2) @ z).flip(-1)[:, :q]
    done = torch.zeros(lam.shape[0], dtype=torch.bool)
    for _ in range(max_iter):
        basis, _ = torch.linalg.qr(z)
        z = m @ basis
        new = torch.linalg.eigvalsh(basis.transpose(1, 2) @ z).flip(-1)[:, :q]
        scale = new[:, :1].abs().clamp_min(1e-300)
        done = ((new - lam).abs() <= tol * scale).all(dim=1)
        lam = new
        if done.all():
            break
    if not done.all():
        idx = (~done).nonzero().squeeze(1)
        lam[idx] = torch.linalg.eigvalsh(m[idx]).flip(-1)[:, :q]
    return lam.clamp_min(0)


@torch.no_grad()
def _boot_spectrum(
    x: np.ndarray, w: np.ndarray, q: int = 1, chunk: int = 32, block: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap uncentred top-q eigenvalue shares and the PC1 share of ``x`` [n, d] under
    resample weights ``w`` [B, n] (rows sum to 1) -> ([B, q] shares of the total energy of
    each of the q largest eigenvalues, [B] PC1 share).

    A resample with counts c has uncentred second moment Σcᵢxᵢxᵢᵀ, whose nonzero spectrum is
    that of the n×n matrix (√c√cᵀ)∘G, G = XXᵀ; centred, G is replaced by the Gram of xᵢ − μ_c
    (μ_c = Σcᵢxᵢ/n). When d < n the d×d forms are used instead. Only the top eigenvalue is
    needed (the total is a trace), see `_top_eig`."""
    X = torch.from_numpy(np.ascontiguousarray(x))
    n, d = X.shape
    q = max(1, min(q, n, d))
    p = min(max(block, q), n, d)
    e1: list[np.ndarray] = []
    p1: list[np.ndarray] = []
    gram_route = n <= d
    if gram_route:
        G = X @ X.T
        g0 = G.sum(1, keepdim=True) / n
        K0 = G - g0 - g0.T + G.sum() / n**2
        U = torch.linalg.eigh(G)[1][:, -p:]  # full-sample top directions, n-space
        Uc = torch.linalg.eigh(K0)[1][:, -p:]
    else:
        V = torch.linalg.svd(X, full_matrices=False)[2][:p].T  # d-space
        Vc = torch.linalg.svd(X - X.mean(0), full_matrices=False)[2][:p].T
    for start in range(0, w.shape[0], chunk):
        c = torch.from_numpy(w[start : start + chunk] * n)  # counts [b, n]
        b = c.shape[0]
        if gram_route:
            sq = c.sqrt()
            outer = sq.unsqueeze(2) * sq.unsqueeze(1)  # [b, n, n]
            g = (c @ G) / n  # [b, n]: x_i . mu_c
            qq = (g * c).sum(1, keepdim=True) / n  # [b, 1]: |mu_c|^2
            K = G - g.unsqueeze(2) - g.unsqueeze(1) + qq.unsqueeze(2)
            mats = (
                (e1, outer * G, sq.unsqueeze(2) * U),
                (p1, outer * K, sq.unsqueeze(2) * Uc),
            )
        else:
            mu = (c @ X) / n  # [b, d]
            M = torch.einsum("bn,nd,ne->bde", c, X, X)
            Mc = M - n * mu.unsqueeze(2) * mu.unsqueeze(1)
            mats = ((e1, M, V.expand(b, d, p)), (p1, Mc, Vc.expand(b, d, p)))
        for i, (out, m, init) in enumerate(mats):
            tot = m.diagonal(dim1=1, dim2=2).sum(-1, keepdim=True)
            top = _top_eig(m, init, q if i == 0 else 1)
            out.append(torch.where(tot > 0, top / tot, torch.nan).numpy())
    return np.concatenate(e1), np.concatenate(p1)[:, 0]


@dataclass(frozen=True, eq=False)
class ShareIntervals:
    """One layer's spectral shares with bias-corrected bootstrap intervals, each as
    (value, lo, hi): ``energy`` [len(ks), 3] the uncentred top-k energy shares, ``top1`` [3]
    the top-1 share, ``second_ratio`` [3] σ₂²/σ₁², ``pc1`` [3] the centred PC1 share."""

    energy: np.ndarray
    top1: np.ndarray
    second_ratio: np.ndarray
    pc1: np.ndarray


def share_intervals(
    x: np.ndarray,
    ks: tuple[int, ...],
    energy: np.ndarray,
    ev: np.ndarray,
    evc: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    ci: float,
) -> ShareIntervals:
    """Intervals of the shares of ``x`` [n, d] over ``n_boot`` seeded resamples of its rows,
    around the full sample's values: ``energy`` [len(ks)] the top-k energy shares, ``ev`` /
    ``evc`` the uncentred / centred eigenvalues (squared singular values, descending)."""
    w = resample_weights(x.shape[0], n_boot, seed)
    q = max(max(ks), 2)
    be, bp = _boot_spectrum(x, w, q)  # [B, q'] eigenvalue shares (q' <= q), [B]
    cum = np.cumsum(be, axis=1)
    # resampling rows concentrates the spectrum: intervals corrected for that bias
    ek = np.zeros((len(ks), 3))
    for i, kk in enumerate(ks):
        est = energy[i]
        lo, hi = bias_corrected_interval(cum[:, min(kk, cum.shape[1]) - 1], est, ci, _SHARE)
        ek[i] = (est, lo, hi)
    r21 = np.zeros(3)
    with np.errstate(divide="ignore", invalid="ignore"):
        second = be[:, 1] / be[:, 0] if be.shape[1] > 1 else np.zeros(len(be))
        r21[0] = ev[1] / ev[0] if len(ev) > 1 and ev[0] > 0 else np.nan
    r21[1:] = bias_corrected_interval(second, r21[0], ci, _SHARE)
    top1 = ev[0] / ev.sum() if ev.sum() > 0 else np.nan
    tot = evc.sum()
    pc1 = evc[0] / tot if tot > 0 else np.nan
    return ShareIntervals(
        energy=ek,
        top1=np.array((top1, *bias_corrected_interval(be[:, 0], top1, ci, _SHARE))),
        second_ratio=r21,
        pc1=np.array((pc1, *bias_corrected_interval(bp, pc1, ci, _SHARE))),
    )
