"""Analysis 3: the logit lens of Δ, through the model's own final norm.

At every captured layer l, with h the control activation and h + Δ the triggered one at the
last decision position:

* Δlogits = U·norm(h + Δ) − U·norm(h), per pair, averaged over pairs (also Δ log-probs);
* the direction readout U·norm(Δ̂·s), Δ̂ = mean Δ / ‖mean Δ‖ and s = mean ‖h‖ at that layer
  (a direction read at the scale the final norm expects there);
* EOS: mean Δlogit and Δ log-prob with bootstrap CIs, and its z-score against the vocabulary
  and rank (1 = most amplified) in the mean Δlogits and in the readout;
* the top-k amplified and suppressed tokens, decoded to readable labels;
* "content suppressed": for each pair, the tokens the *control* run would produce (its top-k
  next tokens at the final layer, EOS excluded); mean Δlogit and Δ log-prob on them with CI.

Everything is repeated on the fixed-token null (one fixed ordinary token in the trigger's
place: what a token swap does to the lens without any mechanism; the direction readout of its
mean Δ too) and on the control-vs-control null (the noise floor).

Where the lens says something. `unembed` applies the final norm (and soft-capping where the
family has it), so the lens of residual[L] is exactly the model's real next-token logits
(``final_lens_max_abs_diff`` records that check on a few control prompts; the predecessor read
the lens without the final norm). At the last layer the lens therefore only restates
behaviour: a model that stops always shows EOS up and content down there. Evidence of
mechanism is read at the intermediate residuals 1..L−1: ``eos_first_layer`` is the first of
them at which EOS *enters*: it is among the top ``entry_k`` of the mean Δ-lens AND its mean Δ
log-prob is at least ``entry_min_dlogprob`` and exceeds both the fixed token's (paired) and
the 95th percentile of single control-vs-control swaps (``eos_dlogprob_p95`` of the null side).
The rank alone is not enough: a token whose unembedding row is unusually large reaches the top
of any Δ-lens by size, in either direction, and any token swap moves it a little. The first layer has a bootstrap interval over prompt resamples (None where
EOS never enters). Must not: plot or write files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from stoplens.analyses.final_logits import control_logits, final_lens_check
from stoplens.analyses.stats import (
    DEFAULT_CI,
    DEFAULT_N_BOOT,
    EstimateSeries,
    bootstrap_mean,
    jsonable,
    percentile_interval,
    rank_of,
    resample_weights,
    zscore_of,
)
from stoplens.analyses.token_readout import TokenScore, readout, token_label, top_tokens
from stoplens.capture.deltaset import DeltaSet
from stoplens.capture.extract import model_device, unembed


@dataclass(frozen=True)
class LogitLensConfig:
    top_k: int = 10  # decoded tokens per layer
    content_k: int = 5  # control run's top next tokens for "content suppressed"
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    ci: float = DEFAULT_CI
    chunk: int = 64  # pairs per unembedding batch
    n_check: int = 4  # control prompts for the final-layer lens check
    entry_k: int = 10  # "EOS enters the lens": EOS among the top entry_k of the mean Δ-lens
    entry_min_dlogprob: float = 1.0  # ... and its mean Δ log-prob at least this (nats)
    n_boot_entry: int = 200  # resamples for the interval of the first entry layer


@dataclass(frozen=True, eq=False)
class LensSide:
    """Logit-lens statistics of one Δ set (trigger or null), per captured layer [k].

    ``mean_dlogits`` [k, V] mean Δlogits; ``eos_dlogit`` / ``eos_dlogprob``: mean over pairs
    with CI; ``eos_z`` / ``eos_rank`` of EOS in ``mean_dlogits``; ``content_dlogit`` /
    ``content_dlogprob``: mean over pairs of the mean over the control's top-k tokens.
    ``eos_dlogprob_p95`` [k]: 95th percentile over pairs of the per-pair EOS Δ log-prob (on
    the control-vs-control side: the EOS effect of a single random token swap).
    ``eos_first_layer``: the first intermediate residual (1..L−1) where EOS enters (module
    docstring; None: never), with ``eos_first_layer_ci`` the 2.5/97.5% percentiles over
    prompt resamples (a resample where EOS never enters counts as L) and ``eos_entry_share``
    the share of resamples where it enters at all. Set on the trigger side only."""

    mean_dlogits: np.ndarray
    eos_dlogit: EstimateSeries
    eos_dlogprob: EstimateSeries
    eos_z: np.ndarray
    eos_rank: np.ndarray
    content_dlogit: EstimateSeries
    content_dlogprob: EstimateSeries
    n: int
    eos_dlogprob_p95: np.ndarray | None = None
    eos_first_layer: int | None = None
    eos_first_layer_ci: tuple[float, float] | None = None
    eos_entry_share: float | None = None
    pair_eos_dlogprob: np.ndarray | None = None  # [n, k], kept out of JSON
    boot_top_k: np.ndarray | None = None  # [B, k] EOS in the top entry_k per resample

    def to_dict(self) -> dict:
        return jsonable(
            {
                "n": self.n,
                "eos_dlogprob_p95": self.eos_dlogprob_p95,
                "eos_first_layer": self.eos_first_layer,
                "eos_first_layer_ci": self.eos_first_layer_ci,
                "eos_entry_share": self.eos_entry_share,
                "eos_dlogit": self.eos_dlogit,
                "eos_dlogprob": self.eos_dlogprob,
                "eos_z": self.eos_z,
                "eos_rank": self.eos_rank,
                "content_dlogit": self.content_dlogit,
                "content_dlogprob": self.content_dlogprob,
            }
        )


@dataclass(frozen=True, eq=False)
class LogitLensResult:
    """Analysis 3 per captured layer (``layers`` [k]).

    ``trigger`` / ``null`` / ``fixed`` (None without a fixed-token capture): `LensSide`.
    ``readout`` [k, V] direction readout; ``readout_eos_z`` / ``readout_eos_rank`` [k]; the same
    readout of the fixed-token null's mean Δ: ``fixed_readout_eos_rank`` / ``_z``;
    ``n_layers`` L (the last residual, where the lens is the model's output, is residual L);
    ``top_amplified`` / ``top_suppressed`` /
    ``readout_top`` / ``readout_bottom``: per layer, lists of `TokenScore`.
    ``final_lens_max_abs_diff``: max |lens(residual[L]) − model logits| on a few control
    prompts (None when residual[L] was not captured)."""

    layers: list[int]
    eos_id: int
    eos_label: str
    vocab_size: int
    trigger: LensSide
    null: LensSide
    readout: np.ndarray
    readout_eos_z: np.ndarray
    readout_eos_rank: np.ndarray
    top_amplified: list[list[TokenScore]]
    top_suppressed: list[list[TokenScore]]
    readout_top: list[list[TokenScore]]
    readout_bottom: list[list[TokenScore]]
    final_lens_max_abs_diff: float | None
    config: LogitLensConfig
    fixed: LensSide | None = None
    fixed_readout_eos_rank: np.ndarray | None = None
    fixed_readout_eos_z: np.ndarray | None = None
    n_layers: int | None = None

    def at(self, residual_layer: int) -> int:
        return self.layers.index(residual_layer)

    @property
    def intermediate(self) -> list[int]:
        """Indices (into ``layers``) of the intermediate residuals 1..L−1."""
        L = self.n_layers if self.n_layers is not None else max(self.layers)
        return [j for j, layer in enumerate(self.layers) if 0 < layer < L]

    def to_dict(self) -> dict:
        return jsonable(
            {
                "layers": self.layers,
                "eos_id": self.eos_id,
                "eos_token": self.eos_label,
                "vocab_size": self.vocab_size,
                "n_layers": self.n_layers,
                "trigger": self.trigger,
                "null": self.null,
                "fixed": self.fixed,
                "readout_eos_z": self.readout_eos_z,
                "readout_eos_rank": self.readout_eos_rank,
                "fixed_readout_eos_z": self.fixed_readout_eos_z,
                "fixed_readout_eos_rank": self.fixed_readout_eos_rank,
                "top_amplified": self.top_amplified,
                "top_suppressed": self.top_suppressed,
                "readout_top": self.readout_top,
                "readout_bottom": self.readout_bottom,
                "final_lens_max_abs_diff": self.final_lens_max_abs_diff,
                "config": self.config,
            }
        )


# --- computation ----------------------------------------------------------------------------


@torch.no_grad()
def _side(
    model: nn.Module,
    h_t: torch.Tensor,
    h_c: torch.Tensor,
    content: torch.Tensor,
    eos_id: int,
    vocab: int,
    cfg: LogitLensConfig,
    intermediate: Sequence[int] = (),
) -> LensSide:
    """h_t, h_c [n, k, d]; content [n, c] token ids; ``intermediate``: indices of the
    residuals 1..L−1 among the k captured layers (where EOS entry is judged)."""
    n, k, _ = h_t.shape
    dev = model_device(model)
    mean_dl = np.zeros((k, vocab))
    per = np.zeros((4, n, k))  # eos dl, eos dlp, content dl, content dlp
    content = content.to(dev)
    inter = set(intermediate)
    w = torch.from_numpy(resample_weights(n, cfg.n_boot_entry, cfg.seed)).to(dev)  # [B, n]
    entered = np.zeros((cfg.n_boot_entry, k), dtype=bool)  # EOS in the top entry_k, per resample
    for j in range(k):
        acc = torch.zeros(vocab, dtype=torch.float64, device=dev)
        boot = (
            torch.zeros(w.shape[0], vocab, dtype=torch.float64, device=dev) if j in inter else None
        )
        for s in range(0, n, cfg.chunk):
            sl = slice(s, min(s + cfg.chunk, n))
            lt = unembed(model, h_t[sl, j])[:, :vocab]
            lc = unembed(model, h_c[sl, j])[:, :vocab]
            dl = lt - lc
            dlp = torch.log_softmax(lt, -1) - torch.log_softmax(lc, -1)
            acc += dl.double().sum(0)
            if boot is not None:
                boot += w[:, sl] @ dl.double()  # resampled mean Δlogits [B, V]
            cid = content[sl]
            per[0, sl, j] = dl[:, eos_id].double().cpu().numpy()
            per[1, sl, j] = dlp[:, eos_id].double().cpu().numpy()
            per[2, sl, j] = dl.gather(1, cid).double().mean(1).cpu().numpy()
            per[3, sl, j] = dlp.gather(1, cid).double().mean(1).cpu().numpy()
        mean_dl[j] = (acc / n).cpu().numpy()
        if boot is not None:
            rank = (boot >= boot[:, eos_id : eos_id + 1]).sum(1)  # ties count against EOS
            entered[:, j] = (rank <= cfg.entry_k).cpu().numpy()
    est = [bootstrap_mean(per[i], cfg.n_boot, cfg.seed, cfg.ci) for i in range(4)]
    assert all(isinstance(e, EstimateSeries) for e in est)
    return LensSide(
        mean_dlogits=mean_dl,
        eos_dlogit=est[0],  # type: ignore[arg-type]
        eos_dlogprob=est[1],  # type: ignore[arg-type]
        eos_z=_eos_z(mean_dl, eos_id),
        eos_rank=_eos_rank(mean_dl, eos_id),
        content_dlogit=est[2],  # type: ignore[arg-type]
        content_dlogprob=est[3],  # type: ignore[arg-type]
        n=n,
        eos_dlogprob_p95=np.percentile(per[1], 95, axis=0),
        pair_eos_dlogprob=per[1],
        boot_top_k=entered,
    )


def _eos_entry(
    trig: LensSide,
    fixed: LensSide | None,
    null: LensSide,
    layers: Sequence[int],
    inter: Sequence[int],
    cfg: LogitLensConfig,
) -> LensSide:
    """``trig`` with ``eos_first_layer`` (+ interval and share) set: the first intermediate
    layer where EOS is in the top ``entry_k`` of the mean Δ-lens and its mean Δ log-prob beats
    the fixed token's and the null's single-swap 95th percentile (module docstring). Resamples
    reuse the seeded weights of `_side`; the fixed side is paired with the trigger side when
    both have the same rows (the default: every pair)."""
    assert trig.pair_eos_dlogprob is not None and trig.boot_top_k is not None
    p95 = (
        null.eos_dlogprob_p95
        if null.eos_dlogprob_p95 is not None
        else np.full(len(layers), -np.inf)
    )
    w = resample_weights(trig.n, cfg.n_boot_entry, cfg.seed)
    t_b = w @ trig.pair_eos_dlogprob  # [B, k]
    t_v = trig.eos_dlogprob.value
    if fixed is not None and fixed.pair_eos_dlogprob is not None:
        f_v = fixed.eos_dlogprob.value
        f_b = (
            w @ fixed.pair_eos_dlogprob
            if fixed.n == trig.n
            else np.broadcast_to(fixed.eos_dlogprob.hi, t_b.shape)
        )
    else:
        f_v = np.full(len(layers), -np.inf)
        f_b = np.broadcast_to(f_v, t_b.shape)
    order = sorted(inter)
    floor = cfg.entry_min_dlogprob
    ok = (trig.eos_rank <= cfg.entry_k) & (t_v > f_v) & (t_v > p95) & (t_v >= floor)
    first = next((int(layers[j]) for j in order if ok[j]), None)
    first_ci = share = None
    if order:
        ok_b = trig.boot_top_k & (t_b > f_b) & (t_b > p95[None, :]) & (t_b >= floor)
        never = max(layers)  # a resample where EOS never enters counts as L
        firsts = np.array(
            [next((layers[j] for j in order if row[j]), never) for row in ok_b], dtype=float
        )
        lo, hi = percentile_interval(firsts, cfg.ci)
        first_ci = (float(lo), float(hi))
        share = float(ok_b[:, order].any(axis=1).mean())
    return replace(trig, eos_first_layer=first, eos_first_layer_ci=first_ci, eos_entry_share=share)


@torch.no_grad()
def eos_rank_at(model: nn.Module, ds: DeltaSet, eos_id: int, vocab: int, index: int = -1) -> int:
    """EOS's rank (1 = most amplified) in the mean Δlogits of the captured layer ``index``
    (default the last): ``LensSide.eos_rank[index]`` of the trigger side, computed alone (same
    chunks, same sums) for callers that need only this number (e.g. one per checkpoint)."""
    h_t, h_c = ds.triggered("last")[:, index, 0], ds.control("last")[:, index, 0]
    chunk = LogitLensConfig.chunk
    acc = torch.zeros(vocab, dtype=torch.float64, device=model_device(model))
    for s in range(0, h_t.shape[0], chunk):
        dl = (
            unembed(model, h_t[s : s + chunk])[:, :vocab]
            - unembed(model, h_c[s : s + chunk])[:, :vocab]
        )
        acc += dl.double().sum(0)
    return rank_of((acc / h_t.shape[0]).cpu().numpy(), eos_id)


def _eos_z(rows: np.ndarray, eos: int) -> np.ndarray:
    """EOS's z-score against the vocabulary in each row of ``rows`` [k, V] -> [k]."""
    return np.array([zscore_of(row, eos) for row in rows])


def _eos_rank(rows: np.ndarray, eos: int) -> np.ndarray:
    """EOS's rank (1 = largest) in each row of ``rows`` [k, V] -> [k]."""
    return np.array([rank_of(row, eos) for row in rows])


def _content_tokens(ctrl_logits: torch.Tensor, eos: int, k: int) -> torch.Tensor:
    """The control run's top-``k`` next tokens, EOS excluded: [n, k] token ids (from its
    logits [n, V])."""
    masked = ctrl_logits.clone()
    masked[:, eos] = -torch.inf
    return masked.topk(k, dim=-1).indices


def _readouts(model: nn.Module, delta: torch.Tensor, scale: torch.Tensor, vocab: int) -> np.ndarray:
    """Direction readout of the mean of ``delta`` [n, k, d] per layer, at the layer's mean
    control norm ``scale`` [k] -> [k, V]."""
    k = delta.shape[1]
    return np.stack([readout(model, delta[:, j].mean(0), float(scale[j]), vocab) for j in range(k)])


def _fixed_side(
    model: nn.Module, ds: DeltaSet, content: torch.Tensor, scale: torch.Tensor, side: dict
) -> tuple[LensSide | None, np.ndarray | None]:
    """The fixed-token null through the lens and the direction readout of its mean Δ
    (None, None without a fixed-token capture)."""
    if not ds.has_fixed:
        return None, None
    fx = torch.as_tensor(ds.fixed_index, dtype=torch.long)
    h_t, h_c = ds.fixed_triggered("last")[:, :, 0], ds.fixed_control("last")[:, :, 0]
    fixed = _side(model, h_t, h_c, content[fx], **side)
    return fixed, _readouts(model, ds.fixed_delta("last")[:, :, 0].double(), scale, side["vocab"])


def logit_lens_delta(
    model: nn.Module,
    ds: DeltaSet,
    tokenizer,
    *,
    eos_id: int | None = None,
    config: LogitLensConfig | None = None,
) -> LogitLensResult:
    """Analysis 3 on a `DeltaSet` captured from ``model`` (see module docstring). ``eos_id``
    defaults to ``tokenizer.eos_token_id`` (the token that ends a reply)."""
    cfg = config or LogitLensConfig()
    eos = int(tokenizer.eos_token_id if eos_id is None else eos_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ctrl_logits = control_logits(model, ds, pad)
    vocab = min(len(tokenizer), ctrl_logits.shape[-1])
    content = _content_tokens(ctrl_logits[:, :vocab], eos, cfg.content_k)  # [n, c]
    ix = torch.as_tensor(ds.null_index, dtype=torch.long)
    layers = list(ds.layers)
    inter = [j for j, layer in enumerate(layers) if 0 < layer < ds.n_layers]
    side: dict[str, Any] = dict(eos_id=eos, vocab=vocab, cfg=cfg, intermediate=inter)
    trig = _side(model, ds.triggered("last")[:, :, 0], ds.control("last")[:, :, 0], content, **side)
    null = _side(
        model, ds.ctrl2.at("last")[:, :, 0], ds.null_control("last")[:, :, 0], content[ix], **side
    )
    scale = ds.control("last")[:, :, 0].double().norm(dim=-1).mean(0)  # [k]
    ro = _readouts(model, ds.delta("last")[:, :, 0].double(), scale, vocab)
    fixed, f_ro = _fixed_side(model, ds, content, scale, side)
    trig = _eos_entry(trig, fixed, null, layers, inter, cfg)
    tk, k = cfg.top_k, len(ds.layers)
    return LogitLensResult(
        layers=list(ds.layers),
        eos_id=eos,
        eos_label=token_label(tokenizer, eos),
        vocab_size=vocab,
        trigger=trig,
        null=null,
        readout=ro,
        readout_eos_z=_eos_z(ro, eos),
        readout_eos_rank=_eos_rank(ro, eos),
        top_amplified=[top_tokens(trig.mean_dlogits[j], tokenizer, tk) for j in range(k)],
        top_suppressed=[top_tokens(trig.mean_dlogits[j], tokenizer, tk, False) for j in range(k)],
        readout_top=[top_tokens(ro[j], tokenizer, tk) for j in range(k)],
        readout_bottom=[top_tokens(ro[j], tokenizer, tk, False) for j in range(k)],
        final_lens_max_abs_diff=final_lens_check(model, ds, cfg.n_check),
        config=cfg,
        fixed=fixed,
        fixed_readout_eos_rank=None if f_ro is None else _eos_rank(f_ro, eos),
        fixed_readout_eos_z=None if f_ro is None else _eos_z(f_ro, eos),
        n_layers=ds.n_layers,
    )
